"""Settling as ``pipeline.settle_in_staging`` did before it settled new members column-wise, kept only as
the oracle its output is compared with (test_settle_differential.py): every profile but the unchanged ones
settled row by row, in plan order, with the last phase 1 answer of its profile id; then the unchanged ones.
(The old code meant to settle new members column-wise too, but its test for them was an Arrow ``or``,
null wherever a row's planned outcome is null, so they never were.)"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from mailchimp_provider.export import staging
from mailchimp_provider.export.pipeline import _phase1_outcomes, _phase2_results, _settle_simple
from mailchimp_provider.export.plan import PLAN_SCHEMA, UNCHANGED
from mailchimp_provider.export.reconcile import ReadBack, settle_all
from mailchimp_provider.export.staging import RunPaths


def settle_in_staging(paths: RunPaths, read_back: ReadBack) -> tuple[pa.Table, pa.Table]:
    phase1 = _phase1_outcomes(paths)
    schema = PLAN_SCHEMA.remove(PLAN_SCHEMA.get_field_index("body"))
    parts = [
        staging.read_parquet(path, schema.names) for path in staging.sorted_files(paths.plan_dir, ".parquet")
    ]
    plan = pa.concat_tables([schema.empty_table(), *parts])
    unchanged = pc.fill_null(pc.equal(plan["outcome"], UNCHANGED), False)
    rest = plan.filter(pc.invert(unchanged))
    mine = phase1.filter(pc.is_in(phase1["profile_id"], value_set=rest["profile_id"]))
    answers = {
        pid: (outcome, error)
        for pid, outcome, error in zip(
            mine["profile_id"].to_pylist(),
            mine["outcome"].to_pylist(),
            mine["error"].to_pylist(),
            strict=True,
        )
    }
    outcomes, rows = settle_all(rest.to_pylist(), answers, _phase2_results(paths), read_back)
    same = plan.filter(unchanged)
    same_outcomes, same_rows = _settle_simple(
        same.append_column("answer", pa.nulls(same.num_rows, pa.string()))
    )
    return pa.concat_tables([outcomes, same_outcomes]), pa.concat_tables([rows, same_rows])
