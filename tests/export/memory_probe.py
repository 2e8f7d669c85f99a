"""Run extract -> validate and map -> chunk on a SQLite warehouse in this process and print its memory.

Used by test_memory_bound.py in a fresh subprocess, so the figure is this pipeline's alone.
Usage: memory_probe.py WAREHOUSE.db STAGING_DIR CHUNK_ROWS
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

from mailchimp_provider.export.definition import ExportDefinition
from mailchimp_provider.export.extract import SQLITE_QUOTE
from mailchimp_provider.export.mapping import Audience, MergeField
from mailchimp_provider.export.pipeline import (
    chunk_in_staging,
    extract_to_staging,
    plan_in_staging,
    prepare_in_staging,
)
from mailchimp_provider.export.staging import RunPaths
from mailchimp_provider.export.state import ExportState

SEGMENTS = ["newsletter_opt_in", "churn_risk", "vip_customers", "new_customers_30d"]


def status_mb(field: str) -> float:
    """A memory figure of this process from /proc. VmHWM, not getrusage's ru_maxrss: that one survives
    exec, so it would include the parent's size at fork time."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise LookupError(field)


def main() -> None:
    warehouse, staging_dir, chunk_rows = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    definition = ExportDefinition.model_validate(
        {
            "export": "probe",
            "mailchimp": {"conn_id": "m", "audience_id": "a"},
            "warehouse": {"conn_id": "w", "table": "segment_profiles"},
            "segments": SEGMENTS,
            "columns": {
                "id": "customer_id",
                "email": "email",
                "first_name": "first_name",
                "last_name": "last_name",
            },
            "merge_fields": {"CITY": "city", "LTV": "lifetime_value"},
            "extract_chunk_rows": chunk_rows,
            "job_size": chunk_rows,
            "max_profiles": 200 * chunk_rows,
        }
    )
    audience = Audience(
        "a",
        "A",
        False,
        tuple(
            MergeField(t, k)
            for t, k in [("FNAME", "text"), ("LNAME", "text"), ("CITY", "text"), ("LTV", "number")]
        ),
    )
    baseline = status_mb("VmRSS")
    paths = RunPaths(staging_dir)
    connection = sqlite3.connect(warehouse)
    extracted = extract_to_staging(paths, definition, SEGMENTS, connection.cursor(), "?", SQLITE_QUOTE)
    prepared = prepare_in_staging(paths, definition, audience)
    plan_in_staging(paths, definition, ExportState(), SEGMENTS)
    jobs, _ = chunk_in_staging(paths, definition)
    peak = status_mb("VmHWM")
    print(
        json.dumps(
            {
                "baseline_mb": baseline,
                "peak_mb": peak,
                "rows": extracted.rows,
                "profiles": prepared.profiles_read,
                "jobs": len(jobs),
            }
        )
    )


if __name__ == "__main__":
    main()
