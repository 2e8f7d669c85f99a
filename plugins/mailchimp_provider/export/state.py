"""What an export owns in its audience: the members it sent, the tags it added, what it last sent them.

Per export and audience, under ``<base>/<export>/state/<audience>/``: ``state.json`` (the generation, the run
that committed it, the segments it found, and the name of the members file) and ``members-<generation>.parquet``.
The members file is written first and named by its generation, so a crash between the two writes leaves the
old ``state.json`` pointing at the old, complete members file.

Runs commit optimistically: a run plans against one generation; if another run committed meanwhile, the
profiles this run touched are merged as *dirty* (fingerprint 0, tags = union of both runs' owned tags), so the
next run sends them again in full and removes whatever is no longer right. Nothing is lost either way.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mailchimp_provider.export import staging

STATE_SCHEMA = pa.schema(
    [
        ("profile_id", pa.string()),
        ("subscriber_hash", pa.string()),
        ("email", pa.string()),
        ("fingerprint", pa.int64()),
        ("tags", pa.list_(pa.string())),  # tags this export added and still owns
        ("segments", pa.list_(pa.string())),  # the export's segments the profile was last found in
        ("created", pa.bool_()),  # this export created the member (only those may be archived)
    ]
)
DIRTY = 0  # a fingerprint no member has: the next run sends the member again, with all its tags
STATE_FILE = "state.json"
LOCK_FILE = ".lock"


class StateError(RuntimeError):
    """The export's state cannot be read; the message says which file and how to start afresh."""


@dataclass
class ExportState:
    generation: int = 0
    members: pa.Table = field(default_factory=STATE_SCHEMA.empty_table)
    segments: dict[str, int] = field(default_factory=dict)  # profiles found per segment by the last run
    segment_tags: dict[str, str] = field(default_factory=dict)  # each segment's tag when committed
    run_id: str | None = None

    @property
    def owned(self) -> int:
        return self.members.num_rows


