"""Reports and rejects are read through ObjectStoragePath, so the page works with remote staging: here an
in-memory filesystem stands in for s3://."""

from __future__ import annotations

import csv
import io
import json

import fsspec
import pyarrow as pa
from airflow.sdk.io import attach
from mailchimp_provider.export import staging
from mailchimp_provider.export.summary import read_summary, run_paths
from mailchimp_provider.ui.rejects import MAILCHIMP_REJECTS, rejects_csv


def test_report_and_rejects_from_object_storage(monkeypatch) -> None:
    attach(protocol="memory", fs=fsspec.filesystem("memory"))
    monkeypatch.setenv("MAILCHIMP_EXPORT_BASE_PATH", "memory://exports-bucket/staging")
    paths = run_paths("newsletter", "scheduled__2026-11-29T06:00:00+00:00")
    assert staging.local_path(paths.root) is None  # really not the local disk
    report = {"dry_run": False, "profiles_read": 4, "created": 2, "rejected_locally": {"invalid_email": 1}}
    staging.write_text(paths.report, json.dumps(report))
    staging.write_parquet(
        paths.part(paths.rejects_dir, 0),
        pa.table(
            {"profile_id": ["p1"], "email": ["not-an-email"], "reason": ["invalid_email"], "detail": ["d"]}
        ),
    )
    staging.write_parquet(
        paths.root / MAILCHIMP_REJECTS,
        pa.table(
            {
                "profile_id": ["p2"],
                "email": ["a@b.test"],
                "subscriber_hash": ["h"],
                "outcome": ["failed"],
                "error": ["<email> looks fake or invalid"],
            }
        ),
    )

    summary = read_summary("newsletter", "scheduled__2026-11-29T06:00:00+00:00")
    assert summary.counts == {"created": 2, "rejected": 1} and summary.read == {"profiles_read": 4}
    rows = list(
        csv.DictReader(
            io.StringIO("".join(rejects_csv("newsletter", "scheduled__2026-11-29T06:00:00+00:00")))
        )
    )
    assert [(r["profile_id"], r["stage"]) for r in rows] == [
        ("p1", "rejected locally"),
        ("p2", "failed at Mailchimp"),
    ]
    assert read_summary("newsletter", "manual__never") is None
