"""Chunk the plan into Mailchimp batch jobs, in two phases.

Phase 1 ("members"): batch subscribe (500 members an operation, ``update_existing``, the tags to add; never
``sync_tags``, which would remove tags people added by hand), email changes (``PATCH`` on the old hash) and
archives (``DELETE``). Phase 2 ("tags"): tag removals, and tag additions by the new address of an email change,
as ``POST /lists/{id}/segments/{segment_id}`` with at most 500 addresses each way; and the marketing
permissions of upserted members, one ``PATCH /lists/{id}/members/{hash}`` each, as batch subscribe's member
schema has no ``marketing_permissions``. Operations of one batch run in no order, and a tag can only move by
the new address, and a member's permissions can only be set, once phase 1 landed: hence two phases.

Each job's index maps operation -> profile(s) with an ``action`` column, so reconcile reads answers by action.

Batch-subscribe operations, nearly all of the work, are written from columns: an operation's 500
member JSON texts are joined in Arrow and escaped as one string body, and jobs are written as UTF-8
bytes. Python goes operation by operation for them, and row by row only for the other actions and for
phase 2's rows (permissions and tags to move).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from json.encoder import encode_basestring  # the C encoder json.dumps(..., ensure_ascii=False) uses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mailchimp_provider.export.plan import ARCHIVE, EMAIL_CHANGE, UPSERT

MEMBERS_PER_OPERATION = 500  # Mailchimp's cap for POST /lists/{list_id}
ADDRESSES_PER_SEGMENT_CALL = 500  # Mailchimp's cap for members_to_add and for members_to_remove
TAG_ADD, TAG_REMOVE = "tag_add", "tag_remove"
SET_PERMISSIONS = "permissions"  # phase 2 index action of a member's marketing permissions PATCH

INDEX_SCHEMA = pa.schema(
    [
        ("operation_id", pa.string()),
        ("profile_id", pa.string()),
        ("email", pa.string()),
        ("subscriber_hash", pa.string()),
        ("action", pa.string()),
        ("tag", pa.string()),  # phase 2 only
    ]
)
PLAN_COLUMNS = [
    "profile_id",
    "email",
    "subscriber_hash",
    "old_hash",
    "action",
    "body",
    "permissions",
    "tags_add",
    "tags_remove",
]
# Members waiting for their batch-subscribe operation (large strings: a job's members may hold more
# than 2 GiB of JSON).
_PENDING_SCHEMA = pa.schema(
    [
        ("profile_id", pa.string()),
        ("email", pa.string()),
        ("subscriber_hash", pa.string()),
        ("body", pa.large_string()),
    ]
)
_COMMA, _NOTHING = pa.scalar(",", pa.large_string()), pa.scalar("", pa.large_string())
# The body of an operation's template, a string no body is: the line splits around it.
_MARK = "\x00"
_MARK_JSON = json.dumps(_MARK).encode()
_MEMBERS = pa.scalar('{"members":[', pa.large_string())
_UPDATE_EXISTING = pa.scalar('],"update_existing":true}', pa.large_string())
_PHASE1 = pa.array([UPSERT, EMAIL_CHANGE, ARCHIVE])


def operation_id(job: int, operation: int, phase: str = "") -> str:
    return f"{phase}{job:05d}-{operation:05d}"


def _operation(method: str, path: str, op_id: str, body: str | None = None) -> str:
    op = {"method": method, "path": path, "operation_id": op_id}
    if body is not None:
        op["body"] = body
    return json.dumps(op, ensure_ascii=False)


def _json_string(utf8: memoryview) -> bytes:
    """UTF-8 text as a JSON string literal, exactly as ``json.dumps(..., ensure_ascii=False)`` writes
    it, without decoding it: json escapes only ASCII characters, and read as Latin-1 each byte is one
    character, so the bytes of other characters pass through as they are."""
    return encode_basestring(str(utf8, "latin-1")).encode("latin-1")


def _subscribe_lines(audience_id: str, ops: list[_Subscribe]) -> list[list[bytes]]:
    """The batch-subscribe operations' JSON lines, each as UTF-8 pieces: an operation's member JSON
    joined in Arrow and written as its string body between the line's head and tail, as ``json.dumps``
    writes the line."""
    data = pa.concat_arrays([c for op in ops for c in op.members["body"].chunks])
    offsets = np.zeros(len(ops) + 1, np.int32)
    np.cumsum([op.members.num_rows for op in ops], out=offsets[1:])
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), data), _COMMA)
    bodies = pc.binary_join_element_wise(_MEMBERS, joined, _UPDATE_EXISTING, _NOTHING)
    _, ends, buffer = bodies.buffers()
    ends = np.frombuffer(ends, np.int64)[bodies.offset : bodies.offset + len(bodies) + 1].tolist()
    view = memoryview(buffer)
    path = f"/lists/{audience_id}"
    lines = []
    for k, op in enumerate(ops):
        head, tail = _operation("POST", path, op.op_id, _MARK).encode().rsplit(_MARK_JSON, 1)
        lines.append([head, _json_string(view[ends[k] : ends[k + 1]]), tail])
    return lines


@dataclass(frozen=True)
class JobWriter:
    """Where chunking puts a job's operations (JSON lines, UTF-8) and its operation-to-profile index."""

    write_operations: Callable[[int, bytes], None]
    write_index: Callable[[int, pa.Table], None]


