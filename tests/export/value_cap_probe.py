"""Run extract -> validate and map on a table of profiles in this process and print its memory and counts.

Used by test_value_caps.py in a fresh subprocess, so the figure is this pipeline's alone.
Usage: value_cap_probe.py (sqlite:///PATH | postgresql://...) STAGING_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mailchimp_provider.export.definition import ExportDefinition
from mailchimp_provider.export.extract import ANSI_QUOTE, SQLITE_QUOTE
from mailchimp_provider.export.mapping import Audience, MergeField
from mailchimp_provider.export.pipeline import extract_to_staging, prepare_in_staging
from mailchimp_provider.export.staging import RunPaths
from memory_probe import status_mb

DEFINITION = ExportDefinition.model_validate(
    {
        "export": "caps",
        "mailchimp": {"conn_id": "m", "audience_id": "a"},
        "warehouse": {"conn_id": "w", "table": "profiles"},
        "segments": ["vip"],
        "columns": {"id": "customer_id", "email": "email", "first_name": "first_name"},
        "merge_fields": {"CITY": "city"},
        "extract_chunk_rows": 100,
    }
)
AUDIENCE = Audience("a", "A", False, (MergeField("FNAME", "text"), MergeField("CITY", "text")))


def main() -> None:
    target, staging_dir = sys.argv[1], Path(sys.argv[2])
    if target.startswith("sqlite:///"):
        import sqlite3

        connection = sqlite3.connect(target.removeprefix("sqlite:///"))
        cursor, placeholder, quote = connection.cursor(), "?", SQLITE_QUOTE
    else:
        import psycopg2

        connection = psycopg2.connect(target)
        cursor, placeholder, quote = connection.cursor(name="probe"), "%s", ANSI_QUOTE  # server-side
    baseline = status_mb("VmRSS")
    paths = RunPaths(staging_dir)
    extracted = extract_to_staging(paths, DEFINITION, ["vip"], cursor, placeholder, quote)
    prepared = prepare_in_staging(paths, DEFINITION, AUDIENCE)
    peak = status_mb("VmHWM")
    print(
        json.dumps(
            {
                "baseline_mb": baseline,
                "peak_mb": peak,
                "rows": extracted.rows,
                "accepted": prepared.accepted,
                "rejected": prepared.rejected,
                "dropped_values": prepared.dropped_values,
            }
        )
    )


if __name__ == "__main__":
    main()
