"""A run's rejected profiles (personal data), read from its staging folder for viewing and download."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from mailchimp_provider.export import staging
from mailchimp_provider.export.summary import run_paths

MAILCHIMP_REJECTS = staging.MAILCHIMP_REJECTS
REJECT_COLUMNS = ("profile_id", "email", "stage", "reason", "detail")


def iter_rejects(export: str, run_id: str) -> Iterator[dict[str, Any]]:
    """Every rejected profile of a run: rejected locally (``rejects/`` parts) and failed at Mailchimp."""
    paths = run_paths(export, run_id)
    for part in staging.sorted_files(paths.rejects_dir, ".parquet"):
        for row in staging.read_parquet(part).to_pylist():
            yield {
                "profile_id": row["profile_id"],
                "email": row["email"],
                "stage": "rejected locally",
                "reason": row["reason"],
                "detail": row.get("detail"),
            }
    failed = paths.mailchimp_rejects
    if failed.exists():
        for row in staging.read_parquet(failed, ["profile_id", "email", "error"]).to_pylist():
            yield {
                "profile_id": row["profile_id"],
                "email": row["email"],
                "stage": "failed at Mailchimp",
                "reason": row["error"],
                "detail": None,
            }


def _spreadsheet_safe(value: Any) -> str:
    """Warehouse values are untrusted: keep a spreadsheet from reading one as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def rejects_csv(export: str, run_id: str) -> Iterator[str]:
    """The rejects as CSV, streamed a row at a time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(REJECT_COLUMNS)
    for row in iter_rejects(export, run_id):
        writer.writerow([_spreadsheet_safe(row[c]) for c in REJECT_COLUMNS])
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