@dataclass(frozen=True)
class _Line:
    """An operation written as its JSON line, with its profiles' (profile_id, email, subscriber_hash)."""

    op_id: str
    line: str
    action: str
    rows: list[tuple]
    tag: str | None


@dataclass(frozen=True)
class _Subscribe:
    """A batch-subscribe operation; its line is written with the job's others (``_subscribe_lines``)."""

    op_id: str
    members: pa.Table  # _PENDING_SCHEMA


class _Jobs:
    """Collects operations into jobs of at most ``ops_per_job`` operations."""

    def __init__(self, writer: JobWriter, ops_per_job: int, phase: str, audience_id: str) -> None:
        self.writer, self.ops_per_job, self.phase = writer, ops_per_job, phase
        self.audience_id = audience_id
        self.jobs: list[int] = []
        self.ops: list[_Line | _Subscribe] = []
        self.weight = 0

    def next_id(self) -> str:
        return operation_id(len(self.jobs), len(self.ops), self.phase)

    def add(self, line: str, op_id: str, action: str, rows: list[tuple], tag: str | None = None) -> None:
        """One operation and its profiles' (profile_id, email, subscriber_hash) index rows."""
        self.ops.append(_Line(op_id, line, action, rows, tag))
        self._weigh(len(rows))

    def add_subscribe(self, members: pa.Table) -> None:
        self.ops.append(_Subscribe(self.next_id(), members))
        self._weigh(members.num_rows)

    def _weigh(self, members: int) -> None:
        self.weight += members
        if self.weight >= self.ops_per_job * MEMBERS_PER_OPERATION:
            self.flush()

    def flush(self) -> None:
        if not self.ops:
            return
        job = len(self.jobs)
        subscribes = [op for op in self.ops if isinstance(op, _Subscribe)]
        written = iter(_subscribe_lines(self.audience_id, subscribes) if subscribes else [])
        pieces: list[bytes] = []
        for op in self.ops:
            pieces += [op.line.encode()] if isinstance(op, _Line) else next(written)
            pieces.append(b"\n")
        self.writer.write_operations(job, b"".join(pieces))
        self.writer.write_index(job, self._index())
        self.jobs.append(job)
        self.ops.clear()
        self.weight = 0

    def _index(self) -> pa.Table:
        """The job's index: its operations' profiles in operation order."""
        pieces: list[pa.Table] = []
        plain: dict[str, list] = {name: [] for name in INDEX_SCHEMA.names}

        def close_plain() -> None:
            if plain["operation_id"]:
                pieces.append(pa.Table.from_pydict(plain, schema=INDEX_SCHEMA))
                for column in plain.values():
                    column.clear()

        for op in self.ops:
            if isinstance(op, _Subscribe):
                close_plain()
                n = op.members.num_rows
                pieces.append(
                    pa.Table.from_arrays(
                        [
                            pa.repeat(op.op_id, n),
                            op.members["profile_id"],
                            op.members["email"],
                            op.members["subscriber_hash"],
                            pa.repeat(UPSERT, n),
                            pa.nulls(n, pa.string()),
                        ],
                        schema=INDEX_SCHEMA,
                    )
                )
                continue
            n = len(op.rows)
            plain["operation_id"] += [op.op_id] * n
            plain["action"] += [op.action] * n
            plain["tag"] += [op.tag] * n
            for name, values in zip(
                ("profile_id", "email", "subscriber_hash"), zip(*op.rows, strict=True), strict=True
            ):
                plain[name] += values
        close_plain()
        return pa.concat_tables(pieces).combine_chunks()


