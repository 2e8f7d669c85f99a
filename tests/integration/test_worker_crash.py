"""The worker dies while its upload's batch is still running in Mailchimp; the run then carries on the
way the scheduler carries on after a worker died. The retry must reconnect to the batch while it is
still running (the batch stays stuck until the retry has logged its reconnect), wait for it and
collect its results: one batch on the server, every profile accounted for in the run's report.

Worker mode: the worker is SIGKILLed from outside while it waits. Deferrable mode: the first try
kills itself right after storing the batch id, where it would defer; the retry then defers and its
trigger waits for the still-running batch.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import latest_report, write_definition

CHILD = Path(__file__).with_name("export_child.py")
ROOT = Path(__file__).resolve().parents[2]
RECONNECT_LOG = "Reconnecting to existing job"


def _child(log: Path, *args: str, **env: str) -> subprocess.Popen:
    path = os.pathsep.join([str(ROOT / "tests"), str(ROOT / "dags"), os.environ.get("PYTHONPATH", "")])
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, str(CHILD), *args],
            env={**os.environ, "PYTHONPATH": path, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _metadata(db: Path, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


def _stored_batches(db: Path) -> set[tuple[str, str]]:
    """(run_id, batch id) pairs in the task state store."""
    rows = _metadata(db, "SELECT run_id, value FROM task_state_store WHERE key = 'mailchimp_batch_id'")
    return set(rows)


def _wait_for(condition, what: str, timeout: float, child: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert child is None or child.poll() is None, f"the export ended before {what}"
        assert time.time() < deadline, f"no {what} within {timeout}s"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("deferrable", [False, True], ids=["worker", "deferrable"])
def test_killed_worker_then_retry_reconnects_to_the_running_batch(
    warehouse, mailchimp_conn, airflow_db, tmp_path, monkeypatch, deferrable
) -> None:
    write_definition(monkeypatch, tmp_path / "exports", retry_delay_s=1)
    mailchimp_conn.set_faults(stuck_in="started")  # the batch keeps running until the retry reconnects
    db = Path(os.environ["AIRFLOW_HOME"]) / "airflow.db"
    before = _stored_batches(db)  # other tests share this metadata DB
    # The DAG factory always defers; the worker variant switches that off in the child.
    env = {"EXPORT_CHILD_DIE_AFTER_SUBMIT": "1"} if deferrable else {"EXPORT_CHILD_WAIT_ON_WORKER": "1"}
    first = _child(tmp_path / "first.log", "start", **env)
    if deferrable:
        assert first.wait(timeout=300) == -signal.SIGKILL
    else:
        _wait_for(lambda: _stored_batches(db) - before, "batch id stored", 120, first)
        first.send_signal(signal.SIGKILL)
        first.wait()
    ((run_id, batch_id),) = _stored_batches(db) - before
    batch_id = json.loads(batch_id)
    assert mailchimp_conn.stats()["batches_submitted"] == 1

    log = tmp_path / "resume.log"
    resume = _child(log, "resume", run_id, **env)
    try:
        _wait_for(lambda: RECONNECT_LOG in log.read_text(errors="replace"), "reconnect logged", 180, resume)
        assert _batch_status(mailchimp_conn, batch_id) == "started"  # still running at the reconnect
        mailchimp_conn.clear_faults()
        assert resume.wait(timeout=300) == 0, log.read_text(errors="replace")[-3000:]
    finally:
        if resume.poll() is None:
            resume.kill()
            resume.wait()

    assert mailchimp_conn.stats()["batches_submitted"] == 1
    # the retry deferred, or (worker variant) waited on the worker
    assert ("running trigger in line" in log.read_text(errors="replace")) == deferrable
    assert ("running trigger in line" in (tmp_path / "first.log").read_text(errors="replace")) is False
    (summary,) = _metadata(
        db,
        "SELECT value FROM xcom WHERE run_id = ? AND task_id = 'upload_and_poll' AND key = 'return_value'",
        run_id,
    )
    summary = json.loads(summary[0])
    assert summary["id"] == batch_id and summary["status"] == "finished" and summary["results"] > 0
    report = latest_report()
    members = mailchimp_conn.members(mailchimp_conn.list_id)
    assert report["created"] == len(members) > 0 and report["updated"] == 0
    assert report["profiles_read"] == (
        report["totals"]["rejected_locally"]
        + report["created"]
        + report["updated"]
        + report["totals"]["failed_at_mailchimp"]
    )


def _batch_status(server, batch_id: str) -> str:
    import urllib.request

    request = urllib.request.Request(
        f"{server.api_url}/batches/{batch_id}",
        headers={"Authorization": "Basic " + _basic(server.api_key)},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())["status"]


def _basic(key: str) -> str:
    import base64

    return base64.b64encode(f"test:{key}".encode()).decode()
