"""SQLite persistence (WAL): audiences, merge fields, members, batches.

Every thread gets its own connection (`Database.connect()`); writers are serialised by one fair lock
in Python so the batch thread, which commits in chunks, cannot starve API writers.

Member rows are appended in `seq` order and found through an in-memory index (list, subscriber hash)
-> seq that is rebuilt from the table at startup. A million-member import then only appends rows: no
random B-tree inserts, a small WAL, and no SQL lookup at all for addresses that are not members yet.
One process owns a state file (an exclusive lock file enforces it), which is what makes the index safe.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import secrets
import sqlite3
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .config import AudienceSpec, InterestCategorySpec, MergeFieldSpec
from .model import (
    Audience,
    Batch,
    Interest,
    InterestCategory,
    Member,
    MergeField,
    Permission,
    Segment,
    now_iso,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audiences (
    list_no INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    double_optin INTEGER NOT NULL,
    web_id INTEGER NOT NULL,
    date_created TEXT NOT NULL,
    last_sub_date TEXT NOT NULL DEFAULT '',
    last_unsub_date TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS merge_fields (
    list_no INTEGER NOT NULL,
    merge_id INTEGER NOT NULL,
    tag TEXT NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    required INTEGER NOT NULL,
    default_value TEXT NOT NULL,
    public INTEGER NOT NULL,
    display_order INTEGER NOT NULL,
    help_text TEXT NOT NULL,
    options TEXT NOT NULL,
    PRIMARY KEY (list_no, merge_id),
    UNIQUE (list_no, tag)
);
CREATE TABLE IF NOT EXISTS members (
    seq INTEGER PRIMARY KEY,
    list_no INTEGER NOT NULL,
    hash TEXT NOT NULL,
    email TEXT NOT NULL,
    status TEXT NOT NULL,
    merge_fields TEXT NOT NULL,
    tags TEXT NOT NULL,
    timestamp_opt TEXT NOT NULL,
    last_changed TEXT NOT NULL,
    extra TEXT  -- JSON of the rarely set fields (see _EXTRA_DEFAULTS); NULL when all are defaults
);
CREATE TABLE IF NOT EXISTS member_counts (
    list_no INTEGER NOT NULL,
    status TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (list_no, status)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    total_operations INTEGER NOT NULL,
    finished_operations INTEGER NOT NULL DEFAULT 0,
    errored_operations INTEGER NOT NULL DEFAULT 0,
    submitted_at TEXT NOT NULL,
    completed_at TEXT NOT NULL DEFAULT '',
    parts_done INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS batches_by_status ON batches (status);
-- tags and static segments are one thing in Mailchimp: a named set of members with a numeric id
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    list_no INTEGER NOT NULL,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (list_no, name)
);
-- members per segment and status (archived included; readers pick the statuses they count)
CREATE TABLE IF NOT EXISTS segment_counts (
    list_no INTEGER NOT NULL,
    segment_id INTEGER NOT NULL,
    status TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (list_no, segment_id, status)
) WITHOUT ROWID;
-- permanently deleted ("forgotten") addresses, which the API may not add again
CREATE TABLE IF NOT EXISTS forgotten (
    list_no INTEGER NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (list_no, hash)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS interest_categories (
    list_no INTEGER NOT NULL,
    id TEXT NOT NULL,
    title TEXT NOT NULL,
    type TEXT NOT NULL,
    display_order INTEGER NOT NULL,
    PRIMARY KEY (list_no, id)
);
CREATE TABLE IF NOT EXISTS interests (
    list_no INTEGER NOT NULL,
    id TEXT NOT NULL,
    category_id TEXT NOT NULL,
    name TEXT NOT NULL,
    display_order INTEGER NOT NULL,
    PRIMARY KEY (list_no, id)
);
CREATE TABLE IF NOT EXISTS marketing_permissions (
    list_no INTEGER NOT NULL,
    id TEXT NOT NULL,
    text TEXT NOT NULL,
    display_order INTEGER NOT NULL,
    PRIMARY KEY (list_no, id)
);
"""

