"""Where a run's files live: staged Parquet, batch operations, outcomes, the report.

Staging holds personal data, so local files and folders are created private (0600/0700) and a
successful run removes everything but its report. Paths may be local ``pathlib.Path`` objects or
Airflow ``ObjectStoragePath`` objects (``s3://...``), which share the small API used here. Every file is
replaced atomically (see ``_replace_atomically``): a later step or run reads the old version or the new
one, never a file torn by a full disk or a crash.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

BASE_PATH_ENV = "MAILCHIMP_EXPORT_BASE_PATH"
R = TypeVar("R")
MAILCHIMP_REJECTS = "mailchimp_rejects.parquet"


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


class StagingFileError(RuntimeError):
    """A staged file could not be written or read. The message names the file, what failed and what to do;
    ``path`` is the file, for callers that want to offer their own way forward."""

    def __init__(self, message: str, path: Any) -> None:
        super().__init__(message)
        self.path = str(path)


UNREADABLE_HINT = "clear the task that wrote it (or the whole run) in Airflow to write it again"


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or str(exc).strip() or 'no message'}"


def _replace_atomically(path: Any, write: Callable[[BinaryIO], None]) -> None:
    """Write a file so readers see the old version or the new one, never a torn mix (see ``_replacing``)."""
    try:
        with _replacing(path) as handle:
            write(handle)
    except Exception as exc:
        raise _write_error(path, exc) from None


def _write_error(path: Any, exc: BaseException) -> StagingFileError:
    return StagingFileError(
        f"could not write {path}: {_reason(exc)}. The previous version of the file, if any, is "
        "unchanged. Free some space or fix the staging path (MAILCHIMP_EXPORT_BASE_PATH), then retry.",
        path,
    )


@contextlib.contextmanager
def _replacing(path: Any) -> Iterator[BinaryIO]:
    """A handle whose content replaces ``path`` when the block ends without an error (else nothing
    changes).

    Local files (``Path`` or ``file://``): a private temporary file in the same folder, flushed and
    fsynced, then ``os.replace`` (atomic within a filesystem) and an fsync of the folder, so the rename
    survives a power cut. Object storage has no rename, but a finished PUT is all-or-nothing; fsspec's
    writers upload what they hold when closed, even after an error, so the object is written under a
    temporary key and moved into place (a server-side copy, itself all-or-nothing) only once complete.
    """
    make_dir(path.parent)
    if (local := local_path(path)) is not None:
        with _replacing_local(local) as handle:
            yield handle
    else:
        with _replacing_remote(path) as handle:
            yield handle


@contextlib.contextmanager
def _replacing_local(path: Path) -> Iterator[BinaryIO]:
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


@contextlib.contextmanager
def _replacing_remote(path: Any) -> Iterator[BinaryIO]:
    temporary = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        with temporary.open("wb") as handle:
            yield handle
        path.fs.mv(temporary.path, path.path)
    except BaseException:
        with contextlib.suppress(Exception):
            temporary.unlink()
        raise


_PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "use_dictionary": False,
    "write_statistics": False,
    "write_page_checksum": True,
}


def write_parquet(path: Any, table: pa.Table) -> None:
    """Staged files are written once and read whole: zstd alone compresses their repeated values, so
    no dictionary pages or statistics are built (half the write time, files no larger). Every page
    carries a CRC, so a file damaged inside fails to read instead of yielding wrong values."""
    _replace_atomically(path, lambda handle: pq.write_table(table, handle, **_PARQUET_OPTIONS))


ROW_GROUP_ROWS = 100_000  # rows a streamed file holds back before writing them as one row group


class ParquetStream:
    """One Parquet file written table by table, as ``write_parquet`` writes one table: for files too
    large to hold whole (a run's new state at 10,000,000 members). Small tables are held back until
    ROW_GROUP_ROWS rows make a row group, so memory stays at about one row group. Counts its rows."""

    def __init__(self, writer: pq.ParquetWriter, path: Any) -> None:
        self._writer, self._path = writer, path
        self._held: list[pa.Table] = []
        self._held_rows = 0
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        self._held.append(table)
        self._held_rows += table.num_rows
        self.rows += table.num_rows
        if self._held_rows >= ROW_GROUP_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self._held_rows:
            self._held = []
            return
        table = pa.concat_tables(self._held)
        self._held, self._held_rows = [], 0
        try:
            self._writer.write_table(table, row_group_size=table.num_rows)
        except Exception as exc:
            raise _write_error(self._path, exc) from None


@contextlib.contextmanager
def parquet_stream(path: Any, schema: pa.Schema) -> Iterator[ParquetStream]:
    """A ParquetStream that replaces ``path`` atomically when the block ends without an error, else
    leaves it as it was. The storage's errors become StagingFileError; the block's own are raised as
    they are. The file has ``schema`` even with no rows."""
    in_block = False
    try:
        with _replacing(path) as handle:
            writer = pq.ParquetWriter(handle, schema, **_PARQUET_OPTIONS)
            try:
                stream = ParquetStream(writer, path)
                in_block = True
                yield stream
                in_block = False
                stream.flush()
            finally:
                writer.close()
    except Exception as exc:
        if in_block or isinstance(exc, StagingFileError):
            raise
        raise _write_error(path, exc) from None


def read_parquet(path: Any, columns: list[str] | None = None, *, hint: str = UNREADABLE_HINT) -> pa.Table:
    """Read a staged Parquet file; a damaged one raises ``StagingFileError`` naming it, with ``hint`` as
    the way forward. Errors of the file system itself (missing file, no permission) stay as they are."""

    def read() -> pa.Table:
        if (local := local_path(path)) is not None:
            return pq.read_table(local, columns=columns, page_checksum_verification=True)
        with path.open("rb") as handle:
            return pq.read_table(handle, columns=columns, page_checksum_verification=True)

    return _damage_named(path, hint, read)


def parquet_row_count(path: Any, *, hint: str = UNREADABLE_HINT) -> int:
    """The rows of a staged Parquet file, from its footer alone."""
    with _parquet_file(path, hint) as file:
        return int(file.metadata.num_rows)


def read_parquet_groups(
    path: Any, columns: list[str] | None = None, *, hint: str = UNREADABLE_HINT
) -> Iterator[pa.Table]:
    """A staged Parquet file row group by row group: files too large to read whole. Damage is reported
    as ``read_parquet`` does."""
    with _parquet_file(path, hint) as file:
        for i in range(file.metadata.num_row_groups):
            yield _damage_named(path, hint, lambda i=i: file.read_row_group(i, columns=columns))


def take_parquet_rows(
    path: Any, rows: Sequence[int], columns: list[str] | None = None, *, hint: str = UNREADABLE_HINT
) -> pa.Table:
    """The rows of a staged Parquet file at these row numbers, in this order, reading only the row
    groups that hold them."""
    with _parquet_file(path, hint) as file:
        if not rows:
            return file.schema_arrow.empty_table().select(columns or file.schema_arrow.names)
        sizes = [file.metadata.row_group(i).num_rows for i in range(file.num_row_groups)]
        starts = np.cumsum([0, *sizes])
        wanted = np.asarray(rows, np.int64)
        groups = np.searchsorted(starts, wanted, side="right") - 1
        table = pa.concat_tables(
            _damage_named(path, hint, lambda g=g: file.read_row_group(g, columns=columns)).take(
                pa.array(wanted[groups == g] - starts[g])
            )
            for g in np.unique(groups).tolist()
        )
        # taken row group by row group: back to the order asked
        return table.take(pa.array(np.argsort(np.argsort(groups, kind="stable"), kind="stable")))


@contextlib.contextmanager
def _parquet_file(path: Any, hint: str) -> Iterator[pq.ParquetFile]:
    if (local := local_path(path)) is not None:
        yield _damage_named(path, hint, lambda: pq.ParquetFile(local, page_checksum_verification=True))
        return
    with path.open("rb") as handle:
        yield _damage_named(path, hint, lambda: pq.ParquetFile(handle, page_checksum_verification=True))


def _damage_named(path: Any, hint: str, read: Callable[[], R]) -> R:
    try:
        return read()
    except (pa.ArrowInvalid, OSError) as exc:
        # Arrow reports a damaged file as ArrowInvalid or a bare OSError; a missing or forbidden file, or an
        # error of the storage itself, as a subclass or with an errno: those stay as they are
        if isinstance(exc, OSError) and (type(exc) is not OSError or exc.errno is not None):
            raise
        raise StagingFileError(f"cannot read {path}: {_reason(exc)}. It is damaged: {hint}.", path) from None


def write_bytes(path: Any, data: bytes) -> None:
    _replace_atomically(path, lambda handle: handle.write(data))


def write_text(path: Any, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def read_text(path: Any, *, hint: str = UNREADABLE_HINT) -> str:
    with path.open("rb") as handle:
        data = handle.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StagingFileError(f"cannot read {path}: {_reason(exc)}. It is damaged: {hint}.", path) from None


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
    def audience_check(self) -> Any:
        """The audience's tag ids and the lost-member sample (subscriber hashes: personal data)."""
        return self.root / "audience_check.json"

    @property
    def archived(self) -> Any:
        return self.root / "archived.parquet"

    @property
    def extract_dir(self) -> Any:
        return self.root / "extract"

    @property
    def extract_summary(self) -> Any:
        """What the extract read (rows, parts, seconds) and how many partitions prepare it."""
        return self.root / "extract.json"

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
    def mailchimp_rejects(self) -> Any:
        """The profiles that failed at Mailchimp or whose outcome stayed unknown (none: no file)."""
        return self.root / MAILCHIMP_REJECTS

    @property
    def report_summary(self) -> Any:
        return self.root / "report.txt"

    def part(self, directory: Any, index: int, suffix: str = ".parquet") -> Any:
        return directory / f"part-{index:05d}{suffix}"

    def prepared_part(self, directory: Any, partition: int, index: int) -> Any:
        """A member or reject part written by the preparation of one subscriber-hash partition."""
        return directory / f"partition-{partition:03d}-part-{index:05d}.parquet"

    def prepared_parts(self, directory: Any, partition: int) -> list[Any]:
        """The member or reject parts of one partition, in the order they were written."""
        prefix = f"partition-{partition:03d}-"
        return [p for p in sorted_files(directory, ".parquet") if p.name.startswith(prefix)]

    def job_operations(self, job: int) -> Any:
        return self.jobs_dir / f"job-{job:05d}.jsonl"

    def job_index(self, job: int) -> Any:
        return self.jobs_dir / f"job-{job:05d}.index.parquet"

    def job_outcomes(self, job: int) -> Any:
        return self.outcomes_dir / f"job-{job:05d}.parquet"

    @property
    def plan_dir(self) -> Any:
        return self.root / "plan"

    @property
    def settled_dir(self) -> Any:
        """The state rows reconcile settled, staged for the commit to stream into the new state."""
        return self.root / "settled"

    @property
    def settled_state(self) -> Any:
        return self.settled_dir / "state.parquet"

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
            self.settled_dir,
            self.jobs_dir,
            self.outcomes_dir,
        ):
            remove_tree(directory)
        for path in (self.archived, self.audience_check):
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
