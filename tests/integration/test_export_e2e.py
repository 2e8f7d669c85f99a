"""The export DAG end to end with dag.test(): SQLite warehouse -> local Mailchimp server -> report."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from mailchimp_provider.export.definition import load_definition
from mailchimp_provider.export.validate import email_key, normalise_email
from mailchimp_provider.hooks.mailchimp import MailchimpHook
from support import DEMO_DEFINITION, latest_report, run_export, write_definition


def expected_addresses(warehouse: Path, segments: list[str]) -> dict[str, str]:
    """Valid addresses in the segments, each with its lowest profile id: computed straight from SQL."""
    conn = sqlite3.connect(warehouse)
    marks = ",".join("?" * len(segments))
    rows = conn.execute(
        f"SELECT customer_id, email FROM segment_profiles WHERE segment IN ({marks})", segments
    )
    expected: dict[str, str] = {}
    for customer_id, email in rows:
        check = normalise_email(email)
        if check.email:
            key = email_key(check.email)
            expected[key] = min(expected.get(key, customer_id), customer_id)
    return expected


def test_export_then_rerun_changes_nothing(
    warehouse, mailchimp_conn, airflow_db, tmp_path, monkeypatch
) -> None:
    # the newsletter segment holds every kind of dirt the demo warehouse has
    definition = write_definition(
        monkeypatch, tmp_path / "exports", segments=["newsletter_opt_in", "vip_customers"]
    )
    report = run_export(definition)
    members = {m["email_address"].lower(): m for m in mailchimp_conn.members(mailchimp_conn.list_id)}
    expected = expected_addresses(warehouse, definition.segment_names)

    # the numbers add up, and the audience holds exactly the accepted profiles
    rejected, failed = report["totals"]["rejected_locally"], report["totals"]["failed_at_mailchimp"]
    assert report["profiles_read"] == rejected + report["created"] + report["updated"] + failed
    assert report["created"] == len(members) > 0 and report["updated"] == 0
    assert set(members) <= set(expected)
    assert len(expected) - len(members) == failed  # the addresses Mailchimp refused
    assert (
        report["rejected_locally"]["invalid_email"] > 0 and report["rejected_locally"]["duplicate_email"] > 0
    )

    # merge fields, tags and status as mapped
    conn = sqlite3.connect(warehouse)
    checked = 0
    for key, member in list(members.items())[:300]:
        first, city, tier = conn.execute(
            "SELECT first_name, city, loyalty_tier FROM customer_profiles WHERE customer_id = ?",
            (expected[key],),
        ).fetchone()
        assert member["status"] == "subscribed"
        assert set(member["tags"]) <= {"vip_customers", "newsletter_opt_in"} and member["tags"]
        if first and first.isascii() and len(first) < 50:
            assert member["merge_fields"]["FNAME"] == first.strip()
            checked += 1
        if city and city.isascii():
            assert member["merge_fields"]["CITY"] == city.strip()
        assert member["merge_fields"]["TIER"].lower() == tier.lower()
    assert checked > 50

    # a member unsubscribes in Mailchimp, and the warehouse changes their name: the next run updates
    # the name but never re-subscribes them
    key, member = next(iter(members.items()))
    MailchimpHook().call(
        "PATCH", f"lists/{mailchimp_conn.list_id}/members/{member['id']}", body={"status": "unsubscribed"}
    )
    conn.execute(
        "UPDATE customer_profiles SET first_name = 'Renamed' WHERE customer_id = ?", (expected[key],)
    )
    conn.commit()

    second = run_export(definition)
    after = {m["email_address"].lower(): m for m in mailchimp_conn.members(mailchimp_conn.list_id)}
    assert len(after) == len(members)
    assert second["created"] == 0 and second["updated"] == 1
    assert second["unchanged"] == report["created"] - 1
    assert after[key]["status"] == "unsubscribed" and after[key]["merge_fields"]["FNAME"] == "Renamed"
    assert mailchimp_conn.stats()["peak_concurrency"] <= 10

    # a member archived in Mailchimp is never restored, even when everything is sent again
    archived_key, archived = list(members.items())[1]
    MailchimpHook().call("DELETE", f"lists/{mailchimp_conn.list_id}/members/{archived['id']}")
    third = run_export(definition, full_sync=True)
    after = {m["email_address"].lower(): m for m in mailchimp_conn.members(mailchimp_conn.list_id)}
    assert after[archived_key]["status"] == "archived"
    assert after[key]["status"] == "unsubscribed"
    assert third["rejected_locally"]["archived_in_audience"] == 1
    assert third["unchanged"] == 0 and third["updated"] == len(members) - 1


def test_dry_run_uploads_nothing_and_reports_the_plan(warehouse, mailchimp_conn, airflow_db) -> None:
    report = run_export(load_definition(DEMO_DEFINITION), dry_run=True, segments=["vip_customers"])
    assert report["dry_run"] is True and report["planned"] > 0 and report["created"] == 0
    assert mailchimp_conn.members(mailchimp_conn.list_id) == []
    assert mailchimp_conn.stats()["batches_submitted"] == 0


def test_double_opt_in_audience_gets_pending_members(
    warehouse, mailchimp_conn, airflow_db, tmp_path, monkeypatch
) -> None:
    definition = write_definition(
        monkeypatch,
        tmp_path / "exports",
        mailchimp__audience_id="demo0doubleoptin",
        segments=["vip_customers"],
        merge_fields={},
    )
    run_export(definition)
    statuses = {m["status"] for m in mailchimp_conn.members("demo0doubleoptin")}
    assert statuses == {"pending"}


def test_export_from_postgresql_matches_sqlite(
    postgres_warehouse, mailchimp_conn, airflow_db, tmp_path, monkeypatch, seeded_sqlite
) -> None:
    """The same demo data from PostgreSQL (server-side cursor) gives the same outcome as from SQLite."""
    monkeypatch.setenv("MAILCHIMP_EXPORT_BASE_PATH", str(tmp_path / "staging"))
    report = run_export(load_definition(DEMO_DEFINITION))
    members = mailchimp_conn.members(mailchimp_conn.list_id)
    assert report["created"] == len(members) > 0
    expected = expected_addresses(seeded_sqlite, ["vip_customers", "churn_risk"])  # same seed, same rows
    assert {m["email_address"].lower() for m in members} <= set(expected)
    assert len(expected) - len(members) == report["totals"]["failed_at_mailchimp"]


def _audience(server) -> dict[str, tuple]:
    return {
        m["email_address"].lower(): (m["status"], m["merge_fields"], sorted(m["tags"]))
        for m in server.members(server.list_id)
    }


def _counts(report: dict) -> dict:
    kept = ("rows_read", "profiles_read", "rejected_locally", "dropped_values", "totals", "plan", "segments")
    return {k: report[k] for k in kept} | {k: report[k] for k in ("created", "updated", "unchanged")}


@pytest.mark.slow
def test_an_export_prepared_in_partitions_ends_as_the_whole_one(
    warehouse, mailchimp_conn, airflow_db, tmp_path, monkeypatch
) -> None:
    """The same segments (with duplicates and bad addresses) exported whole, then, into the emptied
    audience as another export, prepared by three mapped validate_and_map tasks, a count chosen by the
    size of the extract ("auto"): the same report counts and the same audience. (Planning against owned
    state: tests/export/test_partitioned_run.py.)"""
    from mailchimp_exports import build_export_dag
    from mailchimp_provider.export import definition as definition_module

    changes = {"segments": ["newsletter_opt_in", "vip_customers"], "extract_chunk_rows": 500}
    whole = run_export(
        write_definition(monkeypatch, tmp_path / "whole", export="whole", prepare_partitions=1, **changes)
    )
    audience = _audience(mailchimp_conn)
    mailchimp_conn.reset()

    # rows read / 3, rounded up: the rows make three partitions
    monkeypatch.setattr(definition_module, "AUTO_PARTITION_ROWS", -(-whole["rows_read"] // 3))
    definition = write_definition(
        monkeypatch, tmp_path / "split", export="split", prepare_partitions="auto", **changes
    )
    run = build_export_dag(definition, DEMO_DEFINITION).test()
    assert run.state == "success"
    partitions = sorted(
        (ti.map_index, ti.rendered_map_index, ti.state)
        for ti in run.get_task_instances()
        if ti.task_id == "validate_and_map"
    )
    assert partitions == [(k, f"partition {k + 1} of 3", "success") for k in range(3)]
    split = latest_report()
    assert _counts(split) == _counts(whole) and whole["created"] > 0
    assert _audience(mailchimp_conn) == audience
