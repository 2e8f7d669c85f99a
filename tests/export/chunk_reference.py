"""The row-by-row chunker that ``chunk.chunk_plan`` replaced, kept only as the oracle its output is
compared with (test_chunk_differential.py): every plan row read into Python, every operation line written
by ``json.dumps``."""

from __future__ import annotations

import json
from collections.abc import Iterable

import pyarrow as pa
from mailchimp_provider.export.chunk import (
    ADDRESSES_PER_SEGMENT_CALL,
    INDEX_SCHEMA,
    MEMBERS_PER_OPERATION,
    PLAN_COLUMNS,
    SET_PERMISSIONS,
    TAG_ADD,
    TAG_REMOVE,
    JobWriter,
)
from mailchimp_provider.export.plan import ARCHIVE, EMAIL_CHANGE, UPSERT


def operation_id(job: int, operation: int, phase: str = "") -> str:
    return f"{phase}{job:05d}-{operation:05d}"


def batch_subscribe_operation(audience_id: str, op_id: str, member_jsons: list[str]) -> str:
    """One batch operation as a JSON line; member JSON is spliced in, not parsed again."""
    body = '{"members":[' + ",".join(member_jsons) + '],"update_existing":true}'
    return _operation("POST", f"/lists/{audience_id}", op_id, body)


def _operation(method: str, path: str, op_id: str, body: str | None = None) -> str:
    op = {"method": method, "path": path, "operation_id": op_id}
    if body is not None:
        op["body"] = body
    return json.dumps(op, ensure_ascii=False)


class _Jobs:
    """Collects operations into jobs of at most ``ops_per_job`` operations."""

    def __init__(self, writer: JobWriter, ops_per_job: int, phase: str) -> None:
        self.writer, self.ops_per_job, self.phase = writer, ops_per_job, phase
        self.jobs: list[int] = []
        self.lines: list[str] = []
        self.index: dict[str, list] = {name: [] for name in INDEX_SCHEMA.names}
        self.weight = 0

    def next_id(self) -> str:
        return operation_id(len(self.jobs), len(self.lines), self.phase)

    def add(self, line: str, op_id: str, action: str, rows: list[tuple], tag: str | None = None) -> None:
        """One operation and its profiles' (profile_id, email, subscriber_hash) index rows."""
        self.lines.append(line)
        n = len(rows)
        self.index["operation_id"] += [op_id] * n
        self.index["action"] += [action] * n
        self.index["tag"] += [tag] * n
        for name, values in zip(
            ("profile_id", "email", "subscriber_hash"), zip(*rows, strict=True), strict=True
        ):
            self.index[name] += values
        self.weight += n
        if self.weight >= self.ops_per_job * MEMBERS_PER_OPERATION:
            self.flush()

    def flush(self) -> None:
        if not self.lines:
            return
        job = len(self.jobs)
        self.writer.write_operations(job, "\n".join(self.lines) + "\n")
        self.writer.write_index(job, pa.Table.from_pydict(self.index, schema=INDEX_SCHEMA))
        self.jobs.append(job)
        self.lines.clear()
        for column in self.index.values():
            column.clear()
        self.weight = 0


def reference_chunk_plan(
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
    phase1, phase2 = _Jobs(members, ops_per_job, ""), _Jobs(tags, ops_per_job, "t")
    pending: list[tuple[str, str, str, str]] = []
    by_tag: dict[tuple[str, str], list[tuple[str, str, str]]] = {}

    def emit_upserts() -> None:
        op_id = phase1.next_id()
        line = batch_subscribe_operation(audience_id, op_id, [p[3] for p in pending])
        phase1.add(line, op_id, UPSERT, [p[:3] for p in pending])
        pending.clear()

    def emit_tag(tag: str, kind: str) -> None:
        entries = by_tag.pop((tag, kind))
        op_id = phase2.next_id()
        field = "members_to_add" if kind == TAG_ADD else "members_to_remove"
        body = json.dumps({field: [email for _, email, _ in entries]}, ensure_ascii=False)
        line = _operation("POST", f"/lists/{audience_id}/segments/{tag_ids[tag]}", op_id, body)
        phase2.add(line, op_id, kind, entries, tag)

    for table in plan_parts:
        columns = [table[name].to_pylist() for name in PLAN_COLUMNS]
        for pid, email, mhash, old_hash, action, body, permissions, add, remove in zip(*columns, strict=True):
            if action == UPSERT:
                pending.append((pid, email, mhash, body))
                if len(pending) == MEMBERS_PER_OPERATION:
                    emit_upserts()
            elif action == EMAIL_CHANGE:
                op_id = phase1.next_id()
                line = _operation("PATCH", f"/lists/{audience_id}/members/{old_hash}", op_id, body)
                phase1.add(line, op_id, EMAIL_CHANGE, [(pid, email, mhash)])
            elif action == ARCHIVE:
                op_id = phase1.next_id()
                line = _operation("DELETE", f"/lists/{audience_id}/members/{mhash}", op_id)
                phase1.add(line, op_id, ARCHIVE, [(pid, email, mhash)])
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
    if pending:
        emit_upserts()
    for tag, kind in sorted(by_tag):
        emit_tag(tag, kind)
    phase1.flush()
    phase2.flush()
    return phase1.jobs, phase2.jobs
