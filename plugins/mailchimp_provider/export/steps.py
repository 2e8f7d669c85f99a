"""The stages of one export run, as called by the DAG's tasks: Airflow connections and staging in,
small JSON-able summaries out. The work itself is in the plain-Python modules beside this one."""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
from airflow.sdk import Connection
from airflow.sdk.exceptions import AirflowFailException

from mailchimp_provider.export import pipeline, staging
from mailchimp_provider.export.definition import ExportDefinition
from mailchimp_provider.export.extract import (
    TooManyProfiles,
    WarehouseError,
    identifier_quote,
)
from mailchimp_provider.export.mapping import Audience, MappingError, MergeField, plan_fields
from mailchimp_provider.export.reconcile import RunReport, job_outcomes
from mailchimp_provider.export.staging import RunPaths
from mailchimp_provider.hooks.errors import MailchimpApiError, MailchimpConfigError
from mailchimp_provider.hooks.mailchimp import MailchimpHook

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
STATE_FILE = "fingerprints.parquet"
PREPARE_SUMMARY = "prepare.json"
REJECTS_RETENTION_DAYS_ENV = "MAILCHIMP_EXPORT_RETENTION_DAYS"


_USER_MISTAKES = (MailchimpConfigError, MappingError, TooManyProfiles)


def fail_fast_on_user_mistakes(step: Callable[P, R]) -> Callable[P, R]:
    """Configuration mistakes (and Mailchimp refusing the key or the audience) do not fix themselves:
    fail without retries, with the plain message first."""

    @functools.wraps(step)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return step(*args, **kwargs)
        except Exception as exc:
            if isinstance(exc, _USER_MISTAKES) or (isinstance(exc, MailchimpApiError) and not exc.retryable):
                log.error("Export cannot run: %s", exc)
                raise AirflowFailException(str(exc)) from None
            raise

    return wrapper


def run_paths(definition: ExportDefinition, run_id: str) -> RunPaths:
    return RunPaths.for_run(staging.base_path(), definition.export, run_id)


def _timed(started: float) -> float:
    return round(time.monotonic() - started, 3)


@fail_fast_on_user_mistakes
def check_audience(definition: ExportDefinition, run_id: str) -> dict:
    """Gate and snapshot: consent and permission first, then the audience's settings and archived members."""
    started = time.monotonic()
    hook = MailchimpHook(definition.mailchimp.conn_id)
    hook.config.check_usable_for(definition.export, definition.dag_id)
    list_id = definition.mailchimp.audience_id
    raw = hook.get_audience(list_id)
    audience = Audience(
        id=list_id,
        name=str(raw.get("name", "")),
        double_optin=bool(raw.get("double_optin")),
        merge_fields=tuple(MergeField.from_api(f) for f in hook.get_merge_fields(list_id)),
    )
    plan_fields(audience, definition.merge_field_columns())  # fail now on unknown or unmapped fields
    archived = list(hook.iter_member_hashes(list_id, "archived"))
    paths = run_paths(definition, run_id)
    staging.make_dir(paths.root)
    staging.write_text(paths.audience, audience.to_json())
    staging.write_parquet(paths.archived, pa.table({"subscriber_hash": pa.array(archived, pa.string())}))
    return {
        "audience": audience.name,
        "double_optin": audience.double_optin,
        "archived_members": len(archived),
        "seconds": _timed(started),
    }


def _cursor(conn_id: str) -> tuple[Any, Any, Any]:
    """A streaming cursor: server-side on PostgreSQL, so the segment never sits in client memory."""
    try:
        hook = Connection.get(conn_id).get_hook()
        connection = hook.get_conn()
        server_side = getattr(hook, "conn_type", "") == "postgres"
        cursor = connection.cursor(name="mailchimp_export") if server_side else connection.cursor()
    except Exception as exc:
        raise WarehouseError(
            f"cannot connect to warehouse connection '{conn_id}': {type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'no message'}"
        ) from None
    return connection, cursor, hook


@fail_fast_on_user_mistakes
def extract_segment(definition: ExportDefinition, run_id: str, segments: list[str]) -> dict:
    started = time.monotonic()
    connection, cursor, hook = _cursor(definition.warehouse.conn_id)
    try:
        quote = identifier_quote(getattr(hook, "conn_type", ""))
        result = pipeline.extract_to_staging(
            run_paths(definition, run_id), definition, segments, cursor, hook.placeholder, quote
        )
    finally:
        connection.close()
    log.info("Extracted %s rows for segments %s in %s parts", result.rows, ", ".join(segments), result.parts)
    return {"rows": result.rows, "parts": result.parts, "seconds": _timed(started)}


def _previous_fingerprints(definition: ExportDefinition, full_sync: bool) -> frozenset[int]:
    if full_sync:
        return frozenset()
    state = staging.export_state_dir(staging.base_path(), definition.export, definition.mailchimp.audience_id)
    path = state / STATE_FILE
    if not path.exists():
        return frozenset()
    return frozenset(staging.read_parquet(path, ["fingerprint"])["fingerprint"].to_pylist())


