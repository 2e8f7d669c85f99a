"""Gates and warehouse faults: a clear failure before anything is uploaded or even read."""

from __future__ import annotations

import json

import pytest
from mailchimp_exports import build_export_dag
from support import DEMO_DEFINITION, mailchimp_connection, write_definition


def run_failing(definition, tries: dict[str, int] | None = None) -> dict[str, str]:
    """Run the export, expect failure; the state of each task (and, into ``tries``, its try number)."""
    run = build_export_dag(definition, DEMO_DEFINITION).test()
    assert run.state == "failed"
    instances = run.get_task_instances()
    if tries is not None:
        tries.update({ti.task_id: ti.try_number for ti in instances})
    return {ti.task_id: ti.state for ti in instances}


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
    definition = write_definition(monkeypatch, tmp_path / "exports", export="gate_check", retry_delay_s=0)
    assert definition.retries > 0  # the export's own retries: the gate must not use them
    tries: dict[str, int] = {}
    states = run_failing(definition, tries)
    assert states["check_audience"] == "failed" and tries["check_audience"] == 1
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
    """The message says how many profiles were found and the limit. The limit is set so that the rows
    pass the extract's early stop (max_profiles x segments) and the count of valid profiles trips."""
    import re
    import sqlite3

    with sqlite3.connect(warehouse) as db:
        (rows,) = db.execute(
            "SELECT count(*) FROM segment_profiles WHERE segment IN ('vip_customers', 'churn_risk')"
        ).fetchone()
    limit = (rows + 1) // 2
    definition = write_definition(
        monkeypatch, tmp_path / "exports", export="too_many", max_profiles=limit, retries=0
    )
    states = run_failing(definition)
    assert states["validate_and_map"] == "success" and states["plan"] == "failed"
    out = capfd.readouterr().out
    found = re.search(r"found ([\d,]+) valid profiles, more than its limit max_profiles=([\d,]+)", out)
    assert found, [line for line in out.splitlines() if "max_profiles" in line]
    assert int(found[1].replace(",", "")) > limit == int(found[2].replace(",", ""))
    assert "nothing was uploaded" in out
    assert mailchimp_conn.stats()["batches_submitted"] == 0


def test_a_runaway_segment_stops_while_extracting(
    warehouse, mailchimp_conn, airflow_db, tmp_path, monkeypatch, capfd
):
    definition = write_definition(
        monkeypatch, tmp_path / "exports", export="runaway", max_profiles=50, retries=0
    )
    states = run_failing(definition)
    assert states["extract"] == "failed"
    out = capfd.readouterr().out
    assert "more than 100 rows" in out and "max_profiles" in out and "nothing was uploaded" in out
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
