"""Property, end to end: for any warehouse rows, a real export run (the DAG, a SQLite warehouse, the
local Mailchimp server) leaves the audience exactly as an independent model (tests/oracle.py) says:
the members, their addresses, statuses, merge-field values and tags; the report's reasons and counts
agree with it too, and the run fails exactly when Mailchimp refused more than max_failed_share of the
members sent. The model is not the code under test, so wrong outcomes fail here, not only outcomes
that do not add up.

Checked to catch (scripts/mutation_check.py): ``normalise_email`` rejecting every address; ``_number``
returning nothing.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from mailchimp_exports import build_export_dag
from mailchimp_provider.export.definition import ExportDefinition
from oracle import SEGMENTS, Profile, expect, warehouses
from support import latest_report

COUNTS = ("created", "updated", "unchanged")


def definition_file(folder: Path) -> tuple[ExportDefinition, Path]:
    raw = {
        "export": "oracle",
        "mailchimp": {"conn_id": "mailchimp_default", "audience_id": "demo0audience", "tag_segments": True},
        "warehouse": {"conn_id": "oracle_warehouse", "table": "profiles", "segment_column": "segment"},
        "segments": list(SEGMENTS),
        "columns": {"id": "id", "email": "email", "first_name": "first"},
        "merge_fields": {"LTV": "ltv"},
        "job_size": 500,
        "max_profiles": 1000,
        "retries": 0,
        "poll_interval_s": 0.1,
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "oracle.yaml"
    path.write_text(yaml.safe_dump(raw))
    return ExportDefinition.model_validate(raw), path


@pytest.mark.slow
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(found=warehouses())
def test_the_audience_is_what_the_model_says(
    found: list[Profile], mailchimp_conn, airflow_db, tmp_path_factory, monkeypatch
) -> None:
    mailchimp_conn.reset()
    work = tmp_path_factory.mktemp("oracle")
    with sqlite3.connect(work / "w.db") as db:
        db.execute("CREATE TABLE profiles (id TEXT, segment TEXT, email TEXT, first TEXT, ltv TEXT)")
        db.executemany("INSERT INTO profiles VALUES (?, ?, ?, ?, ?)", [r for p in found for r in p.rows()])
    monkeypatch.setenv(
        "AIRFLOW_CONN_ORACLE_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(work / "w.db")})
    )
    monkeypatch.setenv("MAILCHIMP_EXPORT_BASE_PATH", str(work / "staging"))  # no state from other examples
    monkeypatch.setenv("MAILCHIMP_EXPORTS_DIR", str(work / "exports"))
    definition, source = definition_file(work / "exports")
    model = expect(found)
    # Mailchimp refusing more than max_failed_share of the members sent fails the run once its report
    # is written and the audience complete.
    too_many_refused = len(model.refused) > definition.max_failed_share * len(model.members)
    expected = "failed" if too_many_refused else "success"

    run = build_export_dag(definition, source).test()

    assert run.state == expected, f"export run ended {run.state}, the model says {expected}"
    report = latest_report()
    assert report["profiles_read"] == len(model.rejected) + len(model.members)
    assert {k: v for k, v in report["rejected_locally"].items() if v} == model.reason_counts()
    assert sum(report["failed_at_mailchimp"].values()) == len(model.refused)
    assert not any("@" in cause for cause in report["failed_at_mailchimp"])  # causes, not addresses
    assert report["created"] == len(model.members) - len(model.refused) and report["updated"] == 0
    audience = {m["email_address"].lower(): m for m in mailchimp_conn.members(mailchimp_conn.list_id)}
    assert set(audience) == set(model.members) - model.refused
    for key, member in audience.items():
        want = model.members[key]
        assert member["email_address"] == want["email_address"]
        assert member["status"] == "subscribed"
        assert {
            tag: v for tag, v in member["merge_fields"].items() if tag in ("FNAME", "LTV") and v != ""
        } == (want["merge_fields"]), key
        assert sorted(member["tags"]) == sorted(want["tags"])