_MEMBER_COLUMNS = "seq, hash, email, status, merge_fields, tags, timestamp_opt, last_changed, extra"
_EXTRA_DEFAULTS: dict[str, Any] = {
    "archived_from": None,
    "email_type": "html",
    "language": "",
    "vip": False,
    "ip_signup": "",
    "timestamp_signup": "",
    "ip_opt": "",
    "interests": {},
    "marketing_permissions": {},
    "location": None,
}
_BATCH_COLUMNS = "id, status, total_operations, finished_operations, errored_operations, submitted_at, completed_at, parts_done"
_IN_CHUNK = 900  # stay under SQLite's default limit of bound parameters
_encode_str = json.encoder.encode_basestring_ascii


def _tags_json(tags: list[str]) -> str:
    return "[" + ",".join(map(_encode_str, tags)) + "]"


class FairLock:
    """A FIFO lock: waiting writers are served in arrival order."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()
        self._held = False

    def __enter__(self) -> None:
        me = object()
        with self._cond:
            self._queue.append(me)
            while self._held or self._queue[0] is not me:
                self._cond.wait()
            self._queue.popleft()
            self._held = True

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()


class StateLocked(RuntimeError):
    """Another emulator process already serves this state file."""


class MemberIndex:
    """(list_no, subscriber hash) -> seq of every stored member, plus the next seq to hand out.

    Mutated only by the writer holding the write lock; a reader that sees an entry whose row is not
    committed yet simply finds no row."""

    def __init__(self, rows: Iterable[tuple[int, str, int]]) -> None:
        self._lists: dict[int, dict[str, int]] = {}
        top = 0
        for list_no, member_hash, seq in rows:
            self._lists.setdefault(list_no, {})[member_hash] = seq
            top = max(top, seq)
        self._next = top + 1
        self.has_forgotten = False  # False: no address was ever deleted permanently (skip the lookup)

    def lookup(self, list_no: int) -> dict[str, int]:
        return self._lists.get(list_no, {})

    def lookup_for_write(self, list_no: int) -> dict[str, int]:
        return self._lists.setdefault(list_no, {})

    def add(self, list_no: int, hashes: list[str]) -> int:
        """Register new members; returns the seq of the first (the others follow in order)."""
        first = self._next
        self._next += len(hashes)
        self._lists.setdefault(list_no, {}).update(zip(hashes, range(first, self._next), strict=True))
        return first

    def discard(self, list_no: int, member_hash: str) -> None:
        self._lists.get(list_no, {}).pop(member_hash, None)

    def rename(self, list_no: int, old_hash: str, new_hash: str) -> None:
        """A member's address changed: its row (seq) is now found under the new hash."""
        known = self._lists.setdefault(list_no, {})
        known[new_hash] = known.pop(old_hash)

    def clear(self) -> None:
        self._lists.clear()
        self.has_forgotten = False


def _backfill_segments(conn: sqlite3.Connection) -> None:
    """A state file written before tags were segments: give its tags segment rows and counts."""
    if conn.execute("SELECT 1 FROM segments LIMIT 1").fetchone() is not None:
        return
    counts: dict[tuple[int, str, str], int] = {}
    for list_no, status, tags in conn.execute("SELECT list_no, status, tags FROM members WHERE tags != '[]'"):
        for name in json.loads(tags):
            key = (list_no, name, status)
            counts[key] = counts.get(key, 0) + 1
    if not counts:
        return
    now = now_iso()
    conn.execute("BEGIN IMMEDIATE")
    ids: dict[tuple[int, str], int] = {}
    for list_no, name, _ in counts:
        if (list_no, name) not in ids:
            cur = conn.execute(
                "INSERT INTO segments (list_no, name, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (list_no, name, now, now),
            )
            ids[list_no, name] = int(cur.lastrowid or 0)
    conn.executemany(
        "INSERT INTO segment_counts VALUES (?, ?, ?, ?)",
        [(list_no, ids[list_no, name], status, n) for (list_no, name, status), n in counts.items()],
    )
    conn.execute("COMMIT")


