"""Helpers of the mirror tests: a small warehouse table the tests edit, what the audience holds, and an
export run driven step by step (the DAG's steps in order, batches run through the hook as the operator
does) for tests that interleave runs or act between steps."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow.sdk import ObjectStoragePath
from mailchimp_provider.export import steps
from mailchimp_provider.export.definition import ExportDefinition
from mailchimp_provider.export.staging import read_text, write_parquet
from mailchimp_provider.export.validate import subscriber_hash
from mailchimp_provider.hooks.mailchimp import MailchimpHook
from mailchimp_provider.triggers.batch import batch_summary
from support import write_definition

TABLE = "mirror_profiles"
COLUMNS = "customer_id TEXT, segment TEXT, email TEXT, first_name TEXT"


class Warehouse:
    """One table of (customer_id, segment, email, first_name) rows, on SQLite or PostgreSQL."""

    def __init__(self, connect: Any, placeholder: str) -> None:
        self.connect, self.mark = connect, placeholder

    def _run(self, sql: str, rows: list[tuple] | None = None) -> None:
        conn = self.connect()
        try:
            cursor = conn.cursor()
            if rows is None:
                cursor.execute(sql)
            else:
                cursor.executemany(sql, rows)
            conn.commit()
        finally:
            conn.close()

    def create(self, rows: list[tuple]) -> None:
        self._run(f"CREATE TABLE {TABLE} ({COLUMNS})")
        self.replace(rows)

    def replace(self, rows: list[tuple]) -> None:
        self._run(f"DELETE FROM {TABLE}")
        if rows:
            marks = ", ".join([self.mark] * 4)
            self._run(f"INSERT INTO {TABLE} VALUES ({marks})", rows)


def sqlite_warehouse(path: Path, monkeypatch: Any) -> Warehouse:
    monkeypatch.setenv("AIRFLOW_CONN_DEMO_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return Warehouse(lambda: sqlite3.connect(path), "?")


def postgres_warehouse(target: str) -> Warehouse:
    import psycopg2

    return Warehouse(lambda: psycopg2.connect(target), "%s")


def mirror_definition(monkeypatch: Any, folder: Path, **changes: Any) -> ExportDefinition:
    settings = {
        "export": "mirror",
        "warehouse": {"conn_id": "demo_warehouse", "table": TABLE, "segment_column": "segment"},
        "segments": ["alpha", "beta"],
        "columns": {"id": "customer_id", "email": "email", "first_name": "first_name"},
        "merge_fields": {},
        "max_removals": {"share": 1.0},
        "schedule": {},
        "retries": 0,
        "poll_interval_s": 0.2,
        **changes,
    }
    return write_definition(monkeypatch, folder, **settings)


@dataclass(frozen=True)
class Member:
    status: str
    tags: frozenset[str]
    first_name: str | None


def audience(server: Any, list_id: str = "demo0audience") -> dict[str, Member]:
    """Every member (archived included) by lower-cased address."""
    return {
        m["email_address"].lower(): Member(
            m["status"],
            frozenset(t["name"] if isinstance(t, dict) else t for t in m.get("tags") or []),
            (m.get("merge_fields") or {}).get("FNAME"),
        )
        for m in server.members(list_id)
    }


def expected_tags(rows: list[tuple], tags: dict[str, str] | None = None) -> dict[str, frozenset[str]]:
    """What the segments say: each address with the tags of its segments (one profile per address)."""
    out: dict[str, set[str]] = {}
    for _, segment, email, _ in rows:
        out.setdefault(email.lower(), set()).add((tags or {}).get(segment, segment))
    return {email: frozenset(t) for email, t in out.items()}


def tag_by_hand(list_id: str, email: str, tag: str, active: bool = True) -> None:
    MailchimpHook().call(
        "POST",
        f"lists/{list_id}/members/{subscriber_hash(email)}/tags",
        body={"tags": [{"name": tag, "status": "active" if active else "inactive"}]},
    )


def add_by_hand(list_id: str, email: str, status: str = "subscribed") -> None:
    MailchimpHook().call(
        "PUT",
        f"lists/{list_id}/members/{subscriber_hash(email)}",
        body={"email_address": email, "status_if_new": status},
    )


def run_batch(job: dict, deadline_s: float = 120) -> dict:
    """One job as the operator runs it: submit, wait, stage the results."""
    hook = MailchimpHook()
    batch_id = hook.submit_batch(read_text(ObjectStoragePath(job["operations_path"])))["id"]
    deadline = time.monotonic() + deadline_s
    while (batch := hook.get_batch(batch_id))["status"] != "finished":
        assert time.monotonic() < deadline, f"batch {batch_id} did not finish"
        time.sleep(0.1)
    write_parquet(ObjectStoragePath(job["results_path"]), hook.fetch_batch_results(batch_id))
    return batch_summary(batch)


class StepRun:
    """One export run, step by step; ``report()`` runs whatever steps are left."""

    def __init__(self, definition: ExportDefinition, run_id: str, **params: Any) -> None:
        self.d, self.run_id = definition, run_id
        self.dry_run = params.pop("dry_run", False)
        self.params = params
        self.done: list[str] = []

    def check(self) -> StepRun:
        steps.check_audience(self.d, self.run_id, dry_run=self.dry_run)
        self.done.append("check")
        return self

    def extract(self) -> StepRun:
        segments = self.params.get("segments") or self.d.segment_names
        self.partitions = steps.extract_segment(self.d, self.run_id, segments)
        self.done.append("extract")
        return self

    def plan(self) -> StepRun:
        segments = self.params.get("segments")
        prepared = [steps.validate_and_map(self.d, self.run_id, segments, **p) for p in self.partitions]
        steps.plan_run(self.d, self.run_id, prepared, dry_run=self.dry_run, **self.params)
        self.jobs = steps.chunk_jobs(self.d, self.run_id, self.dry_run)
        self.tag_jobs = steps.tag_jobs(self.d, self.run_id, self.dry_run)
        self.done.append("plan")
        return self

    def upload(self) -> StepRun:
        self.uploads = [run_batch(job) for job in self.jobs]
        self.done.append("upload")
        return self

    def tags(self) -> StepRun:
        self.tag_uploads = [run_batch(job) for job in self.tag_jobs]
        self.done.append("tags")
        return self

    def report(self) -> dict:
        for name in ("check", "extract", "plan", "upload", "tags"):
            if name not in self.done:
                getattr(self, name)()
        result = steps.reconcile_run(self.d, self.run_id, self.dry_run, self.uploads, {}, self.tag_uploads)
        return json.loads(read_text(ObjectStoragePath(result["report"])))
