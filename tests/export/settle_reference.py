"""Settling as ``pipeline.settle_in_staging`` did before it settled new members column-wise, kept only
as the oracle its output is compared with (test_settle_differential.py): Arrow's ``index_in`` against
every phase 1 answer per plan part, and (the column-wise test for new members never passing, its
``or`` being null where a row's planned outcome is) every profile but the unchanged ones settled row
by row."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from mailchimp_provider.export import staging
from mailchimp_provider.export.pipeline import _phase1_outcomes, _phase2_results
from mailchimp_provider.export.plan import PLAN_SCHEMA, UNCHANGED, UPSERT
from mailchimp_provider.export.reconcile import OUTCOME_SCHEMA, ReadBack, settle_all
from mailchimp_provider.export.staging import RunPaths
from mailchimp_provider.export.state import STATE_SCHEMA


def _split_plan(paths: RunPaths, phase1: pa.Table) -> tuple[list[pa.Table], list[pa.Table]]:
    """Planned rows settled column-wise (unchanged members, and new members whose batch subscribe
    answered created or updated and who have no phase 2 operation: the common cases), and the rest,
    settled one by one."""
    columns = [c for c in PLAN_SCHEMA.names if c != "body"]
    simple, rest = [], []
    for path in staging.sorted_files(paths.plan_dir, ".parquet"):
        table = staging.read_parquet(path, columns)
        answered = phase1["outcome"].take(pc.index_in(table["profile_id"], value_set=phase1["profile_id"]))
        table = table.append_column("answer", answered)
        unchanged = pc.equal(table["outcome"], UNCHANGED)
        new = pc.and_(
            pc.and_(pc.equal(table["action"], UPSERT), pc.invert(table["owned"])),
            pc.and_(
                pc.and_(
                    pc.equal(pc.list_value_length(table["tags_remove"]), 0),
                    pc.is_null(table["permissions"]),
                ),
                pc.is_in(table["answer"], value_set=pa.array(["created", "updated"])),
            ),
        )
        easy = pc.fill_null(pc.or_(unchanged, new), False)
        simple.append(table.filter(easy))
        rest.append(table.filter(pc.invert(easy)).drop_columns(["answer"]))
    return simple, rest


def _settle_simple(plan: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Unchanged members keep their state row; new ones get theirs with the tags they were sent."""
    n = plan.num_rows
    unchanged = pc.fill_null(pc.equal(plan["outcome"], UNCHANGED), False)
    outcome = pc.if_else(unchanged, UNCHANGED, plan["answer"])
    outcomes = pa.Table.from_arrays(
        [plan["profile_id"], plan["email"], plan["subscriber_hash"], outcome, pa.nulls(n, pa.string())],
        schema=OUTCOME_SCHEMA,
    )
    rows = pa.Table.from_arrays(
        [
            plan["profile_id"],
            plan["subscriber_hash"],
            plan["email"],
            plan["fingerprint"],
            pc.if_else(unchanged, plan["prev_tags"], plan["tags_add"]),
            plan["segments"],
            pc.if_else(unchanged, plan["prev_created"], pc.equal(outcome, "created")),
        ],
        schema=STATE_SCHEMA,
    )
    return outcomes, rows


def settle_in_staging(paths: RunPaths, read_back: ReadBack) -> tuple[pa.Table, pa.Table]:
    """Every planned profile's outcome and state row, from the plan and both phases' results."""
    phase1 = _phase1_outcomes(paths)
    simple, rest = _split_plan(paths, phase1)
    rest_table = pa.concat_tables(
        [PLAN_SCHEMA.remove(PLAN_SCHEMA.get_field_index("body")).empty_table(), *rest]
    )
    mine = phase1.filter(pc.is_in(phase1["profile_id"], value_set=rest_table["profile_id"]))
    answers = {
        pid: (outcome, error)
        for pid, outcome, error in zip(
            mine["profile_id"].to_pylist(),
            mine["outcome"].to_pylist(),
            mine["error"].to_pylist(),
            strict=True,
        )
    }
    outcomes, rows = settle_all(rest_table.to_pylist(), answers, _phase2_results(paths), read_back)
    for table in simple:
        more_outcomes, more_rows = _settle_simple(table)
        outcomes, rows = pa.concat_tables([outcomes, more_outcomes]), pa.concat_tables([rows, more_rows])
    return outcomes, rows
