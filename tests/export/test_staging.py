"""Staging: private files, clean-up after a run, and retention of run folders."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pytest
from airflow.sdk import ObjectStoragePath
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


# --- replacing files atomically (issue 10, item 2) -------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MB filesystem (tmpfs), so a write can run out of space; needs root to mount."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount_point)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill(disk: Path, leave_bytes: int) -> None:
    """Take the disk's free space down to about ``leave_bytes``."""
    free = shutil.disk_usage(disk).free - leave_bytes
    with open(disk / "filler", "wb") as handle:
        handle.write(b"\0" * max(free, 0))


def incompressible(rows: int) -> pa.Table:
    return pa.table({"subscriber_hash": [os.urandom(16).hex() for _ in range(rows)]})


@pytest.mark.parametrize("route", ["pathlib", "file_url"])
def test_a_full_disk_leaves_the_previous_state_file_intact(small_disk, route) -> None:
    path = small_disk / "state" / "fingerprints.parquet"
    if route == "file_url":  # what the DAG's steps use: an ObjectStoragePath on the local filesystem
        path = ObjectStoragePath(f"file://{path}")
    old = incompressible(100)
    staging.write_parquet(path, old)
    fill(small_disk, leave_bytes=32_768)

    with pytest.raises(staging.StagingFileError) as failure:
        staging.write_parquet(path, incompressible(20_000))  # about 700 KB: does not fit

    message = str(failure.value)
    assert "fingerprints.parquet" in message and "No space left on device" in message
    assert "unchanged" in message
    assert staging.read_parquet(path).equals(old)
    assert sorted(p.name for p in (small_disk / "state").iterdir()) == ["fingerprints.parquet"]

    with pytest.raises(staging.StagingFileError, match="report.json.*No space left"):
        staging.write_text(path.parent / "report.json", "x" * 100_000)
    assert sorted(p.name for p in (small_disk / "state").iterdir()) == ["fingerprints.parquet"]


@pytest.fixture
def object_store():
    """fsspec's in-memory filesystem as an ObjectStoragePath root: like an object store's writers, its
    files hold whatever was written, even when the writing failed halfway."""
    from airflow.sdk.io import attach
    from fsspec.implementations.memory import MemoryFileSystem

    fs = MemoryFileSystem()  # the shared store: ObjectStoragePath's own fsspec instance sees it too
    attach("memory", fs=fs)
    root = ObjectStoragePath(f"memory://bucket-{uuid.uuid4().hex}/exports")
    yield root
    fs.rm(root.path, recursive=True)


def test_a_write_failing_halfway_to_object_storage_leaves_the_previous_object(
    object_store, monkeypatch
) -> None:
    path = object_store / "state" / "fingerprints.parquet"
    old = incompressible(100)
    staging.write_parquet(path, old)

    def write_half_then_fail(table, handle, **kwargs):
        handle.write(b"PAR1" + b"\0" * 1000)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(staging.pq, "write_table", write_half_then_fail)
    with pytest.raises(staging.StagingFileError, match="fingerprints.parquet.*No space left"):
        staging.write_parquet(path, incompressible(10))
    monkeypatch.undo()

    assert staging.read_parquet(path).equals(old)
    assert [p.name for p in path.parent.iterdir()] == ["fingerprints.parquet"]  # no temporary left behind
    staging.write_text(path.parent / "report.json", "{}")
    assert staging.read_text(path.parent / "report.json") == "{}"


@pytest.mark.parametrize(
    "damage", ["truncated", "garbage", "empty", *[f"garbled_inside{i}" for i in range(40)]]
)
def test_a_damaged_file_names_itself_and_the_way_forward(tmp_path, damage) -> None:
    path = tmp_path / "state" / "fingerprints.parquet"
    staging.write_parquet(path, incompressible(1000))
    data = path.read_bytes()
    damaged = {
        "truncated": data[: len(data) // 2],
        "garbage": os.urandom(500),
        "empty": b"",
        # Arrow: OSError, not ArrowInvalid. Without page checksums about 1 in 20 of these read "fine".
        "garbled_inside": data[:100] + os.urandom(2000) + data[2100:],
    }
    path.write_bytes(damaged[damage.rstrip("0123456789")])

    with pytest.raises(staging.StagingFileError) as failure:
        staging.read_parquet(path, hint="delete it, and the next run sends every profile again")
    assert failure.value.path == str(path)
    assert str(path) in str(failure.value) and "delete it, and the next run" in str(failure.value)

    with pytest.raises(staging.StagingFileError, match="clear the task that wrote it"):
        staging.read_parquet(path)  # the default way forward, for a run's own files
    with pytest.raises(FileNotFoundError):
        staging.read_parquet(tmp_path / "no_such.parquet")
