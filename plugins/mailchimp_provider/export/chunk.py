"""Chunk members into Mailchimp batch jobs of batch-subscribe operations (500 members each)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pyarrow as pa

from mailchimp_provider.export.prepare import with_tags

MEMBERS_PER_OPERATION = 500  # Mailchimp's cap for POST /lists/{list_id}

INDEX_SCHEMA = pa.schema(
    [
        ("operation_id", pa.string()),
        ("profile_id", pa.string()),
        ("email", pa.string()),
        ("subscriber_hash", pa.string()),
    ]
)


def operation_id(job: int, operation: int) -> str:
    return f"{job:05d}-{operation:05d}"


def batch_subscribe_operation(audience_id: str, op_id: str, member_jsons: list[str]) -> str:
    """One batch operation as a JSON line; member JSON is spliced in, not parsed again."""
    body = '{"members":[' + ",".join(member_jsons) + '],"update_existing":true}'
    return json.dumps(
        {"method": "POST", "path": f"/lists/{audience_id}", "operation_id": op_id, "body": body},
        ensure_ascii=False,
    )


@dataclass(frozen=True)
class JobWriter:
    """Where chunking puts a job's operations (JSON lines) and its operation-to-profile index."""

    write_operations: Callable[[int, str], None]
    write_index: Callable[[int, pa.Table], None]


def chunk_members(
    member_parts: Iterable[pa.Table], audience_id: str, job_size: int, writer: JobWriter
) -> list[int]:
    """Write jobs of at most ``job_size`` members (all given are sent, with their tags); returns the job
    numbers (empty when nothing to send)."""
    ops_per_job = max(1, job_size // MEMBERS_PER_OPERATION)
    jobs: list[int] = []
    lines: list[str] = []
    index_rows: dict[str, list] = {name: [] for name in INDEX_SCHEMA.names}
    pending: list[tuple[str, str, str, str]] = []

    def emit_operation() -> None:
        op_id = operation_id(len(jobs), len(lines))
        lines.append(batch_subscribe_operation(audience_id, op_id, [m[3] for m in pending]))
        for profile_id, email, member_hash, _ in pending:
            index_rows["operation_id"].append(op_id)
            index_rows["profile_id"].append(profile_id)
            index_rows["email"].append(email)
            index_rows["subscriber_hash"].append(member_hash)
        pending.clear()
        if len(lines) == ops_per_job:
            emit_job()

    def emit_job() -> None:
        job = len(jobs)
        writer.write_operations(job, "\n".join(lines) + "\n")
        writer.write_index(job, pa.Table.from_pydict(index_rows, schema=INDEX_SCHEMA))
        jobs.append(job)
        lines.clear()
        for column in index_rows.values():
            column.clear()

    for table in member_parts:
        columns = [
            table[name].to_pylist()
            for name in ("profile_id", "email", "subscriber_hash", "data_json", "tags")
        ]
        for profile_id, email, member_hash, data_json, tags in zip(*columns, strict=True):
            pending.append((profile_id, email, member_hash, with_tags(data_json, tags)))
            if len(pending) == MEMBERS_PER_OPERATION:
                emit_operation()
    if pending:
        emit_operation()
    if lines:
        emit_job()
    return jobs
