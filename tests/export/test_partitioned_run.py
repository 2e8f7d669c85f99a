"""A run prepared in subscriber-hash partitions (one mapped task each in the DAG) decides exactly what the
same run prepared whole decides: the same counts, rejects, plan and batch operations, against any state
the export may own (unchanged members, changed data, email changes, addresses taken over, leavers)."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import tempfile
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mailchimp_provider.export import pipeline, staging
from mailchimp_provider.export.definition import AUTO_PARTITION_ROWS, MAX_PREPARE_PARTITIONS, ExportDefinition
from mailchimp_provider.export.extract import SQLITE_QUOTE, TooManyProfiles
from mailchimp_provider.export.mapping import Audience, MergeField
from mailchimp_provider.export.prepare import PrepareResult
from mailchimp_provider.export.staging import RunPaths
from mailchimp_provider.export.state import DIRTY, STATE_SCHEMA, ExportState
from mailchimp_provider.export.validate import subscriber_hash

DEFINITION = ExportDefinition.model_validate(
    {
        "export": "parts",
        "mailchimp": {"conn_id": "mc", "audience_id": "aud1"},
        "warehouse": {"conn_id": "wh", "table": "profiles"},
        "segments": ["s1", "s2"],
        "columns": {"id": "id", "email": "email", "first_name": "first"},
        "on_leave": "archive",
        "job_size": 500,
        "max_profiles": 1000,
    }
)
AUDIENCE = Audience("aud1", "A", False, (MergeField("FNAME", "text"),))
TAG_IDS = {"s1": 1, "s2": 2, "gone": 3}  # "gone": a segment the definition no longer has

ADDRESSES = [f"{name}@{domain}" for name in ("ann", "bo", "cy", "di", "ed") for domain in ("web.de", "x.io")]
emails = st.one_of(
    st.sampled_from(ADDRESSES),
    st.sampled_from(ADDRESSES).map(lambda a: f" {a.upper()}"),  # the same address, written otherwise
    st.sampled_from(["", "no-at-sign", "a@b"]),
    st.none(),
)
names = st.sampled_from(["Ann", "Bo", "Zoë", None])


@st.composite
def warehouses(draw) -> list[tuple]:
    rows = []
    for number in range(draw(st.integers(1, 24))):
        email, first = draw(emails), draw(names)
        segments = draw(st.lists(st.sampled_from(["s1", "s2", "other"]), min_size=1, max_size=3, unique=True))
        rows += [(f"P{number:02d}", segment, email, first) for segment in segments]
    return rows


def owned_members(data: st.DataObject, sent: list[dict]) -> list[dict]:
    """What an earlier run may have left the export owning: some of this run's members as they are now
    (unchanged), with other data or at another address, and profiles gone from the warehouse since."""
    owned = []
    for member in sent:
        change = data.draw(st.sampled_from(["same", "data", "address", "none"]))
        if change == "none":
            continue
        address = data.draw(st.sampled_from(ADDRESSES)) if change == "address" else member["email"]
        owned.append(
            {
                **{k: member[k] for k in ("profile_id", "email", "fingerprint", "tags", "segments")},
                "email": address,
                "subscriber_hash": subscriber_hash(address),
                "fingerprint": DIRTY if change == "data" else member["fingerprint"],
                "created": data.draw(st.booleans()),
            }
        )
    for number in data.draw(st.lists(st.integers(30, 40), max_size=6, unique=True)):
        address = data.draw(st.sampled_from(ADDRESSES))
        segments = sorted(
            data.draw(st.lists(st.sampled_from(["s1", "s2", "gone"]), min_size=1, max_size=3, unique=True))
        )
        owned.append(
            {
                "profile_id": f"Q{number}",
                "subscriber_hash": subscriber_hash(address),
                "email": address,
                "fingerprint": 7,
                "tags": segments,
                "segments": segments,
                "created": data.draw(st.booleans()),
            }
        )
    unique: dict[str, dict] = {}
    for row in owned:  # one owned member per address
        unique.setdefault(row["subscriber_hash"], row)
    return list(unique.values())


def prepare(folder: Path, db: sqlite3.Connection, partitions: int, chunk_rows: int) -> dict:
    """Extract, then validate and map in ``partitions`` partitions, as the DAG's mapped tasks do."""
    definition = DEFINITION.model_copy(update={"extract_chunk_rows": chunk_rows})  # below the minimum of 100
    paths = RunPaths(folder)
    pipeline.extract_to_staging(paths, definition, definition.segment_names, db.cursor(), "?", SQLITE_QUOTE)
    results, members, rejects = [], [], []
    for partition in range(partitions):
        results.append(
            pipeline.prepare_in_staging(
                paths, definition, AUDIENCE, partition=partition, partitions=partitions
            )
        )
        members += paths.prepared_parts(paths.members_dir, partition)
        rejects += paths.prepared_parts(paths.rejects_dir, partition)
    return {
        "paths": paths,
        "prepared": dataclasses.asdict(pipeline.merge_prepared(results)),
        "member_parts": members,
        "reject_parts": rejects,
    }


def decide(run: dict, state: ExportState) -> dict:
    """Plan the prepared run against ``state`` and chunk it: what it decided, in no particular order."""
    paths, members, rejects = run.pop("paths"), run.pop("member_parts"), run.pop("reject_parts")
    plan = pipeline.plan_in_staging(
        paths, DEFINITION, state, DEFINITION.segment_names, member_parts=members, reject_parts=rejects
    )
    jobs, tag_jobs = pipeline.chunk_in_staging(paths, DEFINITION, TAG_IDS)
    index = [
        {k: v for k, v in row.items() if k != "operation_id"}
        for path in staging.sorted_files(paths.jobs_dir, ".index.parquet")
        for row in staging.read_parquet(path).to_pylist()
    ]
    operations = [
        len(staging.read_text(path).splitlines()) for path in staging.sorted_files(paths.jobs_dir, ".jsonl")
    ]
    return {
        **run,
        "members": _rows(members),
        "rejects": _rows(rejects),
        "plan_summary": plan.to_dict(),
        "plan": _rows(staging.sorted_files(paths.plan_dir, ".parquet")),
        "jobs": (len(jobs), len(tag_jobs), sum(operations)),
        "index": sorted(map(json.dumps, index)),
    }