@fail_fast_on_user_mistakes
def validate_and_map(definition: ExportDefinition, run_id: str, full_sync: bool = False) -> dict:
    started = time.monotonic()
    paths = run_paths(definition, run_id)
    audience = Audience.from_json(staging.read_text(paths.audience))
    archived = frozenset(staging.read_parquet(paths.archived)["subscriber_hash"].to_pylist())
    result = pipeline.prepare_in_staging(
        paths, definition, audience, archived, _previous_fingerprints(definition, full_sync)
    )
    summary = {
        "rows_read": result.rows_read,
        "profiles_read": result.profiles_read,
        "to_send": result.to_send,
        "unchanged": result.unchanged,
        "rejected": result.rejected,
        "dropped_values": result.dropped_values,
        "status_if_new": pipeline.status_for_new_members(definition, audience),
        "seconds": _timed(started),
    }
    staging.write_text(paths.root / PREPARE_SUMMARY, json.dumps(summary))
    log.info(
        "Validated %s profiles: %s to send, %s unchanged, rejected %s",
        result.profiles_read,
        result.to_send,
        result.unchanged,
        result.rejected or "none",
    )
    return summary


def chunk_jobs(definition: ExportDefinition, run_id: str, dry_run: bool) -> list[dict]:
    """Write the batch jobs and return one upload task's arguments per job (none on a dry run)."""
    paths = run_paths(definition, run_id)
    jobs = pipeline.chunk_in_staging(paths, definition)
    log.info(
        "Chunked into %s batch job(s) of at most %s members%s",
        len(jobs),
        definition.job_size,
        " (dry run: none will be uploaded)" if dry_run else "",
    )
    if dry_run:
        return []
    return [
        {
            "operations_path": str(paths.job_operations(job)),
            "results_path": str(paths.job_outcomes(job)),
            "job_label": f"job {job + 1} of {len(jobs)}, "
            f"{staging.read_parquet(paths.job_index(job), ['operation_id']).num_rows:,} members",
        }
        for job in jobs
    ]


def reconcile_run(
    definition: ExportDefinition, run_id: str, dry_run: bool, uploads: list[dict], durations: dict[str, float]
) -> dict:
    """Outcomes for every profile, the invariant check, the report, the next run's state, the clean-up."""
    started = time.monotonic()
    paths = run_paths(definition, run_id)
    if uploads:
        durations = {**durations, "mailchimp_batches": _batch_span(uploads)}
    prepared = json.loads(staging.read_text(paths.root / PREPARE_SUMMARY))
    report = RunReport(
        export=definition.export,
        run_id=run_id,
        audience_id=definition.mailchimp.audience_id,
        dry_run=dry_run,
        rows_read=prepared["rows_read"],
        profiles_read=prepared["profiles_read"],
        rejected_locally=prepared["rejected"],
        dropped_values=prepared["dropped_values"],
        unchanged=prepared["unchanged"],
        batches=uploads,
        durations_s=durations,
    )
    succeeded_hashes: list[pa.Array] = []
    failed_tables = []
    index_files = staging.sorted_files(paths.jobs_dir, ".index.parquet")
    if dry_run:
        report.planned = sum(staging.read_parquet(p, ["operation_id"]).num_rows for p in index_files)
    else:
        for job, index_path in enumerate(index_files):
            outcomes = job_outcomes(
                staging.read_parquet(index_path), staging.read_parquet(paths.job_outcomes(job))
            )
            report.add_outcomes(outcomes)
            ok = outcomes.filter(pc.not_equal(outcomes["outcome"], "failed"))
            succeeded_hashes.append(ok["subscriber_hash"].combine_chunks())
            failed_tables.append(outcomes.filter(pc.equal(outcomes["outcome"], "failed")))
    report.check()
    report.durations_s["reconcile"] = _timed(started)
    if failed_tables:
        staging.write_parquet(paths.root / "mailchimp_rejects.parquet", pa.concat_tables(failed_tables))
    if not dry_run:
        _save_state(
            definition,
            paths,
            pa.concat_arrays(succeeded_hashes) if succeeded_hashes else pa.array([], pa.string()),
        )
    staging.write_text(paths.report, report.to_json())
    staging.write_text(paths.report_summary, report.summary() + "\n")
    log.info("%s\nReport: %s", report.summary(), paths.report)
    paths.cleanup_personal_data()
    retention = float(os.environ.get(REJECTS_RETENTION_DAYS_ENV, "30"))
    staging.purge_old_runs(staging.base_path(), definition.export, retention)
    return {
        "report": str(paths.report),
        "created": report.created,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "rejected": report.rejected_total,
        "failed": report.failed_total,
    }


def _batch_span(uploads: list[dict]) -> float:
    """Seconds from the first batch's submission to the last one's completion, by Mailchimp's clock."""
    starts = [dt.datetime.fromisoformat(u["submitted_at"]) for u in uploads if u.get("submitted_at")]
    ends = [dt.datetime.fromisoformat(u["completed_at"]) for u in uploads if u.get("completed_at")]
    return (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0


def _save_state(definition: ExportDefinition, paths: RunPaths, succeeded: pa.Array) -> None:
    """Remember what the audience now holds: members sent successfully and those left unchanged."""
    kept = []
    for table in pipeline.read_parts(paths.members_dir):
        keep = pc.or_(pc.invert(table["send"]), pc.is_in(table["subscriber_hash"], value_set=succeeded))
        kept.append(table.select(["subscriber_hash", "fingerprint"]).filter(keep))
    state = staging.export_state_dir(staging.base_path(), definition.export, definition.mailchimp.audience_id)
    table = pa.concat_tables(kept) if kept else pa.table({"subscriber_hash": [], "fingerprint": []})
    staging.write_parquet(state / STATE_FILE, table)
