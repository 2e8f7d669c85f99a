"""The stages of one export run, as called by the DAG's tasks: Airflow connections and staging in,
small JSON-able summaries out. The work itself is in the plain-Python modules beside this one."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
from airflow.sdk import Connection, ObjectStoragePath
from airflow.sdk.exceptions import AirflowFailException

from mailchimp_provider.export import cleanup, member_fields, pipeline, staging, transform
from mailchimp_provider.export.definition import ExportDefinition
from mailchimp_provider.export.extract import (
    TooManyProfiles,
    WarehouseError,
    identifier_quote,
)
from mailchimp_provider.export.mapping import Audience, MappingError, MergeField, plan_fields
from mailchimp_provider.export.plan import IN_TRANSIT, UNCHANGED, check_removals
from mailchimp_provider.export.prepare import PrepareResult
from mailchimp_provider.export.reconcile import RunReport
from mailchimp_provider.export.staging import RunPaths
from mailchimp_provider.export.state import ExportState, StateError, StateStore
from mailchimp_provider.hooks.errors import MailchimpApiError, MailchimpConfigError
from mailchimp_provider.hooks.mailchimp import MailchimpHook

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
PREPARE_SUMMARY = "prepare.json"
LOST_SAMPLE = 20  # owned members read back per run to notice members Mailchimp no longer has


_USER_MISTAKES = (MailchimpConfigError, MappingError, TooManyProfiles, StateError, transform.TransformError)


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
def check_audience(definition: ExportDefinition, run_id: str, dry_run: bool = False) -> dict:
    """Gate and snapshot: consent and permission first, then the audience's settings and archived members."""
    started = time.monotonic()
    cleanup.purge_expired_runs(definition.export)  # on every run, not only after successful ones
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
    extras = member_fields.resolve(definition, hook, raw) if member_fields.is_used(definition) else None
    if definition.transform:
        transform.load_function(definition.transform)  # fail now on a missing module or function
    archived = list(hook.iter_member_hashes(list_id, "archived"))
    # an unreadable state stops the run here, before any work
    _, sample = state_store(definition).sample_hashes(LOST_SAMPLE, random.Random())
    tag_ids = _tag_ids(hook, definition, create=not dry_run)
    lost = _lost_members(hook, list_id, sample)
    full_sync_reason = None
    if lost:
        full_sync_reason = (
            f"{len(lost)} of {len(sample)} sampled members the export owns are missing from "
            "the audience (deleted in Mailchimp, or Mailchimp lost them): every profile is sent again"
        )
        log.warning("Full sync: %s", full_sync_reason)
    paths = run_paths(definition, run_id)
    staging.make_dir(paths.root)
    if extras:
        member_fields.save_plan(paths.root, extras)
    staging.write_text(paths.audience, audience.to_json())
    staging.write_parquet(paths.archived, pa.table({"subscriber_hash": pa.array(archived, pa.string())}))
    staging.write_text(
        paths.audience_check,
        json.dumps({"tag_ids": tag_ids, "full_sync_reason": full_sync_reason, "lost_members": lost}),
    )
    return {
        "audience": audience.name,
        "double_optin": audience.double_optin,
        "archived_members": len(archived),
        "seconds": _timed(started),
    }


def state_store(definition: ExportDefinition) -> StateStore:
    return StateStore(
        staging.export_state_dir(staging.base_path(), definition.export, definition.mailchimp.audience_id)
    )


def _tag_ids(hook: MailchimpHook, definition: ExportDefinition, create: bool) -> dict[str, int]:
    """Every tag of the audience by name, with the export's own tags created when missing."""
    list_id = definition.mailchimp.audience_id
    ids = {str(s["name"]): int(s["id"]) for s in hook.iter_static_segments(list_id)}
    if definition.mailchimp.tag_segments and create:
        for tag in definition.segment_tags().values():
            if tag not in ids:
                ids[tag] = int(hook.create_static_segment(list_id, tag)["id"])
                log.info("Created tag %r in audience %s", tag, list_id)
    return ids


