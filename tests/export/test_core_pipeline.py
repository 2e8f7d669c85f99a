"""extract -> prepare -> chunk -> reconcile on a real SQLite file, without Airflow or Mailchimp."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from mailchimp_provider.export.chunk import JobWriter, chunk_plan
from mailchimp_provider.export.definition import ExportDefinition
from mailchimp_provider.export.extract import (
    SQLITE_QUOTE,
    TooManyProfiles,
    WarehouseError,
    build_query,
    extract,
    read_limits,
    source_columns,
)
from mailchimp_provider.export.mapping import Audience, MergeField, plan_fields
from mailchimp_provider.export.plan import Planner, PlanSettings
from mailchimp_provider.export.prepare import Preparer, PrepareSettings, fingerprint
from mailchimp_provider.export.reconcile import AccountingError, RunReport, job_outcomes
from mailchimp_provider.export.state import ExportState
from mailchimp_provider.export.validate import subscriber_hash

ROWS = [
    # customer_id, segment, email, first_name, city
    ("C1", "vip", "anna@gmail.com", "Anna", "Oslo"),
    ("C1", "churn", "anna@gmail.com", "Anna", "Oslo"),  # same profile, two segments: one member, two tags
    ("C2", "vip", " ANNA@gmail.com ", "Anna 2", "Bergen"),  # same address, other profile: duplicate
    ("C3", "vip", "bad-address", "Bo", "Rome"),
    ("C4", "churn", None, "Cy", "Rome"),
    ("C5", "churn", "", "Di", None),
    ("C6", "vip", "eve@outlook.com", None, "Köln"),
    ("C7", "vip", "zoe@web.de", "Zoë 😀", "Αθήνα"),
    ("C8", "other", "notexported@web.de", "No", "No"),
]


@pytest.fixture
def warehouse(tmp_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(tmp_path / "w.db")
    conn.execute(
        "CREATE TABLE profiles (customer_id TEXT, segment TEXT, email TEXT, first_name TEXT, city TEXT)"
    )
    conn.executemany("INSERT INTO profiles VALUES (?, ?, ?, ?, ?)", ROWS)
    return conn


def definition(**overrides) -> ExportDefinition:
    raw = {
        "export": "t",
        "mailchimp": {"conn_id": "mc", "audience_id": "aud1"},
        "warehouse": {"conn_id": "wh", "table": "profiles"},
        "segments": ["vip", "churn"],
        "columns": {"id": "customer_id", "email": "email", "first_name": "first_name"},
        "merge_fields": {"CITY": "city"},
        "extract_chunk_rows": 100,
    }
    raw.update(overrides)
    return ExportDefinition.model_validate(raw)


AUDIENCE = Audience("aud1", "A", False, (MergeField("FNAME", "text"), MergeField("CITY", "text")))


def run_prepare(conn, d: ExportDefinition, chunk_rows: int = 2, archived=frozenset(), segment_tags=None):
    parts: list[pa.Table] = []
    sql, params = build_query(d, d.segment_names, "?", SQLITE_QUOTE)
    result = extract(
        conn.cursor(),
        sql,
        params,
        source_columns(d),
        chunk_rows=chunk_rows,
        max_rows=10_000,
        write_part=lambda i, t: parts.append(t),
        limits=read_limits(d),
    )
    members: list[pa.Table] = []
    rejects: list[pa.Table] = []
    settings = PrepareSettings(
        "customer_id",
        "email",
        "segment",
        plan_fields(AUDIENCE, d.merge_field_columns()),
        "subscribed",
        True,
        archived,
        segment_tags or {},
    )
    prepared = Preparer(settings, lambda i, t: members.append(t), lambda i, t: rejects.append(t)).run(parts)
    return result, prepared, pa.concat_tables(members), pa.concat_tables(rejects)


def test_every_profile_gets_one_outcome_and_addresses_are_merged(warehouse) -> None:
    extracted, prepared, members, rejects = run_prepare(warehouse, definition())
    assert extracted.rows == 8  # C8's segment is not exported
    assert prepared.profiles_read == 7
    assert sorted(members["profile_id"].to_pylist()) == ["C1", "C6", "C7"]
    assert dict(zip(rejects["profile_id"].to_pylist(), rejects["reason"].to_pylist(), strict=True)) == {
        "C2": "duplicate_email",
        "C3": "invalid_email",
        "C4": "missing_email",
        "C5": "missing_email",
    }
    anna = members.filter(pc.equal(members["profile_id"], "C1")).to_pylist()[0]
    assert json.loads(anna["data_json"]) == {
        "email_address": "anna@gmail.com",
        "status_if_new": "subscribed",
        "merge_fields": {"FNAME": "Anna", "CITY": "Oslo"},
    }
    assert anna["tags"] == anna["segments"] == ["churn", "vip"]
    assert anna["fingerprint"] == fingerprint(anna["data_json"])
    assert prepared.accepted + sum(prepared.rejected.values()) == prepared.profiles_read


def test_chunk_boundaries_do_not_split_an_address(warehouse) -> None:
    for chunk_rows in (1, 2, 3, 100):
        _, prepared, members, _ = run_prepare(warehouse, definition(), chunk_rows=chunk_rows)
        assert members.num_rows == 3 and prepared.profiles_read == 7


def test_archived_members_are_rejected(warehouse) -> None:
    archived = frozenset({subscriber_hash("eve@outlook.com")})
    _, prepared, members, rejects = run_prepare(warehouse, definition(), archived=archived)
    assert prepared.accepted == 2 and "eve@outlook.com" not in members["email"].to_pylist()
    assert "archived_in_audience" in rejects["reason"].to_pylist()


def test_tags_are_named_by_segment_tags_and_the_fingerprint_ignores_them(warehouse) -> None:
    _, _, plain, _ = run_prepare(warehouse, definition())
    _, _, renamed, _ = run_prepare(warehouse, definition(), segment_tags={"vip": "VIP customers"})
    anna = renamed.filter(pc.equal(renamed["profile_id"], "C1")).to_pylist()[0]
    assert anna["tags"] == ["VIP customers", "churn"] and anna["segments"] == ["churn", "vip"]
    assert renamed["fingerprint"].to_pylist() == plain["fingerprint"].to_pylist()


def test_chunking_and_reconcile_account_for_everyone(warehouse) -> None:
    _, prepared, members, _ = run_prepare(warehouse, definition())
    plans: list[pa.Table] = []
    settings = PlanSettings(["vip", "churn"], {"vip": "vip", "churn": "churn"}, True, "untag")
    Planner(settings, ExportState(), lambda i, t: plans.append(t)).run(
        [members], members["profile_id"], members["profile_id"]
    )
    operations: dict[int, bytes] = {}
    indexes: dict[int, pa.Table] = {}
    jobs, tag_jobs = chunk_plan(
        plans,
        "aud1",
        500,
        JobWriter(operations.__setitem__, indexes.__setitem__),
        JobWriter(print, print),
        {},
    )
    assert jobs == [0] and tag_jobs == []
    op = json.loads(operations[0].splitlines()[0])
    assert op["method"] == "POST" and op["path"] == "/lists/aud1"
    body = json.loads(op["body"])
    assert body["update_existing"] is True and len(body["members"]) == 3
    answer = {
        "new_members": [{"email_address": "anna@gmail.com"}],
        "updated_members": [{"email_address": "eve@outlook.com"}],
        "errors": [{"email_address": "zoe@web.de", "error": "zoe@web.de looks fake or invalid"}],
    }
    results = pa.table(
        {
            "operation_id": [op["operation_id"]],
            "status_code": pa.array([200], pa.int32()),
            "response": [json.dumps(answer)],
        }
    )
    outcomes = job_outcomes(indexes[0], results)
    report = RunReport(
        "t", "r", "aud1", False, profiles_read=prepared.profiles_read, rejected_locally=prepared.rejected
    )
    report.add_outcomes(outcomes)
    report.check()
    assert (report.created, report.updated, report.failed_total) == (1, 1, 1)
    assert report.failed_at_mailchimp == {"<email> looks fake or invalid": 1}  # grouped, no address
    report.created -= 1
    with pytest.raises(AccountingError, match="profiles read"):
        report.check()


def test_a_failed_operation_fails_its_members_and_a_missing_one_is_unknown() -> None:
    index = pa.table(
        {
            "operation_id": ["a", "a", "b"],
            "profile_id": ["1", "2", "3"],
            "email": ["x@y.de", "z@y.de", "w@y.de"],
            "subscriber_hash": ["h1", "h2", "h3"],
            "action": ["upsert"] * 3,
        }
    )
    results = pa.table(
        {
            "operation_id": ["a"],
            "status_code": pa.array([400], pa.int32()),
            "response": [json.dumps({"title": "Invalid Resource"})],
        }
    )
    outcomes = job_outcomes(index, results)
    assert outcomes["outcome"].to_pylist() == ["failed", "failed", "unknown"]
    assert outcomes["error"].to_pylist() == [
        "Invalid Resource",
        "Invalid Resource",
        "Missing from batch results",
    ]


def test_hostile_names_are_quoted_and_values_bound() -> None:
    d = definition(segments=["vip'); DROP TABLE profiles; --"])
    sql, params = build_query(d, d.segment_names, "?", SQLITE_QUOTE)
    assert params == ["vip'); DROP TABLE profiles; --"]
    assert "DROP" not in sql and "`profiles`" in sql


def test_query_source_is_wrapped_and_filtered(warehouse) -> None:
    d = definition(warehouse={"conn_id": "wh", "query": "SELECT * FROM profiles WHERE city <> 'Rome';"})
    extracted, *_ = run_prepare(warehouse, d)
    assert extracted.rows == 5


def test_warehouse_errors_are_clear(warehouse) -> None:
    d = definition(warehouse={"conn_id": "wh", "table": "missing_table"})
    with pytest.raises(WarehouseError, match="no such table: missing_table"):
        run_prepare(warehouse, d)
    d = definition(columns={"id": "customer_id", "email": "no_such_column"})
    with pytest.raises(WarehouseError, match="no such column"):
        run_prepare(warehouse, d)


def test_runaway_segment_stops_early(warehouse) -> None:
    d = definition()
    sql, params = build_query(d, d.segment_names, "?", SQLITE_QUOTE)
    with pytest.raises(TooManyProfiles, match="more than 3 rows"):
        extract(
            warehouse.cursor(),
            sql,
            params,
            source_columns(d),
            chunk_rows=2,
            max_rows=3,
            write_part=lambda i, t: None,
            limits=read_limits(d),
        )
