"""The worker is killed (SIGKILL) while it waits for a batch; the task is retried the way the scheduler
retries a task whose heartbeat stopped. The retry reconnects to the batch: nothing submitted twice,
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


def _child(env: dict) -> subprocess.Popen:
    path = os.pathsep.join([str(ROOT / "tests"), str(ROOT / "dags"), str(CHILD.parent)])
    return subprocess.Popen(
        [sys.executable, str(CHILD)],
        env={**env, "PYTHONPATH": path},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stored_batch_ids(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "task_state_store" not in tables:
            return []
        return [
            str(v)
            for (v,) in conn.execute("SELECT value FROM task_state_store WHERE key = 'mailchimp_batch_id'")
        ]


def test_killed_worker_then_retry_finishes_the_same_batch(warehouse, mailchimp_conn, airflow_db) -> None:
    mailchimp_conn.set_faults(stuck_in="started")  # keep the batch running until we have killed the worker
    db = Path(os.environ["AIRFLOW_HOME"]) / "airflow.db"
    child = _child(dict(os.environ))
    deadline = time.time() + 120
    while not _stored_batch_ids(db):
        assert child.poll() is None, "the export ended before its batch was stored"
        assert time.time() < deadline, "no batch id was stored in time"
        time.sleep(0.2)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert mailchimp_conn.stats()["batches_submitted"] == 1

    # what the scheduler does when a task's heartbeat stops and it has retries left
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE task_instance SET state = 'up_for_retry', end_date = CURRENT_TIMESTAMP "
            "WHERE task_id = 'upload_and_poll' AND state = 'running'"
        )
    mailchimp_conn.clear_faults()
    env = dict(os.environ)
    retry = _child(env)
    assert retry.wait(timeout=300) == 0

    assert mailchimp_conn.stats()["batches_submitted"] == 1
    report = latest_report()
    assert report["created"] == len(mailchimp_conn.members(mailchimp_conn.list_id)) > 0
    assert report["profiles_read"] == (
        report["totals"]["rejected_locally"]
        + report["created"]
        + report["updated"]
        + report["totals"]["failed_at_mailchimp"]
    )