def _lost_members(hook: MailchimpHook, list_id: str, sample: list[str]) -> list[str]:
    """The hashes of the sampled owned members that the audience no longer has (404). Archived members
    are still there (and are never restored); members deleted for good or lost are not."""
    return [member_hash for member_hash in sample if hook.get_member(list_id, member_hash) is None]


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
def extract_segment(definition: ExportDefinition, run_id: str, segments: list[str]) -> list[dict]:
    """Extract the segments into staged parts; return one validate_and_map task's arguments per
    subscriber-hash partition, their count set by the definition or by the rows read."""
    started = time.monotonic()
    connection, cursor, hook = _cursor(definition.warehouse.conn_id)
    try:
        quote = identifier_quote(getattr(hook, "conn_type", ""))
        paths = run_paths(definition, run_id)
        result = pipeline.extract_to_staging(paths, definition, segments, cursor, hook.placeholder, quote)
    finally:
        connection.close()
    partitions = definition.partitions_for(result.rows)
    log.info(
        "Extracted %s rows for segments %s in %s parts; %s partition(s) prepare them",
        result.rows,
        ", ".join(segments),
        result.parts,
        partitions,
    )
    summary = {**dataclasses.asdict(result), "partitions": partitions, "seconds": _timed(started)}
    staging.write_text(paths.extract_summary, json.dumps(summary))
    return [{"partition": k, "partitions": partitions} for k in range(partitions)]


def _warnings(segments: list[str], rows: dict[str, int], state: ExportState) -> list[str]:
    warnings = []
    for segment in segments:
        if rows.get(segment, 0) == 0:
            before = state.segments.get(segment, 0)
            warnings.append(
                f"segment {segment!r} returned no rows"
                + (f" (the last successful run found {before:,})" if before else "")
            )
    return warnings


@fail_fast_on_user_mistakes
def validate_and_map(
    definition: ExportDefinition,
    run_id: str,
    segments: list[str] | None = None,
    partition: int = 0,
    partitions: int = 1,
) -> dict:
    """Validate and map one subscriber-hash partition of the extracted rows (all of them when the export
    is not partitioned). Returns the counts and the parts it wrote, for :func:`plan_run` to add up."""
    started = time.monotonic()
    segments = segments or definition.segment_names
    paths = run_paths(definition, run_id)
    audience = Audience.from_json(staging.read_text(paths.audience))
    archived = frozenset(staging.read_parquet(paths.archived)["subscriber_hash"].to_pylist())
    extras = None
    if member_fields.is_used(definition):
        extras = member_fields.read_plan(paths.root).for_segments(segments)
    result = pipeline.prepare_in_staging(
        paths, definition, audience, archived, extras, partition=partition, partitions=partitions
    )
    log.info(
        "Partition %s of %s: %s profiles, %s accepted, rejected %s",
        partition + 1,
        partitions,
        result.profiles_read,
        result.accepted,
        result.rejected or "none",
    )
    return {
        "partition": partition,
        **dataclasses.asdict(result),
        "members": [str(p) for p in paths.prepared_parts(paths.members_dir, partition)],
        "rejects": [str(p) for p in paths.prepared_parts(paths.rejects_dir, partition)],
        "seconds": _timed(started),
    }


def _prepared(partition: dict) -> PrepareResult:
    return PrepareResult(**{f.name: partition[f.name] for f in dataclasses.fields(PrepareResult)})


