"""Gates and warehouse faults: a clear failure before anything is uploaded or even read."""

from __future__ import annotations

import json

import pytest
from mailchimp_exports import build_export_dag
from support import DEMO_DEFINITION, mailchimp_connection, write_definition


def run_failing(definition) -> dict[str, str]:
    """Run the export, expect failure; the state of each task."""
    run = build_export_dag(definition, DEMO_DEFINITION).test()
    assert run.state == "failed"
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"privacy_consent": False}, "has no data-privacy consent"),
        ({"allowed_exports": "some_other_export"}, "may not be used by export 'gate_check'"),
    ],
)
def test_connection_gates_stop_before_the_warehouse_is_read(
    warehouse, emulator, airflow_db, tmp_path, monkeypatch, capfd, extra, message
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MAILCHIMP_DEFAULT", mailchimp_connection(emulator, **extra))
    definition = write_definition(monkeypatch, tmp_path / "exports", export="gate_check", retries=0)
    states = run_failing(definition)
    assert states["check_audience"] == "failed"
    assert states["extract"] == "upstream_failed"
    assert message in capfd.readouterr().out
    assert emulator.stats()["batches_submitted"] == 0


PG = {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "schema": "postgres"}


@pytest.mark.parametrize(
    ("case", "changes", "connection", "message"),
    [
        ("unreachable", {}, {**PG, "port": 1, "login": "postgres"}, "cannot connect to warehouse connection"),
        ("wrong_credentials", {}, {**PG, "login": "no_such_role"}, 'role "no_such_role" does not exist'),
        (
            "missing_table",
            {"warehouse": {"conn_id": "demo_warehouse", "table": "no_such_table"}},
            None,
            "no such table: no_such_table",
        ),
        (
            "missing_column",
            {"columns": {"id": "customer_id", "email": "no_such_column"}},
            None,
            "no such column: no_such_column",
        ),
        (
            "query_error",
            {"warehouse": {"conn_id": "demo_warehouse", "query": "SELEC broken"}},
            None,
            "the warehouse query failed: OperationalError",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and "_" in v or v == "unreachable" else "",
)
def test_warehouse_faults_fail_clearly_before_upload(
    warehouse, mailchimp_conn, airflow_db, tmp_path, monkeypatch, capfd, case, changes, connection, message
) -> None:
    if connection:
        monkeypatch.setenv("AIRFLOW_CONN_DEMO_WAREHOUSE", json.dumps(connection))
    definition = write_definition(
        monkeypatch, tmp_path / "exports", export=f"wh_{case}", retries=0, **changes
    )
    states = run_failing(definition)
    assert states["extract"] == "failed" and states["chunk"] == "upstream_failed"
    out = capfd.readouterr().out
    assert message in out, [line for line in out.splitlines() if "rror" in line]
    assert (
        mailchimp_conn.stats()["batches_submitted"] == 0
        and mailchimp_conn.members(mailchimp_conn.list_id) == []
    )


def test_too_many_profiles_fails_before_upload(
    warehouse, mailchimp_conn, airflow_db, tmp_path, monkeypatch, capfd
):
    definition = write_definition(
        monkeypatch, tmp_path / "exports", export="too_many", max_profiles=50, retries=0
    )
    states = run_failing(definition)
    assert states["validate_and_map"] == "failed" or states["extract"] == "failed"
    out = capfd.readouterr().out
    assert "max_profiles" in out and "nothing was uploaded" in out
    assert mailchimp_conn.stats()["batches_submitted"] == 0


def test_unknown_audience_fails_at_once_naming_it(
    warehouse, mailchimp_conn, airflow_db, tmp_path, monkeypatch, capfd
):
    definition = write_definition(
        monkeypatch, tmp_path / "exports", export="no_audience", mailchimp__audience_id="nosuchlist"
    )
    states = run_failing(definition)  # the export's default retries are not used: the mistake is permanent
    assert states["check_audience"] == "failed" and states["extract"] == "upstream_failed"
    assert "Mailchimp answered 404 Resource Not Found" in capfd.readouterr().out