class StateStore:
    """Reads and commits one export's state in one audience."""

    def __init__(self, directory: Any) -> None:
        self.directory = directory

    @property
    def state_file(self) -> Any:
        return self.directory / STATE_FILE

    def members_file(self, generation: int) -> Any:
        return self.directory / f"members-{generation:08d}.parquet"

    def load(self) -> ExportState:
        """The committed state; an empty one when the export never committed (a first run)."""
        state, members_path = self._head()
        if members_path is not None:
            try:
                state.members = _as_state(staging.read_parquet(members_path))
            except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same way forward
                raise self._unreadable(members_path, exc) from None
        return state

    def sample_hashes(self, count: int, rng: random.Random) -> tuple[int, list[str]]:
        """How many members the export owns and the subscriber hashes of ``count`` of them picked at
        random, from the members file's footer and the row groups holding the picks: the state is not
        read whole. An unreadable state raises StateError, as ``load`` does."""
        _, members_path = self._head()
        if members_path is None:
            return 0, []
        try:
            owned = staging.parquet_row_count(members_path)
            picks = rng.sample(range(owned), min(count, owned))
            hashes = staging.take_parquet_rows(members_path, picks, ["subscriber_hash"])["subscriber_hash"]
        except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same way forward
            raise self._unreadable(members_path, exc) from None
        return owned, hashes.to_pylist()

    def _head(self) -> tuple[ExportState, Any | None]:
        """The committed state without its members, and its members file (None before a first commit)."""
        path = self.state_file
        if not path.exists():
            return ExportState(), None
        try:
            meta = json.loads(staging.read_text(path))
            state = ExportState(
                generation=int(meta["generation"]),
                segments={str(k): int(v) for k, v in (meta.get("segments") or {}).items()},
                segment_tags={str(k): str(v) for k, v in (meta.get("segment_tags") or {}).items()},
                run_id=meta.get("run_id"),
            )
            return state, self.directory / meta["members_file"]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise self._unreadable(path, exc) from None

    def _kept(self, members_path: Any | None, touched: pa.Array) -> Iterator[tuple[pa.Table, pa.Table]]:
        """The committed members, a row group at a time: those not ``touched`` (kept as they are) and
        those touched (this run's rows replace them). Touched ids are looked up by sorted keys built once
        (Arrow's ``is_in`` would build a hash table of them for every row group)."""
        if members_path is None:
            return
        from mailchimp_provider.export.plan import Lookup  # plan.py imports this module

        lookup = Lookup(touched)
        try:
            for group in staging.read_parquet_groups(members_path, STATE_SCHEMA.names):
                group = _as_state(group)
                hit = pc.is_valid(lookup.index_in(group["profile_id"].combine_chunks()))
                yield group.filter(pc.invert(hit)), group.filter(hit)
        except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same way forward
            raise self._unreadable(members_path, exc) from None

    def _unreadable(self, path: Any, exc: BaseException) -> StateError:
        first_line = (str(exc).strip().splitlines() or ["no detail"])[0][:300]
        return StateError(
            f"the export's state file {path} cannot be read ({type(exc).__name__}: {first_line}). "
            "Nothing was sent. Restore the folder from a backup, or delete the folder "
            f"{self.directory} to start afresh: the next run then sends every profile once and removes "
            "nothing, and members the export added before are no longer untagged when they leave "
            "(README: 'Export state')."
        )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive lock for the commit. Local folders use flock; object storage has no lock, and
        the DAG's max_active_runs=1 keeps runs of one export apart there (README: 'Export state')."""
        staging.make_dir(self.directory)
        local = staging.local_path(self.directory)
        if local is None:
            yield
            return
        fd = os.open(local / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def commit(
        self,
        planned_from: int,
        touched: pa.Array,
        rows: pa.Table | Iterable[pa.Table],
        segments: dict[str, int],
        segment_tags: dict[str, str],
        run_id: str,
    ) -> tuple[int, bool]:
        """Replace the rows of the ``touched`` profile ids with ``rows`` (those still owned): a table, or
        tables one after another, so a run's rows are streamed into the new members file after the kept
        ones, never held whole (unless another run committed meanwhile: the merge holds them).

        Returns the new generation and whether another run had committed since ``planned_from`` (then
        the touched profiles are merged as dirty). ``segments`` and ``segment_tags`` replace only the
        entries they name, so a run of some segments keeps what it did not read.
        """
        with self._locked():
            current, members_path = self._head()
            if current.run_id == run_id and current.generation > planned_from:
                return current.generation, False  # a retry of a run that already committed
            conflict = current.generation != planned_from
            tables = [rows] if isinstance(rows, pa.Table) else rows
            generation = current.generation + 1
            with staging.parquet_stream(self.members_file(generation), STATE_SCHEMA) as members:
                theirs = [STATE_SCHEMA.empty_table()]
                for kept, replaced in self._kept(members_path, touched):
                    members.write(kept)
                    if conflict:
                        theirs.append(replaced)
                if conflict:
                    ours = pa.concat_tables([STATE_SCHEMA.empty_table(), *map(_as_state, tables)])
                    tables = [_merge_dirty(pa.concat_tables(theirs), ours)]
                for table in tables:
                    members.write(_as_state(table))
            meta = {
                "format": 1,
                "generation": generation,
                "planned_from": planned_from,
                "run_id": run_id,
                "committed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "members_file": self.members_file(generation).name,
                "owned_members": members.rows,
                "segments": {**current.segments, **segments},
                "segment_tags": {**current.segment_tags, **segment_tags},
                "merged_with_concurrent_run": conflict,
            }
            staging.write_text(self.state_file, json.dumps(meta, indent=2, sort_keys=True))
            self._remove_old_members_files(generation)
        return generation, conflict

    def _remove_old_members_files(self, generation: int) -> None:
        keep = self.members_file(generation).name
        for path in staging.sorted_files(self.directory, ".parquet"):
            if path.name.startswith("members-") and path.name != keep:
                path.unlink()


def _as_state(rows: pa.Table) -> pa.Table:
    return rows.select(STATE_SCHEMA.names).cast(STATE_SCHEMA)


def _merge_dirty(theirs_rows: pa.Table, rows: pa.Table) -> pa.Table:
    """The touched profiles after a concurrent commit (``theirs_rows``: the other run's rows of them):
    each row this run or the other holds, marked dirty, with the union of both runs' tags and segments;
    the other run's values win for the rest."""
    theirs = {r["profile_id"]: r for r in theirs_rows.to_pylist()}
    merged: dict[str, dict] = {}
    for row in rows.to_pylist():
        other = theirs.pop(row["profile_id"], None)
        if other is not None:
            row["tags"] = sorted(set(row["tags"] or []) | set(other["tags"] or []))
            row["segments"] = sorted(set(row["segments"] or []) | set(other["segments"] or []))
            row["created"] = bool(row["created"] or other["created"])
        merged[row["profile_id"]] = {**row, "fingerprint": DIRTY}
    for profile_id, other in theirs.items():  # this run dropped them, the other kept them
        merged[profile_id] = {**other, "fingerprint": DIRTY}
    return pa.Table.from_pylist(list(merged.values()), schema=STATE_SCHEMA)