def _phase1(table: pa.Table, pending: pa.Table, jobs: _Jobs, audience_id: str) -> pa.Table:
    """Phase 1 operations of one plan part, in plan order; returns the members still waiting for a
    batch-subscribe operation (fewer than 500). A batch subscribe is emitted at its 500th member, so
    email changes and archives planned before that member come before it, as row by row they would."""
    table = table.filter(pc.is_in(table["action"], value_set=_PHASE1))
    upsert = pc.equal(table["action"], UPSERT).to_numpy(zero_copy_only=False)
    upserts = table.filter(upsert)
    queue = pa.concat_tables(
        [
            pending,
            pa.Table.from_arrays(
                [
                    upserts["profile_id"],
                    upserts["email"],
                    upserts["subscriber_hash"],
                    upserts["body"].cast(pa.large_string()),
                ],
                schema=_PENDING_SCHEMA,
            ),
        ]
    )
    full = queue.num_rows // MEMBERS_PER_OPERATION
    # the row (of this part's phase 1 rows) of each full operation's last member
    emitted_at = np.flatnonzero(upsert)[
        np.arange(1, full + 1) * MEMBERS_PER_OPERATION - 1 - pending.num_rows
    ].tolist()
    others = np.flatnonzero(~upsert)
    rest = table.take(others)
    singles = zip(
        others.tolist(),
        *(
            rest[c].to_pylist()
            for c in ("profile_id", "email", "subscriber_hash", "old_hash", "action", "body")
        ),
        strict=True,
    )
    operation = 0
    for row, pid, email, mhash, old_hash, action, body in singles:
        while operation < full and emitted_at[operation] < row:
            jobs.add_subscribe(queue.slice(operation * MEMBERS_PER_OPERATION, MEMBERS_PER_OPERATION))
            operation += 1
        op_id = jobs.next_id()
        if action == EMAIL_CHANGE:
            line = _operation("PATCH", f"/lists/{audience_id}/members/{old_hash}", op_id, body)
        else:
            line = _operation("DELETE", f"/lists/{audience_id}/members/{mhash}", op_id)
        jobs.add(line, op_id, action, [(pid, email, mhash)])
    for start in range(operation, full):
        jobs.add_subscribe(queue.slice(start * MEMBERS_PER_OPERATION, MEMBERS_PER_OPERATION))
    # a copy, so the part's columns are not held for the few members carried over
    return queue.slice(full * MEMBERS_PER_OPERATION).combine_chunks()


def chunk_plan(
    plan_parts: Iterable[pa.Table],
    audience_id: str,
    job_size: int,
    members: JobWriter,
    tags: JobWriter,
    tag_ids: dict[str, int],
) -> tuple[list[int], list[int]]:
    """Write phase 1 and phase 2 jobs of at most ``job_size`` members each; returns their job numbers.

    ``tag_ids``: Mailchimp's segment id of each tag. A tag to remove that Mailchimp does not have is
    already gone, so it needs no call."""
    ops_per_job = max(1, job_size // MEMBERS_PER_OPERATION)
    phase1 = _Jobs(members, ops_per_job, "", audience_id)
    phase2 = _Jobs(tags, ops_per_job, "t", audience_id)
    pending = _PENDING_SCHEMA.empty_table()
    by_tag: dict[tuple[str, str], list[tuple[str, str, str]]] = {}

    def emit_tag(tag: str, kind: str) -> None:
        entries = by_tag.pop((tag, kind))
        op_id = phase2.next_id()
        field = "members_to_add" if kind == TAG_ADD else "members_to_remove"
        body = json.dumps({field: [email for _, email, _ in entries]}, ensure_ascii=False)
        line = _operation("POST", f"/lists/{audience_id}/segments/{tag_ids[tag]}", op_id, body)
        phase2.add(line, op_id, kind, entries, tag)

    for table in plan_parts:
        pending = _phase1(table, pending, phase1, audience_id)
        # phase 2: only rows with permissions or tags to move, the few
        moves = pc.fill_null(
            pc.or_(
                pc.or_(
                    pc.is_valid(table["permissions"]),
                    pc.greater(pc.list_value_length(table["tags_remove"]), 0),
                ),
                pc.and_(
                    pc.equal(table["action"], EMAIL_CHANGE),
                    pc.greater(pc.list_value_length(table["tags_add"]), 0),
                ),
            ),
            False,
        )
        rows = table.filter(moves)
        columns = [rows[name].to_pylist() for name in PLAN_COLUMNS]
        for pid, email, mhash, _, action, _, permissions, add, remove in zip(*columns, strict=True):
            if permissions is not None:
                op_id = phase2.next_id()
                line = _operation("PATCH", f"/lists/{audience_id}/members/{mhash}", op_id, permissions)
                phase2.add(line, op_id, SET_PERMISSIONS, [(pid, email, mhash)])
            for kind, names in ((TAG_REMOVE, remove), (TAG_ADD, add if action == EMAIL_CHANGE else [])):
                for tag in names or []:
                    if tag not in tag_ids:
                        continue
                    by_tag.setdefault((tag, kind), []).append((pid, email, mhash))
                    if len(by_tag[(tag, kind)]) == ADDRESSES_PER_SEGMENT_CALL:
                        emit_tag(tag, kind)
    if pending.num_rows:
        phase1.add_subscribe(pending)
    for tag, kind in sorted(by_tag):
        emit_tag(tag, kind)
    phase1.flush()
    phase2.flush()
    return phase1.jobs, phase2.jobs
