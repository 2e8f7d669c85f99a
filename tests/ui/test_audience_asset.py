"""Each export run updates its audience's asset with the run's counts; a DAG scheduled on that asset
runs after the export (started by a real scheduler) and reads the counts from the event."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def test_the_export_emits_one_event_with_the_counts_and_none_for_dry_or_failed_runs(export_runs) -> None:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        events = session.execute(
            select(AssetEvent.source_run_id, AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.uri == "mailchimp://demo0audience/")
            .where(AssetEvent.source_dag_id == export_runs.dag_id)
        ).all()
    assert [run_id for run_id, _ in events] == [export_runs.real]
    extra = events[0][1]
    report = export_runs.report(export_runs.real)
    assert extra["export"] == export_runs.export and extra["dry_run"] is False
    assert extra["audience_id"] == "demo0audience" and extra["run_id"] == export_runs.real
    for key in ("rows_read", "profiles_read", "created", "updated", "unchanged"):
        assert extra[key] == report[key]
    assert extra["rejected"] == report["totals"]["rejected_locally"]
    assert extra["failed"] == report["totals"]["failed_at_mailchimp"]
    assert extra["rejected_locally"] == report["rejected_locally"]
    assert "@" not in json.dumps(extra)


def _listener_lines(log: Path) -> str:
    lines = log.read_text(errors="replace").splitlines()
    return "\n".join([line for line in lines if "listener" in line or "rror" in line][-40:])


def test_a_dag_scheduled_on_the_audience_runs_and_reads_the_counts(export_runs, api_server, tmp_path) -> None:
    out = tmp_path / "listener.json"
    env = {
        **api_server.env,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_server.url}/execution/",
        "AUDIENCE_LISTENER_OUT": str(out),
    }
    log = (tmp_path / "scheduler.log").open("wb")
    scheduler = subprocess.Popen(
        [str(BIN / "airflow"), "scheduler"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not out.exists():
            assert scheduler.poll() is None, (tmp_path / "scheduler.log").read_text()[-3000:]
            assert time.monotonic() < deadline, _listener_lines(tmp_path / "scheduler.log")
            time.sleep(1)
        time.sleep(0.5)  # the file is written in one call; let it land
    finally:
        os.killpg(scheduler.pid, 15)
        try:
            scheduler.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(scheduler.pid, 9)
            scheduler.wait(timeout=30)
        log.close()
    seen = json.loads(out.read_text())
    report = export_runs.report(export_runs.real)
    assert seen["run_id"] == export_runs.real
    assert (seen["created"], seen["updated"], seen["profiles_read"]) == (
        report["created"],
        report["updated"],
        report["profiles_read"],
    )
    runs = api_server.json("/api/v2/dags/mailchimp_audience_listener/dagRuns", "viewer")["dag_runs"]
    assert [r["run_type"] for r in runs] == ["asset_triggered"]
