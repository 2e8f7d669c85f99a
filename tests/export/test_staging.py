"""Staging: private files, clean-up after a run, and retention of run folders."""

from __future__ import annotations

import os
import stat
import time

import pyarrow as pa
from mailchimp_provider.export import staging
from mailchimp_provider.export.staging import RunPaths


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_and_folders_are_private(tmp_path) -> None:
    paths = RunPaths.for_run(tmp_path / "base", "exp", "manual__2026-01-01T00:00:00+00:00")
    staging.write_parquet(paths.part(paths.extract_dir, 0), pa.table({"a": [1]}))
    staging.write_text(paths.report, "{}")
    assert mode(paths.part(paths.extract_dir, 0)) == 0o600 and mode(paths.report) == 0o600
    for folder in (tmp_path / "base", tmp_path / "base" / "exp", paths.root, paths.extract_dir):
        assert mode(folder) == 0o700
    assert paths.root.name == "manual__2026-01-01T00_00_00_00_00"


def test_cleanup_keeps_only_report_and_rejects(tmp_path) -> None:
    paths = RunPaths(tmp_path / "run")
    for directory in (
        paths.extract_dir,
        paths.members_dir,
        paths.rejects_dir,
        paths.jobs_dir,
        paths.outcomes_dir,
    ):
        staging.write_parquet(paths.part(directory, 0), pa.table({"a": [1]}))
    staging.write_parquet(paths.archived, pa.table({"a": [1]}))
    staging.write_text(paths.report, "{}")
    paths.cleanup_personal_data()
    assert sorted(p.name for p in paths.root.iterdir()) == ["rejects", "report.json"]


def test_runs_older_than_the_retention_are_purged(tmp_path) -> None:
    base = tmp_path / "base"
    old, new = RunPaths.for_run(base, "exp", "old"), RunPaths.for_run(base, "exp", "new")
    for paths in (old, new):
        staging.write_text(paths.report, "{}")
    week_ago = time.time() - 7 * 86400
    os.utime(old.report, (week_ago, week_ago))
    assert staging.purge_old_runs(base, "exp", retention_days=3) == ["old"]
    assert not old.root.exists() and new.report.exists()
