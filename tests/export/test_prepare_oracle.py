"""Property, against an independent model (tests/oracle.py): for any warehouse rows, validate-and-map
accepts exactly the profiles the model accepts, with the model's address, merge-field values and
tags, and rejects every other profile read with the model's reason.

Checked to catch (scripts/mutation_check.py applies each and runs this test): ``normalise_email``
rejecting every address; ``_number`` returning nothing; text cleaning and the 255-byte cut skipped;
the tags of an address's other rows dropped.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mailchimp_provider.export.extract import rows_to_table
from mailchimp_provider.export.mapping import Audience, MergeField, plan_fields
from mailchimp_provider.export.prepare import Preparer, PrepareSettings
from oracle import SEGMENTS, Profile, expect, warehouses

AUDIENCE = Audience("a", "A", False, (MergeField("FNAME", "text"), MergeField("LTV", "number")))
NAMES = ["id", "segment", "email", "first", "ltv"]


def warehouse_order(found: list[Profile]) -> list[tuple]:
    """The extract's rows: exported segments only, ordered by lower(trim(email)), then id."""
    rows = [row for p in found for row in p.rows() if row[1] in SEGMENTS]
    return sorted(rows, key=lambda r: ((r[2] or "").strip(" ").lower(), r[0]))


def member_objects(table: pa.Table) -> list[dict]:
    """The member JSON of each member row (``member_json``; ``data_json`` plus ``tags`` in the newer
    prepare contract)."""
    if "member_json" in table.column_names:
        return [json.loads(m) for m in table["member_json"].to_pylist()]
    return [
        {**json.loads(m), "tags": tags}
        for m, tags in zip(table["data_json"].to_pylist(), table["tags"].to_pylist(), strict=True)
    ]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(warehouses(), st.integers(min_value=1, max_value=9))
def test_prepare_agrees_with_the_model(found: list[Profile], chunk_rows: int) -> None:
    rows = warehouse_order(found)
    parts = [rows_to_table(rows[i : i + chunk_rows], NAMES) for i in range(0, len(rows), chunk_rows)]
    members: list[pa.Table] = []
    rejects: list[pa.Table] = []
    fields = plan_fields(AUDIENCE, {"FNAME": "first", "LTV": "ltv"})
    prepare = PrepareSettings("id", "email", "segment", fields, "subscribed", True)
    Preparer(prepare, lambda i, t: members.append(t), lambda i, t: rejects.append(t)).run(parts)
    model = expect(found)

    got_rejected = {
        pid: reason
        for t in rejects
        for pid, reason in zip(t["profile_id"].to_pylist(), t["reason"].to_pylist(), strict=True)
    }
    assert got_rejected == model.rejected
    got = {}
    for table in members:
        for pid, member in zip(table["profile_id"].to_pylist(), member_objects(table), strict=True):
            got[member["email_address"].lower()] = (pid, member)
    assert set(got) == set(model.members)
    for key, (pid, member) in got.items():
        want = model.members[key]
        assert pid == want["profile_id"]
        assert member["email_address"] == want["email_address"]
        assert member["status_if_new"] == "subscribed" and "status" not in member
        assert member["merge_fields"] == want["merge_fields"], key
        assert sorted(member["tags"]) == sorted(want["tags"])


@pytest.mark.parametrize(
    ("first", "expected"),
    [
        ("a\x85b\u2028c", "a\x85b\u2028c"),  # inside a name they are characters like any other
        ("\x85\u2028 Edge \u2028\x85", "Edge"),  # around it they are whitespace, trimmed
        ("é" * 1_000, "é" * 127),  # 2 KB cut at 255 bytes: 127 two-byte characters, none split
        ("é" * 5_000, None),  # 10 KB: over the 1,024 characters read from the warehouse, left out
        ("\x00\x85\u2028" * 3_400, None),  # 10 KB of nothing printable: left out
        ("Ann\x00\x1b[31m", "Ann[31m"),  # NUL and ESC removed
    ],
)
def test_line_separators_and_10_kb_values(first: str, expected: str | None) -> None:
    rows = [("P1", "s1", "ann@gmail.com", first, None)]
    members: list[pa.Table] = []
    fields = plan_fields(AUDIENCE, {"FNAME": "first", "LTV": "ltv"})
    prepare = PrepareSettings("id", "email", "segment", fields, "subscribed", True)
    Preparer(prepare, lambda i, t: members.append(t), lambda i, t: None).run([rows_to_table(rows, NAMES)])
    (member,) = [m for t in members for m in member_objects(t)]
    assert member["merge_fields"].get("FNAME") == expected