@fail_fast_on_user_mistakes
def plan_run(
    definition: ExportDefinition,
    run_id: str,
    prepared: list[dict],
    segments: list[str] | None = None,
    full_sync: bool = False,
    allow_removals: bool = False,
    dry_run: bool = False,
) -> dict:
    """Add up the partitions ``prepared`` (what :func:`validate_and_map` returned for each), enforce
    max_profiles over all of them, then plan against the export's state; the removal guard stops the run
    here, before anything is sent."""
    started = time.monotonic()
    segments = segments or definition.segment_names
    paths = run_paths(definition, run_id)
    result = pipeline.merge_prepared([_prepared(p) for p in prepared])
    pipeline.check_profile_limit(definition, result.accepted)
    audience = Audience.from_json(staging.read_text(paths.audience))
    checked = json.loads(staging.read_text(paths.audience_check))
    state = state_store(definition).load()
    if checked["lost_members"]:  # no longer in the audience: no longer owned, sent as new if still exported
        lost = pa.array(checked["lost_members"], pa.string())
        state.members = state.members.filter(
            pc.invert(pc.is_in(state.members["subscriber_hash"], value_set=lost))
        )
    full_sync_reason = checked["full_sync_reason"] or ("full_sync param" if full_sync else None)
    plan = pipeline.plan_in_staging(
        paths,
        definition,
        state,
        segments,
        full_sync_reason is not None,
        member_parts=[ObjectStoragePath(p) for part in prepared for p in part["members"]],
        reject_parts=[ObjectStoragePath(p) for part in prepared for p in part["rejects"]],
    )
    rows = pipeline.segment_rows(paths, definition)
    for segment, counts in plan.segments.items():
        counts["rows"] = rows.get(segment, 0)
    warnings = _warnings(segments, rows, state)
    for warning in warnings:
        log.warning("%s", warning)
    limits = definition.max_removals
    blocked = check_removals(plan, limits.share, limits.count)
    guard = {
        "removals": plan.removals,
        "owned": plan.owned,
        "max_share": limits.share,
        "max_count": limits.count,
        "allowed_by_param": allow_removals,
        "blocked": bool(blocked and not allow_removals and not dry_run),
    }
    summary = {
        "rows_read": result.rows_read,
        "profiles_read": result.profiles_read,
        "to_send": plan.to_send,
        "unchanged": plan.outcomes.get(UNCHANGED, 0),
        "rejected": result.rejected,
        "dropped_values": result.dropped_values,
        "status_if_new": pipeline.status_for_new_members(definition, audience),
        "segments": segments,
        "segment_rows": rows,
        "plan": plan.to_dict(),
        "warnings": warnings + ([f"removal guard: {blocked}"] if blocked else []),
        "removal_guard": guard,
        "full_sync_reason": full_sync_reason,
        "prepare_seconds": max((p["seconds"] for p in prepared), default=0.0),
        "seconds": _timed(started),
    }
    staging.write_text(paths.root / PREPARE_SUMMARY, json.dumps(summary))
    log.info(
        "Validated %s profiles (rejected %s); plan: %s; %s owned members left",
        result.profiles_read,
        result.rejected or "none",
        plan.planned,
        plan.leavers,
    )
    if guard["blocked"]:
        durations = {"validate_and_map": summary["prepare_seconds"], "plan": summary["seconds"]}
        report = _report(definition, run_id, dry_run, summary, [], durations)
        report.plan = plan.planned
        _write_report(paths, report)
        log.error("Export stopped: %s", blocked)
        raise AirflowFailException(f"Export '{definition.export}' stopped: {blocked}")
    return {
        k: summary[k]
        for k in ("profiles_read", "to_send", "unchanged", "rejected", "prepare_seconds", "seconds")
    }


def chunk_jobs(definition: ExportDefinition, run_id: str, dry_run: bool) -> list[dict]:
    """Write the batch jobs of both phases; return one phase 1 upload task's arguments per job (none on
    a dry run). Phase 2's come from :func:`tag_jobs`."""
    paths = run_paths(definition, run_id)
    checked = json.loads(staging.read_text(paths.audience_check))
    members, tags = pipeline.chunk_in_staging(paths, definition, checked["tag_ids"])
    log.info(
        "Chunked into %s member job(s) and %s tag job(s) of at most %s members%s",
        len(members),
        len(tags),
        definition.job_size,
        " (dry run: none will be uploaded)" if dry_run else "",
    )
    if dry_run:
        return []
    return [
        _upload_args(
            paths.job_operations(j), paths.job_outcomes(j), paths.job_index(j), j, len(members), "members"
        )
        for j in members
    ]


def tag_jobs(definition: ExportDefinition, run_id: str, dry_run: bool) -> list[dict]:
    """One phase 2 (tags) upload task's arguments per job chunk wrote (none on a dry run)."""
    if dry_run:
        return []
    paths = run_paths(definition, run_id)
    jobs = [p for p in staging.sorted_files(paths.jobs_dir, ".jsonl") if p.name.startswith("tags-")]
    return [
        _upload_args(
            paths.tag_job_operations(j),
            paths.tag_job_outcomes(j),
            paths.tag_job_index(j),
            j,
            len(jobs),
            "changes",
        )
        for j in range(len(jobs))
    ]


def _upload_args(operations: Any, results: Any, index: Any, job: int, jobs: int, what: str) -> dict:
    """One upload task's arguments; ``job_label`` names the mapped task in the UI."""
    rows = staging.read_parquet(index, ["operation_id"]).num_rows
    return {
        "operations_path": str(operations),
        "results_path": str(results),
        "job_label": f"job {job + 1} of {jobs}, {rows:,} {what}",
    }


