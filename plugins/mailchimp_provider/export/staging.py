"""Where a run's files live: staged Parquet, batch operations, outcomes, the report.

Staging holds personal data, so local files and folders are created private (0600/0700) and a
successful run removes everything but its report. Paths may be local ``pathlib.Path`` objects or
Airflow ``ObjectStoragePath`` objects (``s3://...``), which share the small API used here.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

BASE_PATH_ENV = "MAILCHIMP_EXPORT_BASE_PATH"


def base_path() -> Any:
    """The configured staging root: an ObjectStoragePath, local by default."""
    from airflow.sdk import ObjectStoragePath

    configured = os.environ.get(BASE_PATH_ENV)
    if not configured:
        home = os.environ.get("AIRFLOW_HOME") or str(Path.home() / "airflow")
        configured = f"file://{home}/mailchimp-exports"
    elif "://" not in configured:
        configured = f"file://{Path(configured).resolve()}"
    return ObjectStoragePath(configured)


def local_path(path: Any) -> Path | None:
    """The local filesystem path behind ``path``, or None for remote storage."""
    if isinstance(path, Path):
        return path
    if getattr(path, "protocol", None) in ("", "file", "local"):
        return Path(path.path)
    return None


def make_dir(path: Any) -> Any:
    """Create a folder and any missing parents; local ones private to the Airflow user."""
    if (local := local_path(path)) is not None:
        old = os.umask(0o077)  # parents created on the way are private too
        try:
            local.mkdir(parents=True, exist_ok=True)
        finally:
            os.umask(old)
        local.chmod(0o700)
    else:
        path.mkdir(parents=True, exist_ok=True)
    return path


def _private_after_write(path: Any) -> None:
    if (local := local_path(path)) is not None:
        local.chmod(0o600)


def write_parquet(path: Any, table: pa.Table) -> None:
    make_dir(path.parent)
    if (local := local_path(path)) is not None:
        fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            pq.write_table(table, handle, compression="zstd")
        return
    with path.open("wb") as handle:
        pq.write_table(table, handle, compression="zstd")


def read_parquet(path: Any, columns: list[str] | None = None) -> pa.Table:
    if (local := local_path(path)) is not None:
        return pq.read_table(local, columns=columns)
    with path.open("rb") as handle:
        return pq.read_table(handle, columns=columns)


def write_text(path: Any, text: str) -> None:
    make_dir(path.parent)
    if (local := local_path(path)) is not None:
        fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        return
    with path.open("w", encoding="utf-8") as handle:
        handle.write(text)
    _private_after_write(path)


def read_text(path: Any) -> str:
    with path.open("r", encoding="utf-8") as handle:
        return handle.read()


def remove_tree(path: Any) -> None:
    if (local := local_path(path)) is not None:
        shutil.rmtree(local, ignore_errors=True)
    elif path.exists():
        path.rmdir(recursive=True)


def sorted_files(directory: Any, suffix: str) -> list[Any]:
    if not directory.exists():
        return []
    return sorted((p for p in directory.iterdir() if p.name.endswith(suffix)), key=lambda p: p.name)


def safe_name(text: str) -> str:
    """A run id made safe as one path segment."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:200]


@dataclass(frozen=True)
class RunPaths:
    """The file layout of one export run; the single place that names staging files."""

    root: Any

    @classmethod
    def for_run(cls, base: Any, export: str, run_id: str) -> RunPaths:
        return cls(base / export / "runs" / safe_name(run_id))

    @property
    def audience(self) -> Any:
        return self.root / "audience.json"

    @property
    def archived(self) -> Any:
        return self.root / "archived.parquet"

    @property
    def extract_dir(self) -> Any:
        return self.root / "extract"

    @property
    def members_dir(self) -> Any:
        return self.root / "members"

    @property
    def rejects_dir(self) -> Any:
        return self.root / "rejects"

    @property
    def jobs_dir(self) -> Any:
        return self.root / "jobs"

    @property
    def outcomes_dir(self) -> Any:
        return self.root / "outcomes"

    @property
    def report(self) -> Any:
        return self.root / "report.json"

    @property
    def report_summary(self) -> Any:
        return self.root / "report.txt"

    def part(self, directory: Any, index: int, suffix: str = ".parquet") -> Any:
        return directory / f"part-{index:05d}{suffix}"

    def job_operations(self, job: int) -> Any:
        return self.jobs_dir / f"job-{job:05d}.jsonl"

    def job_index(self, job: int) -> Any:
        return self.jobs_dir / f"job-{job:05d}.index.parquet"

    def job_outcomes(self, job: int) -> Any:
        return self.outcomes_dir / f"job-{job:05d}.parquet"

    @property
    def plan_dir(self) -> Any:
        return self.root / "plan"

    def tag_job_operations(self, job: int) -> Any:
        return self.jobs_dir / f"tags-{job:05d}.jsonl"

    def tag_job_index(self, job: int) -> Any:
        return self.jobs_dir / f"tags-{job:05d}.index.parquet"

    def tag_job_outcomes(self, job: int) -> Any:
        return self.outcomes_dir / f"tags-{job:05d}.parquet"

    def cleanup_personal_data(self) -> None:
        """Remove staged personal data after a successful run; the report and rejects stay."""
        for directory in (
            self.extract_dir,
            self.members_dir,
            self.plan_dir,
            self.jobs_dir,
            self.outcomes_dir,
        ):
            remove_tree(directory)
        for path in (self.archived,):
            if path.exists():
                path.unlink()


def export_state_dir(base: Any, export: str, audience_id: str) -> Any:
    """Per export and audience: what was last sent, so unchanged profiles are not sent again."""
    return base / export / "state" / safe_name(audience_id)


def purge_old_runs(base: Any, export: str, retention_days: float, now: float | None = None) -> list[str]:
    """Delete run folders older than the retention (they keep rejected profiles' personal data)."""
    runs = base / export / "runs"
    if not runs.exists():
        return []
    cutoff = (now or time.time()) - retention_days * 86400
    removed = []
    for run in runs.iterdir():
        stamp = run / "report.json"
        probe = stamp if stamp.exists() else run
        modified = probe.stat().st_mtime
        if modified < cutoff:
            remove_tree(run)
            removed.append(run.name)
    return removed
