"""Full exports while the local Mailchimp server misbehaves: each ends in a correct audience or in a
clear failure, and a re-run after a failure completes the export without duplicates."""

from __future__ import annotations

import threading
import time

import pytest
import yaml
from conftest import DEMO_AUDIENCES
from fired import fault_fired
from mailchimp_emulator.testing import EmulatorProcess
from mailchimp_exports import build_export_dag
from mailchimp_provider.hooks.config import RetryPolicy
from support import DEMO_DEFINITION, mailchimp_connection, run_export, write_definition

SMALL = {
    "segments": ["vip_customers", "churn_risk"],
    "job_size": 500,
    "max_profiles": 50_000,
    "retries": 0,
    "poll_interval_s": 0.2,
}


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch) -> None:
    """The same retry rules, with waits of milliseconds instead of seconds."""
    monkeypatch.setattr(RetryPolicy, "delay", lambda self, attempt: 0.02)


def assert_audience_complete(server, report: dict) -> None:
    members = server.members(server.list_id)
    addresses = [m["email_address"].lower() for m in members]
    assert len(addresses) == len(set(addresses))
    assert report["created"] + report["updated"] + report["unchanged"] == len(members) > 0
    assert report["profiles_read"] == (
        report["totals"]["rejected_locally"]
        + report["unchanged"]
        + report["created"]
        + report["updated"]
        + report["totals"]["failed_at_mailchimp"]
    )


@pytest.mark.parametrize(
    "faults",
    [
        {"throttle_next": 8},
        {"error_rate": 0.3, "seed": 11},
        {"drop_rate": 0.1, "seed": 12},
        {"latency_spike_rate": 0.3, "latency_spike_ms": 400, "seed": 13},
        {"bare_status": 403, "bare_next": 4},
        {"bare_status": 429, "bare_next": 4},
        {"empty_url_next": 2},
    ],
    ids=lambda f: next(iter(f)),
)
def test_transient_faults_end_in_a_correct_audience(
    warehouse, mailchimp_conn, airflow_db, tmp_path, monkeypatch, faults
) -> None:
    definition = write_definition(monkeypatch, tmp_path / "exports", **SMALL)
    mailchimp_conn.set_faults(**faults)
    report = run_export(definition)
    assert fault_fired(mailchimp_conn, faults) > 0, f"{faults} never fired"
    assert_audience_complete(mailchimp_conn, report)


@pytest.mark.parametrize(
    ("faults", "changes", "message"),
    [
        (
            {"stuck_in": "started"},
            {"batch_timeout_s": 2},
            r"batch \w+ did not finish within 2s \(last status: started\)",
        ),
        ({"corrupt_archive": True}, {}, "results archive is unreadable"),
    ],
    ids=["stuck_batch", "corrupt_archive"],
)
def test_hard_faults_fail_clearly_and_a_rerun_completes(
    warehouse, mailchimp_conn, airflow_db, tmp_path, monkeypatch, capfd, faults, changes, message
) -> None:
    import re

    definition = write_definition(monkeypatch, tmp_path / "exports", **SMALL, **changes)
    mailchimp_conn.set_faults(**faults)
    run = build_export_dag(definition, DEMO_DEFINITION).test()
    assert run.state == "failed"
    assert re.search(message, capfd.readouterr().out)
    mailchimp_conn.clear_faults()
    assert_audience_complete(mailchimp_conn, run_export(definition))


def test_server_restart_in_the_middle_of_a_run(warehouse, airflow_db, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(RetryPolicy, "delay", lambda self, attempt: 0.5)  # outlast the restart
    config = yaml.safe_load(DEMO_AUDIENCES.read_text())
    with EmulatorProcess(tmp_path / "mc", config=config, extra_args=["--batch-pace", "0.5"]) as server:
        monkeypatch.setenv("AIRFLOW_CONN_MAILCHIMP_DEFAULT", mailchimp_connection(server))
        definition = write_definition(monkeypatch, tmp_path / "exports", **SMALL)

        restarted: list[int] = []

        def restart_once_a_batch_runs() -> None:
            deadline = time.time() + 60
            while server.stats()["batches_submitted"] == 0 and time.time() < deadline:
                time.sleep(0.1)
            if server.stats()["batches_submitted"]:
                restarted.append(server.pid or 0)
                server.restart()

        restarter = threading.Thread(target=restart_once_a_batch_runs)
        restarter.start()
        report = run_export(definition)
        restarter.join(90)
        assert restarted and restarted[0] != server.pid  # the fault fired: a batch ran, then a new process
        assert_audience_complete(server, report)


def test_lost_answers_to_batch_submissions_do_not_send_twice(
    warehouse, mailchimp_conn, airflow_db, tmp_path, monkeypatch
) -> None:
    """Issue 10 item 4, end to end: every POST /batches answer is lost after Mailchimp accepted it."""
    import json

    from lossy_proxy import LossyProxy

    definition = write_definition(monkeypatch, tmp_path / "exports", **SMALL)
    with LossyProxy(mailchimp_conn.port, method="POST", path="/3.0/batches", drop=100) as proxy:
        conn = json.loads(mailchimp_connection(mailchimp_conn))
        conn["host"] = proxy.base_url
        monkeypatch.setenv("AIRFLOW_CONN_MAILCHIMP_DEFAULT", json.dumps(conn))
        report = run_export(definition)
    jobs = len(report["batches"])
    assert jobs >= 1 and proxy.dropped == jobs  # the fault fired for every submission
    assert mailchimp_conn.stats()["batches_submitted"] == jobs
    assert report["updated"] == 0  # a fresh audience: counted once, nobody "updated" by a second batch
    assert_audience_complete(mailchimp_conn, report)


def test_a_retry_after_a_stuck_batch_timeout_reconnects_and_completes(
    warehouse, mailchimp_conn, airflow_db, tmp_path, monkeypatch
) -> None:
    """The message of a timeout says a retry reconnects: with the export's retries, the retry waits for
    the same batch (its own full timeout) and the run completes once the batch gets unstuck."""
    import os
    import sqlite3
    from pathlib import Path

    definition = write_definition(
        monkeypatch,
        tmp_path / "exports",
        **{**SMALL, "retries": 1},
        retry_delay_s=0,
        batch_timeout_s=6,
    )
    mailchimp_conn.set_faults(stuck_in="started")
    db = Path(os.environ["AIRFLOW_HOME"]) / "airflow.db"

    def upload_try() -> int:
        with sqlite3.connect(db) as conn:
            row = conn.execute(
                "SELECT max(try_number) FROM task_instance WHERE dag_id = ? AND task_id = 'upload_and_poll'",
                (definition.dag_id,),
            ).fetchone()
        return row[0] or 0

    retried: list[bool] = []

    def unstick_during_the_retry() -> None:
        deadline = time.time() + 120
        while upload_try() < 2 and time.time() < deadline:
            time.sleep(0.2)
        retried.append(upload_try() == 2)
        time.sleep(1.0)  # the retry has reconnected and is waiting
        mailchimp_conn.clear_faults()

    releaser = threading.Thread(target=unstick_during_the_retry, daemon=True)
    releaser.start()
    report = run_export(definition)
    releaser.join(10)
    assert retried == [True]  # the first try timed out and the second was running when unstuck
    assert mailchimp_conn.stats()["batches_submitted"] == 1
    assert_audience_complete(mailchimp_conn, report)