def _report(
    definition: ExportDefinition,
    run_id: str,
    dry_run: bool,
    prepared: dict,
    uploads: list[dict],
    durations: dict,
) -> RunReport:
    plan = prepared["plan"]
    return RunReport(
        export=definition.export,
        run_id=run_id,
        audience_id=definition.mailchimp.audience_id,
        dry_run=dry_run,
        rows_read=prepared["rows_read"],
        profiles_read=prepared["profiles_read"],
        rejected_locally=dict(prepared["rejected"]),
        dropped_values=prepared["dropped_values"],
        leavers=plan["leavers"],
        segments=plan["segments"],
        warnings=prepared["warnings"],
        removal_guard=prepared["removal_guard"],
        full_sync_reason=prepared["full_sync_reason"],
        batches=uploads,
        durations_s=durations,
    )


def _write_report(paths: RunPaths, report: RunReport) -> None:
    staging.write_text(paths.report, report.to_json())
    staging.write_text(paths.report_summary, report.summary() + "\n")
    log.info("%s\nReport: %s", report.summary(), paths.report)


def reconcile_run(
    definition: ExportDefinition,
    run_id: str,
    dry_run: bool,
    uploads: list[dict],
    durations: dict[str, float],
    tag_uploads: list[dict] | None = None,
) -> dict:
    """Outcomes for every profile, the invariant check, the report, the export's new state, the clean-up.

    A run whose profiles failed at Mailchimp beyond max_failed_share, or whose outcomes stay unknown,
    fails here, after its report and state are written, so alerts fire and the next run knows."""
    started = time.monotonic()
    paths = run_paths(definition, run_id)
    batches = uploads + (tag_uploads or [])
    extracted = {"extract": json.loads(staging.read_text(paths.extract_summary))["seconds"]}
    first = {k: v for k, v in durations.items() if k == "check_audience"}
    durations = first | extracted | durations  # in the order the stages ran
    if batches:
        durations = {**durations, "mailchimp_batches": _batch_span(batches)}
    prepared = json.loads(staging.read_text(paths.root / PREPARE_SUMMARY))
    report = _report(definition, run_id, dry_run, prepared, batches, durations)
    plan = prepared["plan"]
    report.plan = plan["planned"]
    if dry_run:
        report.planned = plan["to_send"]
        for outcome, count in plan["outcomes"].items():
            if outcome == "failed":
                report.failed_at_mailchimp[IN_TRANSIT] = count
            else:
                setattr(report, outcome, getattr(report, outcome) + count)
    else:
        hook = MailchimpHook(definition.mailchimp.conn_id)
        list_id = definition.mailchimp.audience_id
        pipeline.settle_to_staging(paths, report, lambda member_hash: hook.get_member(list_id, member_hash))
        touched = pipeline.touched_ids(paths)
        segments = {s: prepared["segment_rows"].get(s, 0) for s in prepared["segments"]}
        generation, merged = state_store(definition).commit(
            plan["generation"],
            touched,
            staging.read_parquet_groups(paths.settled_state),
            segments,
            definition.segment_tags(),
            run_id,
        )
        report.state = {"generation": generation, "merged_with_concurrent_run": merged}
        if merged:
            report.warnings.append(
                "another run of this export committed while this one ran: the members both touched are "
                "sent again in full by the next run"
            )
    report.check()
    report.durations_s["reconcile"] = _timed(started)
    _write_report(paths, report)
    problem = _failure(definition, report, plan["to_send"])
    if problem:
        raise AirflowFailException(f"Export '{definition.export}': {problem}. Report: {paths.report}")
    paths.cleanup_personal_data()
    cleanup.purge_expired_runs(definition.export)
    return {
        "report": str(paths.report),
        "created": report.created,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "rejected": report.rejected_total,
        "failed": report.failed_total,
    }


def _failure(definition: ExportDefinition, report: RunReport, sent: int) -> str | None:
    if report.dry_run:
        return None
    if report.outcome_unknown:
        return (
            f"the outcome of {report.outcome_unknown:,} profile(s) is unknown (Mailchimp's results were "
            "incomplete and reading the members back did not settle them); they are sent again in full "
            "by the next run"
        )
    if sent and report.failed_total / sent > definition.max_failed_share:
        return (
            f"{report.failed_total:,} of {sent:,} profiles sent failed at Mailchimp, more than "
            f"max_failed_share={definition.max_failed_share:g}; the causes are in the report"
        )
    return None


def _batch_span(uploads: list[dict]) -> float:
    """Seconds from the first batch's submission to the last one's completion, by Mailchimp's clock."""
    starts = [dt.datetime.fromisoformat(u["submitted_at"]) for u in uploads if u.get("submitted_at")]
    ends = [dt.datetime.fromisoformat(u["completed_at"]) for u in uploads if u.get("completed_at")]
    return (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
