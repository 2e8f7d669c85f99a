"""Property, against the local Mailchimp server: for any rows, every profile read ends in exactly one
outcome, and the audience afterwards holds exactly the accepted profiles with their mapped values."""

from __future__ import annotations

import json
import sqlite3

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mailchimp_provider.export.definition import ExportDefinition
from mailchimp_provider.export.extract import SQLITE_QUOTE
from mailchimp_provider.export.mapping import Audience, MergeField
from mailchimp_provider.export.pipeline import (
    chunk_in_staging,
    extract_to_staging,
    plan_in_staging,
    prepare_in_staging,
    read_parts,
)
from mailchimp_provider.export.reconcile import RunReport, job_outcomes
from mailchimp_provider.export.staging import RunPaths, read_parquet, read_text, write_parquet
from mailchimp_provider.export.state import ExportState
from mailchimp_provider.hooks.mailchimp import MailchimpHook

DEFINITION = ExportDefinition.model_validate(
    {
        "export": "prop",
        "mailchimp": {"conn_id": "mailchimp_default", "audience_id": "demo0audience"},
        "warehouse": {"conn_id": "w", "table": "profiles"},
        "segments": ["s1", "s2"],
        "columns": {"id": "id", "email": "email", "first_name": "first"},
        "merge_fields": {"LTV": "ltv"},
        "extract_chunk_rows": 100,
        "job_size": 500,
        "max_profiles": 1000,
    }
)
AUDIENCE = Audience(
    "demo0audience", "Demo", False, (MergeField("FNAME", "text"), MergeField("LTV", "number"))
)

local = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.+_-", min_size=1, max_size=12)
emails = st.one_of(
    st.builds("{}@{}".format, local, st.sampled_from(["gmail.com", "web.de", "outlook.com", "GMAIL.com"])),
    st.sampled_from(["", "  ", "no-at-sign", "a@b", "x@@gmail.com", "mixed@Gmail.com ", " MIXED@gmail.com"]),
    st.none(),
)
names = st.one_of(st.none(), st.text(max_size=300), st.sampled_from(["Zoë", "Ανδρέας", "李", "محمد", "😀"]))
numbers = st.one_of(st.none(), st.sampled_from(["12", "3.5", "-1", "abc", "1e400", ""]), st.text(max_size=4))


@st.composite
def warehouses(draw) -> list[tuple]:
    profiles = draw(st.lists(st.tuples(emails, names, numbers), min_size=1, max_size=40))
    rows = []
    for number, (email, first, ltv) in enumerate(profiles):
        for segment in draw(
            st.lists(st.sampled_from(["s1", "s2", "other"]), min_size=1, max_size=3, unique=True)
        ):
            rows.append((f"P{number:03d}", segment, email, first, ltv))
    return rows


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=warehouses())
def test_accepted_profiles_and_only_they_reach_the_audience(rows, mailchimp_conn, tmp_path_factory) -> None:
    mailchimp_conn.reset()
    work = tmp_path_factory.mktemp("prop")
    db = sqlite3.connect(work / "w.db")
    db.execute("CREATE TABLE profiles (id TEXT, segment TEXT, email TEXT, first TEXT, ltv TEXT)")
    db.executemany("INSERT INTO profiles VALUES (?, ?, ?, ?, ?)", rows)
    paths = RunPaths(work / "run")
    extract_to_staging(paths, DEFINITION, DEFINITION.segment_names, db.cursor(), "?", SQLITE_QUOTE)
    prepared = prepare_in_staging(paths, DEFINITION, AUDIENCE)
    plan_in_staging(paths, DEFINITION, ExportState(), DEFINITION.segment_names)
    jobs, _ = chunk_in_staging(paths, DEFINITION)

    hook = MailchimpHook()
    report = RunReport(
        "prop",
        "r",
        "demo0audience",
        False,
        profiles_read=prepared.profiles_read,
        rejected_locally=prepared.rejected,
    )
    for job in jobs:
        batch_id = hook.submit_batch(read_text(paths.job_operations(job)))["id"]
        while hook.get_batch(batch_id)["status"] != "finished":
            pass
        write_parquet(paths.job_outcomes(job), hook.fetch_batch_results(batch_id))
        report.add_outcomes(
            job_outcomes(read_parquet(paths.job_index(job)), read_parquet(paths.job_outcomes(job)))
        )
    report.check()  # every profile read has exactly one outcome

    exported_ids = {r[0] for r in rows if r[1] in ("s1", "s2")}
    assert prepared.profiles_read == len(exported_ids)
    members = pa.concat_tables(list(read_parts(paths.members_dir)))
    expected = {
        json.loads(m)["email_address"].lower(): {**json.loads(m), "tags": tags}
        for m, tags in zip(members["data_json"].to_pylist(), members["tags"].to_pylist(), strict=True)
    }
    audience = {m["email_address"].lower(): m for m in mailchimp_conn.members(mailchimp_conn.list_id)}
    refused = sum(report.failed_at_mailchimp.values())
    assert set(audience) <= set(expected) and len(expected) - len(audience) == refused
    assert report.created == len(audience)
    for address, member in audience.items():
        sent = expected[address]
        assert member["status"] == "subscribed"
        for tag, value in sent["merge_fields"].items():
            assert member["merge_fields"][tag] == value
        assert sorted(member["tags"]) == sent["tags"]
