"""Reconcile a first export of PROFILES new members, every one answered created, and print its memory.

Stages the run as plan_run and chunk_jobs leave it (plan parts of PART_ROWS profiles, phase 1 jobs with
their answers), then measures what the reconcile task does with it: settle every profile into the report,
the rejects file and the staged state rows, then commit the state. It prints the most Arrow held at once
(its allocations counted) and the most Python and numpy held at once (tracemalloc). Used by
test_memory_bound.py in a fresh subprocess; the process ends without tearing down, as arrays allocated
through the counting pool outlive it. Usage: reconcile_memory_probe.py STAGING_DIR PROFILES
"""

from __future__ import annotations

import json
import os
import sys
import tracemalloc
from pathlib import Path

import pyarrow as pa
from mailchimp_provider.export import pipeline, staging
from mailchimp_provider.export.definition import ExportDefinition
from mailchimp_provider.export.prepare import MEMBER_SCHEMA, fingerprint, member_json
from mailchimp_provider.export.reconcile import RunReport
from mailchimp_provider.export.staging import RunPaths
from mailchimp_provider.export.state import ExportState, StateStore
from mailchimp_provider.export.validate import subscriber_hash

PART_ROWS = 10_000
JOB_SIZE = 10_000


def stage(paths: RunPaths, definition: ExportDefinition, profiles: int) -> None:
    """Prepared members, the plan, the jobs and Mailchimp's answers of a first export."""
    parts = []
    for part, start in enumerate(range(0, profiles, PART_ROWS)):
        emails = [f"member{i}@example.com" for i in range(start, min(start + PART_ROWS, profiles))]
        data = [member_json(email, "subscribed", {"FNAME": "Ann"}) for email in emails]
        table = pa.table(
            {
                "profile_id": [f"P{start + i:09d}" for i in range(len(emails))],
                "email": emails,
                "subscriber_hash": [subscriber_hash(email) for email in emails],
                "fingerprint": [fingerprint(d) for d in data],
                "data_json": data,
                "tags": [["a"]] * len(emails),
                "segments": [["a"]] * len(emails),
            },
            schema=MEMBER_SCHEMA,
        )
        parts.append(paths.part(paths.members_dir, part))
        staging.write_parquet(parts[-1], table)
    pipeline.plan_in_staging(paths, definition, ExportState(), ["a"], member_parts=parts, reject_parts=[])
    jobs, _ = pipeline.chunk_in_staging(paths, definition, {"a": 1})
    for job in jobs:
        index = staging.read_parquet(paths.job_index(job), ["operation_id", "email"])
        by_operation: dict[str, list[str]] = {}
        for op, email in zip(index["operation_id"].to_pylist(), index["email"].to_pylist(), strict=True):
            by_operation.setdefault(op, []).append(email)
        answers = [
            json.dumps({"new_members": [{"email_address": e} for e in emails]})
            for emails in by_operation.values()
        ]
        results = {
            "operation_id": list(by_operation),
            "status_code": [200] * len(answers),
            "response": answers,
        }
        staging.write_parquet(paths.job_outcomes(job), pa.table(results))


def main() -> None:
    folder, profiles = Path(sys.argv[1]), int(sys.argv[2])
    definition = ExportDefinition.model_validate(
        {
            "export": "probe",
            "mailchimp": {"conn_id": "m", "audience_id": "aud"},
            "warehouse": {"conn_id": "w", "table": "profiles"},
            "segments": ["a"],
            "columns": {"id": "id", "email": "email"},
            "job_size": JOB_SIZE,
            "max_profiles": profiles,
        }
    )
    staging.ROW_GROUP_ROWS = PART_ROWS  # streamed files hold back a part's rows, as a plan part
    paths = RunPaths(folder / "run")
    stage(paths, definition, profiles)
    counted = pa.proxy_memory_pool(pa.default_memory_pool())
    pa.set_memory_pool(counted)
    tracemalloc.start()
    report = RunReport(export="probe", run_id="r", audience_id="aud", dry_run=False)
    pipeline.settle_to_staging(paths, report, lambda member_hash: None)
    StateStore(folder / "state").commit(
        0,
        pipeline.touched_ids(paths),
        staging.read_parquet_groups(paths.settled_state),
        {"a": profiles},
        {"a": "a"},
        "r",
    )
    result = {
        "arrow_bytes": counted.max_memory(),
        "python_bytes": tracemalloc.get_traced_memory()[1],
        "created": report.created,
        "owned": StateStore(folder / "state").load().owned,
    }
    print(json.dumps(result), flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