def _rows(parts: list) -> list[str]:
    return sorted(
        json.dumps(row, sort_keys=True) for p in parts for row in staging.read_parquet(p).to_pylist()
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(warehouses(), st.integers(1, 9), st.integers(2, 5), st.data())
def test_a_partitioned_run_decides_what_the_whole_run_decides(rows, chunk_rows, partitions, data) -> None:
    with tempfile.TemporaryDirectory() as work:
        db = sqlite3.connect(Path(work) / "w.db")
        db.execute("CREATE TABLE profiles (id TEXT, segment TEXT, email TEXT, first TEXT)")
        db.executemany("INSERT INTO profiles VALUES (?, ?, ?, ?)", rows)
        whole = prepare(Path(work) / "whole", db, 1, chunk_rows)
        sent = [staging.read_parquet(p).to_pylist() for p in whole["member_parts"]]
        owned = owned_members(data, [member for part in sent for member in part])
        state = ExportState(
            3, pa.Table.from_pylist(owned, schema=STATE_SCHEMA), segment_tags={"gone": "gone"}
        )
        split = decide(prepare(Path(work) / "split", db, partitions, chunk_rows), state)
        whole = decide(whole, state)
    assert split == whole
    assert whole["prepared"]["profiles_read"] == len({row[0] for row in rows if row[1] != "other"})


def test_the_partitions_add_up_and_max_profiles_counts_them_all() -> None:
    results = [
        PrepareResult(rows_read=9, profiles_read=4, accepted=3, rejected={"invalid_email": 1}, parts=2),
        PrepareResult(
            rows_read=9, profiles_read=3, accepted=2, rejected={"invalid_email": 1, "duplicate_email": 1}
        ),
    ]
    merged = pipeline.merge_prepared(results)
    assert (merged.rows_read, merged.profiles_read, merged.accepted, merged.parts) == (9, 7, 5, 2)
    assert merged.rejected == {"invalid_email": 2, "duplicate_email": 1}
    limited = DEFINITION.model_copy(update={"max_profiles": 4})
    pipeline.check_profile_limit(limited, 4)
    with pytest.raises(TooManyProfiles, match="found 5 valid profiles, more than its limit max_profiles=4"):
        pipeline.check_profile_limit(limited, merged.accepted)


def test_a_retried_partition_replaces_its_own_parts_and_only_those(tmp_path) -> None:
    db = sqlite3.connect(tmp_path / "w.db")
    db.execute("CREATE TABLE profiles (id TEXT, segment TEXT, email TEXT, first TEXT)")
    db.executemany(
        "INSERT INTO profiles VALUES (?, 's1', ?, 'N')", [(f"P{i}", a) for i, a in enumerate(ADDRESSES)]
    )
    definition = DEFINITION.model_copy(update={"extract_chunk_rows": 3})
    paths = RunPaths(tmp_path / "run")
    pipeline.extract_to_staging(paths, definition, ["s1"], db.cursor(), "?", SQLITE_QUOTE)
    first = [
        pipeline.prepare_in_staging(paths, definition, AUDIENCE, partition=k, partitions=2) for k in (0, 1)
    ]
    assert first[0].accepted + first[1].accepted == len(ADDRESSES) and 0 < first[0].accepted < len(ADDRESSES)
    ours, theirs = (paths.prepared_parts(paths.members_dir, k) for k in (1, 0))
    stale = paths.prepared_part(paths.members_dir, 1, 99)  # left by an attempt that wrote more parts
    staging.write_parquet(stale, staging.read_parquet(ours[0]))
    before = {p.name: p.read_bytes() for p in theirs}

    assert pipeline.prepare_in_staging(paths, definition, AUDIENCE, partition=1, partitions=2) == first[1]
    assert paths.prepared_parts(paths.members_dir, 1) == ours and not stale.exists()
    assert {p.name: p.read_bytes() for p in paths.prepared_parts(paths.members_dir, 0)} == before


@pytest.mark.parametrize(
    ("setting", "rows", "expected"),
    [
        ("auto", 0, 1),  # an empty extract is still prepared (and planned: leavers)
        ("auto", 1, 1),
        ("auto", AUTO_PARTITION_ROWS, 1),
        ("auto", AUTO_PARTITION_ROWS + 1, 2),
        ("auto", 10_000_000, 20),
        ("auto", AUTO_PARTITION_ROWS * MAX_PREPARE_PARTITIONS * 3, MAX_PREPARE_PARTITIONS),
        (3, 1, 3),  # a count set in the definition holds whatever the size
        (3, 10_000_000, 3),
    ],
)
def test_the_partition_count_is_the_definitions_or_follows_the_rows(setting, rows, expected) -> None:
    definition = DEFINITION.model_copy(update={"prepare_partitions": setting})
    assert definition.partitions_for(rows) == expected


def test_partitions_default_to_auto_and_the_setting_is_checked() -> None:
    raw = DEFINITION.model_dump(exclude={"prepare_partitions"})
    assert ExportDefinition.model_validate(raw).prepare_partitions == "auto"
    for wrong in (0, 33, "some", 2.5):
        with pytest.raises(ValueError, match="prepare_partitions"):
            ExportDefinition.model_validate({**raw, "prepare_partitions": wrong})
