"""The worker is killed (SIGKILL) while it waits for a batch; the run then carries on the way the
scheduler carries on after a worker died. The retry reconnects to the batch: nothing submitted twice,
nothing lost."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from support import latest_report

CHILD = Path(__file__).with_name("export_child.py")
ROOT = Path(__file__).resolve().parents[2]


def _child(*args: str) -> subprocess.Popen:
    path = os.pathsep.join([str(ROOT / "tests"), str(ROOT / "dags")])
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        env={**os.environ, "PYTHONPATH": path},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stored_batches(db: Path) -> list[tuple[str, str]]:
    """(run_id, batch id) pairs in the task state store."""
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT run_id, value FROM task_state_store WHERE key = 'mailchimp_batch_id'"
        ).fetchall()


def test_killed_worker_then_retry_finishes_the_same_batch(warehouse, mailchimp_conn, airflow_db) -> None:
    mailchimp_conn.set_faults(stuck_in="started")  # keep the batch running until the worker is dead
    db = Path(os.environ["AIRFLOW_HOME"]) / "airflow.db"
    before = set(_stored_batches(db))  # other tests share this metadata DB
    child = _child("start")
    deadline = time.time() + 120
    while not set(_stored_batches(db)) - before:
        assert child.poll() is None, "the export ended before its batch was stored"
        assert time.time() < deadline, "no batch id was stored in time"
        time.sleep(0.2)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert mailchimp_conn.stats()["batches_submitted"] == 1

    ((run_id, _),) = set(_stored_batches(db)) - before
    mailchimp_conn.clear_faults()
    assert _child("resume", run_id).wait(timeout=300) == 0

    assert mailchimp_conn.stats()["batches_submitted"] == 1
    report = latest_report()
    assert report["created"] == len(mailchimp_conn.members(mailchimp_conn.list_id)) > 0
    assert report["profiles_read"] == (
        report["totals"]["rejected_locally"]
        + report["created"]
        + report["updated"]
        + report["totals"]["failed_at_mailchimp"]
    )
