"""Mapped upload tasks are named for the batch job they carry, not by a bare index."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_upload_tasks_show_their_job_and_member_count(export_runs, api_server) -> None:
    runs = f"/api/v2/dags/{export_runs.dag_id}/dagRuns/{export_runs.real}"
    mapped = api_server.json(f"{runs}/taskInstances/upload_and_poll/listMapped", "viewer")["task_instances"]
    report = export_runs.report(export_runs.real)
    sent = report["created"] + report["updated"] + report["totals"]["failed_at_mailchimp"]
    jobs = len(mapped)
    assert jobs == -(-sent // 1000) > 1  # job_size 1000 in this export
    names = {ti["map_index"]: ti["rendered_map_index"] for ti in mapped}
    sizes = [1000] * (jobs - 1) + [sent - 1000 * (jobs - 1)]
    assert names == {i: f"job {i + 1} of {jobs}, {sizes[i]:,} members" for i in range(jobs)}
