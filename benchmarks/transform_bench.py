"""What a computed-field transform costs: the example transform on N demo profiles, beside the same
export's validate-and-map without one.

    .venv/bin/python benchmarks/transform_bench.py [--profiles 1000000]

Seeds a SQLite demo warehouse, extracts it once into staged parts, then times on those parts:
reading the parts alone, the transform alone (``transforms.example:enrich``: tier, full name, language),
validate-and-map without a transform, and validate-and-map with the transform and its three columns mapped.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
QUERY = (
    "SELECT 'all' AS segment, customer_id, email, first_name, last_name, city, country, lifetime_value "
    "FROM customer_profiles"
)
TRANSFORM = {
    "function": "transforms.example:enrich",
    "reads": ["lifetime_value", "first_name", "last_name", "country"],
    "returns": ["tier", "full_name", "language"],
}


def definition(profiles: int, with_transform: bool):
    from mailchimp_provider.export.definition import ExportDefinition

    raw: dict[str, Any] = {
        "export": "bench",
        "mailchimp": {"conn_id": "mailchimp_default", "audience_id": "bench"},
        "warehouse": {"conn_id": "warehouse", "query": QUERY},
        "segments": ["all"],
        "columns": {
            "id": "customer_id",
            "email": "email",
            "first_name": "first_name",
            "last_name": "last_name",
        },
        "merge_fields": {"CITY": "city", "COUNTRY": "country", "LTV": "lifetime_value"},
        "max_profiles": max(profiles, 1000),
    }
    if with_transform:
        raw["transform"] = TRANSFORM
        raw["merge_fields"] |= {"TIER": "tier", "FULLNAME": "full_name"}
        raw["columns"]["language"] = "language"
    return ExportDefinition.model_validate(raw)


def audience():
    from mailchimp_provider.export.mapping import Audience, MergeField

    fields = [("FNAME", "text"), ("LNAME", "text"), ("CITY", "text"), ("COUNTRY", "text"), ("LTV", "number")]
    tier = MergeField("TIER", "dropdown", choices=("Bronze", "Silver", "Gold", "Platinum"))
    return Audience(
        "bench",
        "Bench",
        False,
        (*(MergeField(t, k) for t, k in fields), tier, MergeField("FULLNAME", "text")),
    )


def timed(work: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profiles", type=int, default=1_000_000)
    n = parser.parse_args(argv).profiles

    from mailchimp_provider.export import transform
    from mailchimp_provider.export.member_fields import MemberFieldPlan
    from mailchimp_provider.export.pipeline import extract_to_staging, prepare_in_staging, read_parts
    from mailchimp_provider.export.staging import RunPaths

    workdir = Path(tempfile.mkdtemp(prefix="transform-bench-"))
    try:
        warehouse = workdir / "warehouse.db"
        subprocess.run(
            [str(BIN / "seed-demo-warehouse"), "--target", f"sqlite:///{warehouse}", "--profiles", str(n)],
            check=True,
            capture_output=True,
        )
        plain, computed = definition(n, False), definition(n, True)
        paths = RunPaths(workdir / "staging")
        conn = sqlite3.connect(warehouse)
        extract_to_staging(paths, computed, computed.segments, conn.cursor(), "?", "`")
        conn.close()
        language = MemberFieldPlan(language_column="language")
        next(transform.apply(computed.transform, read_parts(paths.extract_dir)))  # imports, once per process
        read_s, _ = timed(lambda: sum(t.num_rows for t in read_parts(paths.extract_dir)))
        transform_s, rows = timed(
            lambda: sum(
                t.num_rows for t in transform.apply(computed.transform, read_parts(paths.extract_dir))
            )
        )
        plain_s, _ = timed(lambda: prepare_in_staging(paths, plain, audience()))
        with_s, _ = timed(lambda: prepare_in_staging(paths, computed, audience(), member_fields=language))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    per_million = 1_000_000 / rows
    print(f"# Computed fields: {rows:,} rows (SQLite demo warehouse), seconds per 1,000,000 rows")
    print()
    print("| stage | seconds per 1,000,000 |")
    print("| --- | ---: |")
    print(f"| read the staged parts | {read_s * per_million:.2f} |")
    print(f"| read + transform (transforms.example:enrich) | {transform_s * per_million:.2f} |")
    print(f"| validate and map, no transform | {plain_s * per_million:.2f} |")
    print(f"| validate and map, transform + its 3 columns mapped | {with_s * per_million:.2f} |")
    print()
    print(f"The transform itself: {(transform_s - read_s) * per_million:.2f} s per 1,000,000 rows.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
