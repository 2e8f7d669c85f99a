"""A run killed (SIGKILL) between or during its two upload phases is completed by its retry: every
change made exactly once (no batch submitted twice), the audience mirrors the segments."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mirror_support import audience, expected_tags, mirror_definition, sqlite_warehouse
from support import latest_report, run_export

CHILD = Path(__file__).with_name("mirror_child.py")
ROOT = Path(__file__).resolve().parents[2]
LIST = "demo0audience"
FIRST = [(f"P{i}", "alpha" if i % 3 else "beta", f"p{i}@gmail.com", "A") for i in range(30)]
# a third leave (phase 2: untag), the rest are renamed (phase 1: upsert)
SECOND = [(pid, segment, email, "B") for pid, segment, email, _ in FIRST if int(pid[1:]) % 3]


def _child(*args: str) -> subprocess.Popen:
    path = os.pathsep.join([str(ROOT / "tests" / "integration"), str(ROOT / "tests"), str(ROOT / "dags")])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [path, os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _query(sql: str) -> list[tuple]:
    with sqlite3.connect(Path(os.environ["AIRFLOW_HOME"]) / "airflow.db") as conn:
        return conn.execute(sql).fetchall()


def _wait(condition, child: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert child.poll() is None, f"the export ended before {what}"
        assert time.monotonic() < deadline, f"no {what} in time"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("kill_in", ["upload_and_poll", "update_tags"])
def test_a_run_killed_between_the_phases_is_completed_once(
    kill_in, tmp_path, monkeypatch, mailchimp_conn, airflow_db
) -> None:
    monkeypatch.setenv("MAILCHIMP_EXPORT_BASE_PATH", str(tmp_path / "staging"))
    table = sqlite_warehouse(tmp_path / "w.db", monkeypatch)
    definition = mirror_definition(monkeypatch, tmp_path / "exports", poll_interval_s=0.5)
    table.create(FIRST)
    run_export(definition)
    table.replace(SECOND)
    submitted = mailchimp_conn.stats()["batches_submitted"]

    mailchimp_conn.set_faults(stuck_in="started")  # the killed phase's batch runs on after the kill
    known = {r[0] for r in _query("SELECT DISTINCT run_id FROM dag_run")}
    child = _child("start")
    if kill_in == "upload_and_poll":
        stored = f"SELECT run_id FROM task_state_store WHERE task_id = '{kill_in}'"
        _wait(lambda: {r[0] for r in _query(stored)} - known, child, "phase 1 batch")
    else:  # phase 1 is done; phase 2's batch is stuck and its task deferred: worker and triggerer die
        mailchimp_conn.clear_faults()
        done = "SELECT run_id FROM task_instance WHERE task_id = 'upload_and_poll' AND state = 'success'"
        _wait(lambda: {r[0] for r in _query(done)} - known, child, "phase 1 success")
        mailchimp_conn.set_faults(stuck_in="started")
        # deferred (dag.test() then shows it queued while it runs the trigger in line): it has a trigger
        deferred = (
            "SELECT run_id FROM task_instance WHERE task_id = 'update_tags' AND trigger_id IS NOT NULL "
            "AND state IN ('deferred', 'queued')"
        )
        _wait(lambda: {r[0] for r in _query(deferred)} - known, child, "phase 2 deferred")
    child.send_signal(signal.SIGKILL)
    child.wait()
    (run_id,) = {r[0] for r in _query("SELECT DISTINCT run_id FROM dag_run")} - known

    mailchimp_conn.clear_faults()
    assert _child("resume", run_id).wait(timeout=300) == 0
    assert mailchimp_conn.stats()["batches_submitted"] == submitted + 2  # each phase once
    report = latest_report()
    assert (report["untagged"], report["updated"], report["leavers"]) == (10, 20, 10)
    tags = {e: m.tags for e, m in audience(mailchimp_conn, LIST).items()}
    assert tags == {**{e: frozenset() for e in expected_tags(FIRST)}, **expected_tags(SECOND)}
    assert {
        m.first_name for e, m in audience(mailchimp_conn, LIST).items() if e in expected_tags(SECOND)
    } == {"B"}
