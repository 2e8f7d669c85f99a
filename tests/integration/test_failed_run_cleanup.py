"""A run that fails for good leaves no staged personal data behind; one that will be retried keeps what
the retry reads (issue 10, item 10). Real Airflow runs (dag.test), the local Mailchimp server, SQLite."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from mailchimp_exports import build_export_dag
from mailchimp_provider.export import cleanup, staging
from mailchimp_provider.export.staging import RunPaths
from support import DEMO_DEFINITION, write_definition

PERSONAL = ("extract", "members", "jobs", "outcomes", "archived.parquet")
SEGMENTS = ["newsletter_opt_in", "churn_risk", "vip_customers", "new_customers_30d"]  # several jobs
FAST_UPLOADS = {"job_size": 500, "max_profiles": 5_000, "poll_interval_s": 0.2, "segments": SEGMENTS}


def run_folders(export: str) -> list[Path]:
    return sorted((Path(os.environ["MAILCHIMP_EXPORT_BASE_PATH"]) / export / "runs").iterdir())


def personal_data_left(export: str) -> list[str]:
    return [
        f"{run.name}/{p.name}" for run in run_folders(export) for p in run.iterdir() if p.name in PERSONAL
    ]


def run(definition, *, dag_callback: bool = True):
    dag = build_export_dag(definition, DEMO_DEFINITION)
    if not dag_callback:  # as when the DAG processor runs on a machine without the worker's staging path
        dag.on_failure_callback = None
    dag_run = dag.test()
    return dag_run.state, {(ti.task_id, ti.map_index): ti.state for ti in dag_run.get_task_instances()}


def test_a_run_failing_at_the_warehouse_deletes_what_it_staged_and_expired_runs(
    warehouse, mailchimp_conn, airflow_db, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_DEMO_WAREHOUSE",
        json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": 1, "login": "postgres"}),
    )
    definition = write_definition(monkeypatch, tmp_path / "exports", export="gone_wh", retries=0)
    expired = RunPaths.for_run(staging.base_path(), "gone_wh", "scheduled__2026-01-01")
    staging.write_text(expired.report, "{}")
    long_ago = time.time() - 31 * 86400  # older than the default retention of 30 days
    os.utime(staging.local_path(expired.report), (long_ago, long_ago))

    state, tasks = run(definition)
    assert state == "failed" and tasks[("extract", -1)] == "failed"
    [folder] = run_folders("gone_wh")  # the expired run folder went too, although no run succeeded
    assert (folder / "audience.json").exists()  # check_audience ran and staged the archived members
    assert personal_data_left("gone_wh") == []


@pytest.mark.slow
@pytest.mark.parametrize("dag_callback", [True, False], ids=["with_dag_callback", "worker_callbacks_only"])
def test_uploads_failing_for_good_leave_no_personal_data(
    warehouse, mailchimp_conn, airflow_db, tmp_path, monkeypatch, dag_callback
) -> None:
    """Every batch stays 'started' past batch_timeout_s and there is no retry: the uploads fail after
    extract, validate_and_map and chunk staged everything."""
    mailchimp_conn.set_faults(stuck_in="started")
    definition = write_definition(
        monkeypatch, tmp_path / "exports", export="stuck", retries=0, batch_timeout_s=1, **FAST_UPLOADS
    )
    state, tasks = run(definition, dag_callback=dag_callback)
    uploads = [s for (task, _), s in tasks.items() if task == "upload_and_poll"]
    assert state == "failed" and len(uploads) > 1 and set(uploads) == {"failed"}
    assert tasks[("reconcile", -1)] == "upstream_failed"
    assert mailchimp_conn.stats()["batches_submitted"] == len(uploads)
    assert personal_data_left("stuck") == []
    [folder] = run_folders("stuck")
    assert sorted(p.name for p in folder.iterdir()) == [
        "audience.json",
        "extract.json",
        "prepare.json",
        "rejects",
    ]


def _upload_states(dag_id: str) -> list[str]:
    db = sqlite3.connect(Path(os.environ["AIRFLOW_HOME"]) / "airflow.db", timeout=30)
    try:
        rows = db.execute(
            "SELECT state FROM task_instance WHERE dag_id = ? AND task_id = 'upload_and_poll'", (dag_id,)
        ).fetchall()
    finally:
        db.close()
    return [state for (state,) in rows]


@pytest.mark.slow
def test_an_upload_that_will_be_retried_keeps_what_the_retry_reads(
    warehouse, mailchimp_conn, airflow_db, tmp_path, monkeypatch
) -> None:
    """The first attempt fails on a corrupt results archive; while it waits for its retry, the run's
    staged files stay. Then the fault is cleared and the retry reconnects to the same batch."""
    mailchimp_conn.set_faults(corrupt_archive=True)
    definition = write_definition(
        monkeypatch,
        tmp_path / "exports",
        export="retried",
        retries=1,
        **{**FAST_UPLOADS, "retry_delay_s": 3, "segments": ["vip_customers"]},
    )
    seen: dict[str, list[str]] = {}

    def watch() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if "up_for_retry" in _upload_states(definition.dag_id):
                seen["while_waiting"] = personal_data_left("retried")
                mailchimp_conn.clear_faults()
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    state, tasks = run(definition)
    watcher.join(timeout=10)
    folder = run_folders("retried")[0].name
    assert sorted(seen["while_waiting"]) == sorted(
        f"{folder}/{name}" for name in ("archived.parquet", "extract", "jobs", "members")
    )
    assert state == "success", tasks
    assert mailchimp_conn.stats()["batches_submitted"] == 1  # the retry reconnected to the same batch
    assert personal_data_left("retried") == []


# --- the decision, and the DAG processor's callback, on their own -----------------------------------


def _task_of(key: str) -> str:
    return key if key in {"extract", "reconcile", "chunk"} else key.rsplit("_", 1)[0]


@pytest.mark.parametrize(
    ("states", "me", "my_state", "expected"),
    [
        # extract failed for good: the tasks after it will not run
        ({"extract": "running", "chunk": None, "reconcile": None}, "extract", "failed", True),
        # an upload failed for good while its sibling still runs, waits for a retry, or is not started
        ({"upload_0": "running", "upload_1": "running", "reconcile": None}, "upload_0", "failed", False),
        ({"upload_0": "running", "upload_1": "up_for_retry"}, "upload_0", "failed", False),
        ({"upload_0": "running", "upload_1": None, "reconcile": None}, "upload_0", "failed", False),
        ({"upload_0": "running", "upload_1": "deferred"}, "upload_0", "failed", False),
        # the last sibling ends, successfully, after the other failed: the run is over
        ({"upload_0": "failed", "upload_1": "running", "reconcile": None}, "upload_1", "success", True),
        ({"upload_0": "failed", "upload_1": "running", "reconcile": None}, "upload_1", "failed", True),
        # a success in a healthy run: nothing to do (reconcile deletes it)
        ({"upload_0": "success", "upload_1": "running", "reconcile": None}, "upload_1", "success", False),
    ],
)
def test_personal_data_goes_only_once_the_run_failed_and_nothing_may_read_it(
    states, me, my_state, expected
) -> None:
    downstream = {"extract": {"chunk", "reconcile"}, "upload": {"reconcile"}}[_task_of(me)]
    assert cleanup.run_is_over_and_failed(states, me, my_state, _task_of, downstream) is expected


def test_the_dag_callback_deletes_the_runs_personal_data(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MAILCHIMP_EXPORT_BASE_PATH", str(tmp_path))
    paths = RunPaths.for_run(staging.base_path(), "exp", "manual__1")
    for path in (paths.part(paths.extract_dir, 0), paths.part(paths.rejects_dir, 0), paths.archived):
        staging.write_text(path, "x")
    staging.write_text(paths.audience, "{}")
    cleanup.dag_callback("exp")({"run_id": "manual__1", "reason": "task_failure"})
    assert sorted(p.name for p in (tmp_path / "exp" / "runs" / "manual__1").iterdir()) == [
        "audience.json",
        "rejects",
    ]
