"""The column-wise chunker writes exactly what the row-by-row one wrote: the same jobs of both phases,
operation lines byte for byte and the same index rows, whatever mix of actions, sizes and parts."""

from __future__ import annotations

import json
import random

import pyarrow as pa
from chunk_reference import reference_chunk_plan
from hypothesis import example, given, settings
from hypothesis import strategies as st
from mailchimp_provider.export.chunk import JobWriter, chunk_plan
from mailchimp_provider.export.plan import PLAN_SCHEMA

ACTIONS = ["upsert", "none", "email_change", "archive", "tags"]
TEXT = ["Anna", "Zoë", 'a"b\\c', "日本", "tab\tin", "line\nbreak", "\u2028", "😀", "", "x" * 40]
CONTROL = ["\x00", "\x1f", "\x0b", "\n"]
TAG_IDS = {"a": 1, "b": 2, "c 3": 3}  # "gone" is not in Mailchimp any more


def plan_rows(seed: int, rows: int, weights: tuple[int, ...], permissions: float) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(rows):
        action = rng.choices(ACTIONS, weights)[0]
        email = f"{rng.choice(['p', 'Ö', 'q.r'])}{i}@x.de"
        body = None
        if action in ("upsert", "email_change"):
            body = json.dumps(
                {"email_address": email, "merge_fields": {"F": rng.choice(TEXT), "N": rng.randint(-5, 5)}},
                ensure_ascii=False,
                separators=(",", ":"),
            )
            if rng.random() < 0.02:  # raw control characters: not what the plan writes, escaped all the same
                body = body[:-1] + f',"raw":"{rng.choice(CONTROL)}"}}'
        out.append(
            {
                "profile_id": f"P{i}",
                "email": email,
                "subscriber_hash": f"{i:032x}",
                "old_hash": f"{i + 7:032x}" if action == "email_change" else None,
                "action": action,
                "body": body,
                "permissions": (
                    '{"marketing_permissions":[{"marketing_permission_id":"p1","enabled":true}]}'
                    if action == "upsert" and rng.random() < permissions
                    else None
                ),
                "tags_add": rng.sample(["a", "b", "c 3", "gone"], rng.randint(0, 2)),
                "tags_remove": (
                    rng.sample(["a", "b", "gone"], rng.randint(0, 2)) if rng.random() < 0.1 else []
                ),
            }
        )
    return out


def both(parts: list[pa.Table], job_size: int) -> None:
    written = []
    for chunker in (reference_chunk_plan, chunk_plan):
        ops, index, tag_ops, tag_index = {}, {}, {}, {}
        jobs = chunker(
            parts,
            'aud"1',
            job_size,
            JobWriter(ops.__setitem__, index.__setitem__),
            JobWriter(tag_ops.__setitem__, tag_index.__setitem__),
            TAG_IDS,
        )
        for texts in (ops, tag_ops):  # the reference wrote text, the chunker writes its UTF-8
            for job, text in texts.items():
                texts[job] = text.encode() if isinstance(text, str) else text
        for tables in (index, tag_index):
            for job, table in tables.items():
                tables[job] = (table.schema, table.to_pylist())
        written.append((jobs, ops, index, tag_ops, tag_index))
    reference, ours = written
    assert ours[0] == reference[0]
    for mine, theirs in zip(ours[1:], reference[1:], strict=True):
        assert mine.keys() == theirs.keys()
        for job in theirs:
            assert mine[job] == theirs[job], job


@settings(max_examples=120, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    sizes=st.lists(st.integers(0, 900), min_size=1, max_size=5),
    weights=st.sampled_from([(1, 0, 0, 0, 0), (20, 5, 1, 1, 1), (1, 20, 1, 1, 3), (5, 1, 5, 5, 1)]),
    permissions=st.sampled_from([0.0, 0.1, 1.0]),
    job_size=st.sampled_from([500, 1000, 1499, 2500, 50_000]),
)
@example(seed=2, sizes=[1000, 1500], weights=(1, 0, 0, 0, 0), permissions=0.0, job_size=1000)
@example(seed=1, sizes=[499, 1, 501, 0, 999], weights=(50, 0, 1, 1, 0), permissions=0.0, job_size=1000)
def test_column_wise_chunks_match_the_row_by_row_chunker(seed, sizes, weights, permissions, job_size) -> None:
    rows = plan_rows(seed, sum(sizes), weights, permissions)
    parts, start = [], 0
    for size in sizes:
        parts.append(pa.Table.from_pylist(rows[start : start + size], schema=PLAN_SCHEMA))
        start += size
    both(parts, job_size)


def test_a_plan_with_nothing_to_send() -> None:
    both([PLAN_SCHEMA.empty_table()], 50_000)
    both([], 50_000)