class Database:
    """The state file; hands out per-thread `Store` connections sharing one write lock and member index."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.write_lock = FairLock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(path.with_name(path.name + ".lock"), "w")  # held while we run
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise StateLocked(f"{path} is in use by another emulator process") from None
        with contextlib.closing(self._open()) as conn:
            # 16 KiB pages for a new state file (an existing one keeps its own): appending a million
            # member rows costs a sixth less CPU than with the default 4 KiB
            conn.execute("PRAGMA page_size=16384")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            self.index = MemberIndex(conn.execute("SELECT list_no, hash, seq FROM members"))
            self.index.has_forgotten = conn.execute("SELECT 1 FROM forgotten LIMIT 1").fetchone() is not None
            _backfill_segments(conn)

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=60)
        # synchronous=OFF: a killed process loses nothing in WAL mode; only an OS crash could.
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-131072")
        conn.execute("PRAGMA temp_store=MEMORY")
        return conn

    def connect(self) -> Store:
        return Store(self._open(), self.write_lock, self.index)

    def close(self) -> None:
        self._lock_file.close()


class Store:
    """One connection with the queries the emulator needs."""

    def __init__(self, conn: sqlite3.Connection, write_lock: FairLock, index: MemberIndex) -> None:
        self.conn = conn
        self._write_lock = write_lock
        self._index = index
        self._depth = 0
        # index changes of the open transaction, undone on rollback: ("add", list_no, hashes) after an
        # insert, ("rename", list_no, old, new) after an address change, ("drop", list_no, hash, seq)
        self._added: list[tuple[Any, ...]] = []

    def _undo_index(self, mark: int) -> None:
        while len(self._added) > mark:
            change = self._added.pop()
            if change[0] == "add":
                for member_hash in change[2]:
                    self._index.discard(change[1], member_hash)
            elif change[0] == "rename":
                self._index.rename(change[1], change[3], change[2])
            else:
                self._index.lookup_for_write(change[1])[change[2]] = change[3]

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction; nested calls become savepoints so one operation can roll back alone."""
        if self._depth:
            name, mark = f"sp{self._depth}", len(self._added)
            self.conn.execute(f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield
            except BaseException:
                self.conn.execute(f"ROLLBACK TO {name}")
                self.conn.execute(f"RELEASE {name}")
                self._undo_index(mark)
                raise
            else:
                self.conn.execute(f"RELEASE {name}")
            finally:
                self._depth -= 1
            return
        with self._write_lock:
            self.conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
            except BaseException:
                self.conn.execute("ROLLBACK")
                self._undo_index(0)
                raise
            else:
                self.conn.execute("COMMIT")
            finally:
                self._depth = 0
                self._added.clear()

    # ---- meta ------------------------------------------------------------------------------------

    def secret(self) -> str:
        """A per-state-file secret (signs archive URLs, so they stay valid across restarts)."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'secret'").fetchone()
        if row:
            return str(row[0])
        with self.transaction():
            self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('secret', ?)", (secrets.token_hex(32),))
        return str(self.conn.execute("SELECT value FROM meta WHERE key = 'secret'").fetchone()[0])

    # ---- audiences and merge fields --------------------------------------------------------------

    def sync_audiences(self, specs: Iterable[AudienceSpec], now: str, *, reset_fields: bool = False) -> None:
        """Create configured audiences, refresh name/double_optin, add missing configured merge fields.

        With reset_fields the merge fields are set back to exactly the configured ones."""
        with self.transaction():
            for spec in specs:
                row = self.conn.execute("SELECT list_no FROM audiences WHERE id = ?", (spec.id,)).fetchone()
                if row is None:
                    cur = self.conn.execute(
                        "INSERT INTO audiences (id, name, double_optin, web_id, date_created) VALUES (?,?,?,?,?)",
                        (
                            spec.id,
                            spec.name,
                            int(spec.double_optin),
                            secrets.randbelow(900_000) + 100_000,
                            now,
                        ),
                    )
                    list_no = int(cur.lastrowid or 0)
                else:
                    list_no = int(row[0])
                    self.conn.execute(
                        "UPDATE audiences SET name = ?, double_optin = ? WHERE list_no = ?",
                        (spec.name, int(spec.double_optin), list_no),
                    )
                if reset_fields:
                    for table in ("merge_fields", "interest_categories", "interests"):
                        self.conn.execute(f"DELETE FROM {table} WHERE list_no = ?", (list_no,))
                for category in spec.interest_categories:
                    self.add_interest_category(list_no, category)
                self.conn.execute("DELETE FROM marketing_permissions WHERE list_no = ?", (list_no,))
                self.conn.executemany(
                    "INSERT INTO marketing_permissions VALUES (?, ?, ?, ?)",
                    [(list_no, p.id, p.text, n) for n, p in enumerate(spec.marketing_permissions)],
                )
                existing = {
                    r[0]
                    for r in self.conn.execute("SELECT tag FROM merge_fields WHERE list_no = ?", (list_no,))
                }
                for spec_field in spec.merge_fields:
                    if spec_field.tag not in existing:
                        self.add_merge_field(list_no, spec_field)

    def audience(self, list_id: str) -> Audience | None:
        row = self.conn.execute(
            "SELECT list_no, id, name, double_optin, web_id, date_created, last_sub_date, last_unsub_date "
            "FROM audiences WHERE id = ?",
            (list_id,),
        ).fetchone()
        if row is None:
            return None
        return Audience(row[0], row[1], row[2], bool(row[3]), row[4], row[5], row[6], row[7])

    def audiences(self) -> list[Audience]:
        rows = self.conn.execute(
            "SELECT list_no, id, name, double_optin, web_id, date_created, last_sub_date, last_unsub_date "
            "FROM audiences ORDER BY list_no"
        )
        return [Audience(r[0], r[1], r[2], bool(r[3]), r[4], r[5], r[6], r[7]) for r in rows]

    def merge_fields(self, list_no: int) -> list[MergeField]:
        rows = self.conn.execute(
            "SELECT merge_id, tag, name, type, required, default_value, public, display_order, help_text, options "
            "FROM merge_fields WHERE list_no = ? ORDER BY display_order, merge_id",
            (list_no,),
        )
        return [
            MergeField(r[0], r[1], r[2], r[3], bool(r[4]), r[5], bool(r[6]), r[7], r[8], json.loads(r[9]))
            for r in rows
        ]

    def add_merge_field(self, list_no: int, spec: MergeFieldSpec) -> MergeField:
        """Insert a merge field with the next merge_id (EMAIL is merge_id 0 / display_order 1)."""
        with self.transaction():
            merge_id, order = self.conn.execute(
                "SELECT COALESCE(MAX(merge_id), 0) + 1, COALESCE(MAX(display_order), 1) + 1 "
                "FROM merge_fields WHERE list_no = ?",
                (list_no,),
            ).fetchone()
            self.conn.execute(
                "INSERT INTO merge_fields VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    list_no,
                    merge_id,
                    spec.tag,
                    spec.name,
                    spec.type,
                    int(spec.required),
                    spec.default_value,
                    int(spec.public),
                    order,
                    spec.help_text,
                    json.dumps(spec.options),
                ),
            )
        return MergeField(
            merge_id,
            spec.tag,
            spec.name,
            spec.type,
            spec.required,
            spec.default_value,
            spec.public,
            order,
            spec.help_text,
            dict(spec.options),
        )

    def touch_audience_dates(self, list_no: int, *, sub: str | None, unsub: str | None) -> None:
        if sub:
            self.conn.execute("UPDATE audiences SET last_sub_date = ? WHERE list_no = ?", (sub, list_no))
        if unsub:
            self.conn.execute("UPDATE audiences SET last_unsub_date = ? WHERE list_no = ?", (unsub, list_no))

    # ---- members ---------------------------------------------------------------------------------

    @staticmethod
    def _member(row: tuple[Any, ...]) -> Member:
        extra = _EXTRA_DEFAULTS if row[8] is None else {**_EXTRA_DEFAULTS, **json.loads(row[8])}
        return Member(
            row[0],
            row[1],
            row[2],
            row[3],
            extra["archived_from"],
            extra["email_type"],
            json.loads(row[4]),
            json.loads(row[5]),
            extra["language"],
            extra["vip"],
            extra["ip_signup"],
            extra["timestamp_signup"],
            extra["ip_opt"],
            row[6],
            row[7],
            dict(extra["interests"]),
            dict(extra["marketing_permissions"]),
            None if extra["location"] is None else tuple(extra["location"]),
            row[4],
        )

    @staticmethod
    def _extra(m: Member) -> str | None:
        if (
            m.archived_from is None
            and m.email_type == "html"
            and not m.language
            and not m.vip
            and not m.ip_signup
            and not m.timestamp_signup
            and not m.ip_opt
            and not m.interests
            and not m.marketing_permissions
            and m.location is None
        ):
            return None
        values = {
            "archived_from": m.archived_from,
            "email_type": m.email_type,
            "language": m.language,
            "vip": m.vip,
            "ip_signup": m.ip_signup,
            "timestamp_signup": m.timestamp_signup,
            "ip_opt": m.ip_opt,
            "interests": m.interests,
            "marketing_permissions": m.marketing_permissions,
            "location": m.location,
        }
        return json.dumps({k: v for k, v in values.items() if v != _EXTRA_DEFAULTS[k]})

    def find_members(self, list_no: int, hashes: list[str]) -> dict[str, Member]:
        """The stored members among `hashes`: an index probe, then one SELECT for those that exist."""
        known = self._index.lookup(list_no)
        seqs = [seq for seq in map(known.get, hashes) if seq is not None]
        found: dict[str, Member] = {}
        for start in range(0, len(seqs), _IN_CHUNK):
            chunk = seqs[start : start + _IN_CHUNK]
            for row in self.conn.execute(
                f"SELECT {_MEMBER_COLUMNS} FROM members WHERE seq IN ({','.join('?' * len(chunk))})",
                chunk,
            ):
                found[row[1]] = self._member(row)
        return found

    def member(self, list_no: int, member_hash: str) -> Member | None:
        return self.find_members(list_no, [member_hash]).get(member_hash)

    def insert_members(self, list_no: int, members: list[Member]) -> None:
        """Append new members (inside a transaction); their seq comes from the index."""
        hashes = [m.hash for m in members]
        seq = self._index.add(list_no, hashes)
        self._added.append(("add", list_no, hashes))
        extra = self._extra
        tags_json: dict[tuple[str, ...], str] = {}  # an import's members mostly share their tags
        rows = []
        for m in members:
            m.seq = seq
            seq += 1
            tags = tuple(m.tags)
            encoded = tags_json.get(tags)
            if encoded is None:
                encoded = tags_json[tags] = _tags_json(m.tags)
            rows.append(
                (
                    m.seq,
                    list_no,
                    m.hash,
                    m.email,
                    m.status,
                    m.merge_json(),
                    encoded,
                    m.timestamp_opt,
                    m.last_changed,
                    extra(m),
                )
            )
        self.conn.executemany(
            "INSERT INTO members (seq, list_no, hash, email, status, merge_fields, tags, timestamp_opt, "
            "last_changed, extra) VALUES (?,?,?,?,?,?,?,?,?,?)",
            rows,
        )

    def update_members(self, members: list[Member]) -> None:
        self.conn.executemany(
            "UPDATE members SET hash = ?, email = ?, status = ?, merge_fields = ?, tags = ?, timestamp_opt = ?, "
            "last_changed = ?, extra = ? WHERE seq = ?",
            [
                (
                    m.hash,
                    m.email,
                    m.status,
                    m.merge_json(),
                    _tags_json(m.tags),
                    m.timestamp_opt,
                    m.last_changed,
                    self._extra(m),
                    m.seq,
                )
                for m in members
            ],
        )

    def rehash_member(self, list_no: int, old_hash: str, new_hash: str) -> None:
        """Find a member under its new address from now on (the row is updated by update_members)."""
        self._index.rename(list_no, old_hash, new_hash)
        self._added.append(("rename", list_no, old_hash, new_hash))

    def delete_member(self, list_no: int, member: Member) -> None:
        """Erase a member for good and remember its address as forgotten."""
        assert member.seq is not None
        self.conn.execute("DELETE FROM members WHERE seq = ?", (member.seq,))
        self.conn.execute("INSERT OR IGNORE INTO forgotten VALUES (?, ?)", (list_no, member.hash))
        self._index.discard(list_no, member.hash)
        self._index.has_forgotten = True
        self._added.append(("drop", list_no, member.hash, member.seq))

    def forgotten(self, list_no: int, hashes: list[str]) -> set[str]:
        """The permanently deleted addresses among `hashes`."""
        found: set[str] = set()
        if not self._index.has_forgotten:
            return found
        for start in range(0, len(hashes), _IN_CHUNK):
            chunk = hashes[start : start + _IN_CHUNK]
            found.update(
                r[0]
                for r in self.conn.execute(
                    f"SELECT hash FROM forgotten WHERE list_no = ? AND hash IN ({','.join('?' * len(chunk))})",
                    (list_no, *chunk),
                )
            )
        return found

    def adjust_counts(self, list_no: int, deltas: dict[str, int]) -> None:
        self.conn.executemany(
            "INSERT INTO member_counts VALUES (?, ?, ?) "
            "ON CONFLICT (list_no, status) DO UPDATE SET n = n + excluded.n",
            [(list_no, status, n) for status, n in deltas.items() if n],
        )

    def member_counts(self, list_no: int) -> dict[str, int]:
        return dict(self.conn.execute("SELECT status, n FROM member_counts WHERE list_no = ?", (list_no,)))

    def list_members(self, list_no: int, status: str | None, count: int | None, offset: int) -> list[Member]:
        """Members in insertion order; without a status filter archived members are left out."""
        where, args = ("status = ?", [status]) if status else ("status != 'archived'", [])
        rows = self.conn.execute(
            f"SELECT {_MEMBER_COLUMNS} FROM members WHERE list_no = ? AND {where} ORDER BY seq LIMIT ? OFFSET ?",
            (list_no, *args, -1 if count is None else count, offset),
        )
        return [self._member(r) for r in rows]

    def members_tagged(self, list_no: int, name: str) -> list[Member]:
        """Every member (archived too) carrying the tag `name`."""
        encoded = _encode_str(name)
        rows = self.conn.execute(
            f"SELECT {_MEMBER_COLUMNS} FROM members WHERE list_no = ? AND instr(tags, ?) > 0 ORDER BY seq",
            (list_no, encoded),
        )
        return [m for m in map(self._member, rows) if name in m.tags]

    # ---- segments (tags) ---------------------------------------------------------------------------

    def segments(self, list_no: int, statuses: tuple[str, ...] = ("subscribed",)) -> list[Segment]:
        """Every tag / static segment; `member_count` counts its members with one of `statuses`."""
        marks = ",".join("?" * len(statuses))
        rows = self.conn.execute(
            "SELECT s.id, s.name, COALESCE(SUM(c.n), 0), s.created_at, s.updated_at FROM segments s "
            f"LEFT JOIN segment_counts c ON c.list_no = s.list_no AND c.segment_id = s.id AND c.status IN ({marks}) "
            "WHERE s.list_no = ? GROUP BY s.id ORDER BY s.id",
            (*statuses, list_no),
        )
        return [Segment(*r) for r in rows]

    def segment(
        self, list_no: int, segment_id: int, statuses: tuple[str, ...] = ("subscribed",)
    ) -> Segment | None:
        return next((s for s in self.segments(list_no, statuses) if s.id == segment_id), None)

    def tag_ids(self, list_no: int) -> dict[str, int]:
        return dict(self.conn.execute("SELECT name, id FROM segments WHERE list_no = ?", (list_no,)))

    def create_segment(self, list_no: int, name: str, now: str) -> int:
        cur = self.conn.execute(
            "INSERT INTO segments (list_no, name, created_at, updated_at) VALUES (?, ?, ?, ?)",
            (list_no, name, now, now),
        )
        return int(cur.lastrowid or 0)

    def adjust_segment_counts(self, list_no: int, deltas: dict[tuple[int, str], int], now: str) -> None:
        """Add (segment id, status) -> n to the counts and touch the segments' updated_at."""
        changed = [(list_no, segment_id, status, n) for (segment_id, status), n in deltas.items() if n]
        self.conn.executemany(
            "INSERT INTO segment_counts VALUES (?, ?, ?, ?) "
            "ON CONFLICT (list_no, segment_id, status) DO UPDATE SET n = n + excluded.n",
            changed,
        )
        self.conn.executemany(
            "UPDATE segments SET updated_at = ? WHERE list_no = ? AND id = ?",
            [(now, list_no, segment_id) for segment_id in {d[1] for d in changed}],
        )

    def rename_segment(self, list_no: int, segment_id: int, name: str, now: str) -> None:
        self.conn.execute(
            "UPDATE segments SET name = ?, updated_at = ? WHERE list_no = ? AND id = ?",
            (name, now, list_no, segment_id),
        )

    def delete_segment(self, list_no: int, segment_id: int) -> None:
        self.conn.execute("DELETE FROM segments WHERE list_no = ? AND id = ?", (list_no, segment_id))
        self.conn.execute(
            "DELETE FROM segment_counts WHERE list_no = ? AND segment_id = ?", (list_no, segment_id)
        )

    # ---- interests and marketing permissions -------------------------------------------------------

    def interest_categories(self, list_no: int) -> list[InterestCategory]:
        rows = self.conn.execute(
            "SELECT id, title, type, display_order FROM interest_categories WHERE list_no = ? "
            "ORDER BY display_order, rowid",
            (list_no,),
        )
        return [InterestCategory(*r) for r in rows]

    def interests(self, list_no: int, category_id: str | None = None) -> list[Interest]:
        where, args = ("AND category_id = ?", (category_id,)) if category_id else ("", ())
        rows = self.conn.execute(
            f"SELECT id, category_id, name, display_order FROM interests WHERE list_no = ? {where} "
            "ORDER BY display_order, rowid",
            (list_no, *args),
        )
        return [Interest(*r) for r in rows]

    def add_interest_category(self, list_no: int, spec: InterestCategorySpec) -> InterestCategory:
        with self.transaction():
            order = self.conn.execute(
                "SELECT COALESCE(MAX(display_order), 0) + 1 FROM interest_categories WHERE list_no = ?",
                (list_no,),
            ).fetchone()[0]
            self.conn.execute(
                "INSERT OR IGNORE INTO interest_categories VALUES (?, ?, ?, ?, ?)",
                (list_no, spec.id, spec.title, spec.type, order),
            )
            for interest in spec.interests:
                self.add_interest(list_no, spec.id, interest.id, interest.name)
        return InterestCategory(spec.id, spec.title, spec.type, order)

    def add_interest(self, list_no: int, category_id: str, interest_id: str, name: str) -> Interest:
        with self.transaction():
            order = self.conn.execute(
                "SELECT COALESCE(MAX(display_order), 0) + 1 FROM interests WHERE list_no = ? AND category_id = ?",
                (list_no, category_id),
            ).fetchone()[0]
            self.conn.execute(
                "INSERT OR IGNORE INTO interests VALUES (?, ?, ?, ?, ?)",
                (list_no, interest_id, category_id, name, order),
            )
        return Interest(interest_id, category_id, name, order)

    def interest_subscriber_count(self, list_no: int, interest_id: str) -> int:
        """Subscribed members with this interest switched on."""
        rows = self.conn.execute(
            "SELECT extra FROM members WHERE list_no = ? AND status = 'subscribed' AND instr(extra, ?) > 0",
            (list_no, f'"{interest_id}": true'),
        )
        return sum(1 for (extra,) in rows if json.loads(extra).get("interests", {}).get(interest_id) is True)

    def permissions(self, list_no: int) -> list[Permission]:
        rows = self.conn.execute(
            "SELECT id, text FROM marketing_permissions WHERE list_no = ? ORDER BY display_order", (list_no,)
        )
        return [Permission(*r) for r in rows]

    # ---- batches ---------------------------------------------------------------------------------

    @staticmethod
    def _batch(row: tuple[Any, ...]) -> Batch:
        return Batch(*row)

    def insert_batch(self, batch_id: str, total: int, submitted_at: str) -> None:
        with self.transaction():
            self.conn.execute(
                "INSERT INTO batches (id, status, total_operations, submitted_at) VALUES (?, 'pending', ?, ?)",
                (batch_id, total, submitted_at),
            )

    def batch(self, batch_id: str) -> Batch | None:
        row = self.conn.execute(f"SELECT {_BATCH_COLUMNS} FROM batches WHERE id = ?", (batch_id,)).fetchone()
        return None if row is None else self._batch(row)

    def batches(self, count: int, offset: int) -> tuple[list[Batch], int]:
        rows = self.conn.execute(
            f"SELECT {_BATCH_COLUMNS} FROM batches ORDER BY seq DESC LIMIT ? OFFSET ?", (count, offset)
        )
        total = self.conn.execute("SELECT COUNT(*) FROM batches").fetchone()[0]
        return [self._batch(r) for r in rows], int(total)

    def unfinished_batches(self) -> list[Batch]:
        rows = self.conn.execute(
            f"SELECT {_BATCH_COLUMNS} FROM batches WHERE status != 'finished' ORDER BY seq"
        )
        return [self._batch(r) for r in rows]

    def pending_batch_count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM batches WHERE status = 'pending'").fetchone()[0])

    def set_batch_status(self, batch_id: str, status: str, completed_at: str = "") -> bool:
        """Move a batch on; False when it no longer exists (deleted or reset)."""
        with self.transaction():
            cur = self.conn.execute(
                "UPDATE batches SET status = ?, completed_at = ? WHERE id = ?",
                (status, completed_at, batch_id),
            )
        return cur.rowcount == 1

    def record_batch_progress(self, batch_id: str, finished: int, errored: int, parts_done: int) -> bool:
        cur = self.conn.execute(
            "UPDATE batches SET finished_operations = ?, errored_operations = ?, parts_done = ? WHERE id = ?",
            (finished, errored, parts_done, batch_id),
        )
        return cur.rowcount == 1

    def delete_batch(self, batch_id: str) -> bool:
        with self.transaction():
            cur = self.conn.execute("DELETE FROM batches WHERE id = ?", (batch_id,))
        return cur.rowcount == 1

    # ---- reset -----------------------------------------------------------------------------------

    def wipe(self) -> None:
        """Forget members and batches (audiences are re-synced by the caller)."""
        with self.transaction():
            for table in ("members", "member_counts", "batches", "segments", "segment_counts", "forgotten"):
                self.conn.execute(f"DELETE FROM {table}")
            self.conn.execute("UPDATE audiences SET last_sub_date = '', last_unsub_date = ''")
        self._index.clear()
