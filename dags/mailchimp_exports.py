"""One Airflow DAG per Mailchimp export definition (include/exports/*.yaml, or $MAILCHIMP_EXPORTS_DIR).

Parsing only reads the small YAML files: no network, no database. A broken definition shows up as an
import error naming the file and the field, and the other exports' DAGs still load.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from airflow.sdk import (
    DAG,
    Asset,
    AssetAny,
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    Param,
    TriggerRule,
    get_current_context,
    task,
)
from airflow.sdk.exceptions import AirflowFailException
from mailchimp_provider import notify
from mailchimp_provider.assets import audience_asset
from mailchimp_provider.export import cleanup, steps
from mailchimp_provider.export.definition import DefinitionError, ExportDefinition, exports_dir, load_all
from mailchimp_provider.operators.batch import MailchimpBatchOperator

MAILCHIMP_POOL = "mailchimp_api"
DEFAULT_EXPORTS_DIR = Path(__file__).resolve().parent.parent / "include" / "exports"


def _schedule(definition: ExportDefinition):
    cron, assets = definition.schedule.cron, [Asset(name) for name in definition.schedule.after_assets]
    if cron and assets:
        return AssetOrTimeSchedule(
            timetable=CronTriggerTimetable(cron, timezone="UTC"), assets=AssetAny(*assets)
        )
    if cron:
        return CronTriggerTimetable(cron, timezone="UTC")
    return AssetAny(*assets) if assets else None


def _collect(uploads) -> list[dict]:
    """The mapped uploads' summaries; none when the upload was skipped (dry run, nothing to send)."""
    if uploads is None:
        return []
    return [uploads[i] for i in range(len(uploads))]  # indexing: iterating probes past the end


def build_export_dag(definition: ExportDefinition, source: Path) -> DAG:
    """check_audience -> extract -> validate_and_map (one mapped task per subscriber-hash partition) ->
    plan -> chunk -> upload_and_poll (phase 1: members, one mapped task per batch job) -> update_tags
    (phase 2: tag changes) -> reconcile."""
    segments = definition.segment_names
    with DAG(
        dag_id=definition.dag_id,
        description=definition.description or f"Export {', '.join(segments)} to Mailchimp",
        schedule=_schedule(definition),
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        # Whatever the deployment's default: a new export sends personal data to Mailchimp, so it runs only
        # once someone has reviewed it and unpaused it.
        is_paused_upon_creation=True,
        tags=["mailchimp", "export"],
        doc_md=f"Defined in `{source.name}`. Audience `{definition.mailchimp.audience_id}`, segments: "
        f"{', '.join(segments)}. Manual runs: `dry_run` plans without uploading; `segments` limits the "
        "run to some segments; `full_sync` re-sends profiles even if unchanged since the last run; "
        "`allow_removals` lets the run untag or archive more members than `max_removals` allows.",
        params={
            "dry_run": Param(
                False, type="boolean", description="Everything but the upload; the plan is in the report."
            ),
            "segments": Param(
                segments,
                type="array",
                items={"type": "string", "enum": segments},
                examples=segments,  # the Trigger form shows a multi-select of exactly these
                minItems=1,
                description="Export only these segments.",
            ),
            "full_sync": Param(
                False,
                type="boolean",
                description="Send every profile, also those unchanged since the last run.",
            ),
            "allow_removals": Param(
                False,
                type="boolean",
                description="Allow this run to untag or archive more members than max_removals allows.",
            ),
        },
        default_args={
            "retries": definition.retries,
            "retry_delay": timedelta(seconds=definition.retry_delay_s),
            "on_failure_callback": cleanup.task_callback(definition.export, "failed"),
            "on_success_callback": cleanup.task_callback(definition.export, "success"),
        },
        # staged personal data goes; the run's failure alert is sent, if the definition asks for one
        on_failure_callback=[
            callback
            for callback in (cleanup.dag_callback(definition.export), notify.run_failed_callback(definition))
            if callback is not None
        ],
    ) as dag:

        @task
        def check_audience(params=None, run_id=None) -> dict:
            """Consent and permission gates, then the audience's settings, merge fields, archived members
            and tags, and a sample of owned members read back."""
            return steps.check_audience(definition, run_id, dry_run=params["dry_run"])

        @task
        def extract(params=None, run_id=None) -> list[dict]:
            """The segments into staged parts; returns the partitions that prepare them (by size or
            the definition's count), which validate_and_map is mapped over."""
            chosen = [s for s in params["segments"] if s in segments]
            if not chosen:
                raise AirflowFailException(
                    f"the segments param must name some of {segments}, got {params['segments']}"
                )
            return steps.extract_segment(definition, run_id, chosen)

        @task(map_index_template="{{ partition_label }}")
        def validate_and_map(partition: int, partitions: int, params=None, run_id=None) -> dict:
            """One subscriber-hash partition of the profiles (one address never spans two)."""
            get_current_context()["partition_label"] = f"partition {partition + 1} of {partitions}"
            return steps.validate_and_map(
                definition,
                run_id,
                segments=[s for s in params["segments"] if s in segments],
                partition=partition,
                partitions=partitions,
            )

        @task
        def plan(prepared, params=None, run_id=None) -> dict:
            """The partitions added up (max_profiles over them all), planned against the export's state."""
            return steps.plan_run(
                definition,
                run_id,
                _collect(prepared),
                segments=[s for s in params["segments"] if s in segments],
                full_sync=params["full_sync"],
                allow_removals=params["allow_removals"],
                dry_run=params["dry_run"],
            )

        @task
        def chunk(params=None, run_id=None) -> list[dict]:
            return steps.chunk_jobs(definition, run_id, dry_run=params["dry_run"])

        @task
        def tag_jobs(params=None, run_id=None) -> list[dict]:
            """Phase 2's jobs, written by chunk (a mapped task can only map over a return value)."""
            return steps.tag_jobs(definition, run_id, dry_run=params["dry_run"])

        @task(trigger_rule=TriggerRule.NONE_FAILED)
        def reconcile(
            audience: dict,
            planned: dict,
            uploads: list[dict] | None,
            tag_uploads: list[dict] | None,
            params=None,
            run_id=None,
        ) -> dict:
            durations = {
                "check_audience": audience["seconds"],
                "validate_and_map": planned["prepare_seconds"],  # the slowest partition
                "plan": planned["seconds"],
            }
            return steps.reconcile_run(
                definition,
                run_id,
                params["dry_run"],
                _collect(uploads),
                durations,
                _collect(tag_uploads),
            )

        @task(outlets=[audience_asset(definition.mailchimp.audience_id)])
        def announce(run_id=None, dag_run=None, outlet_events=None) -> dict:
            """Alerts the run calls for, then the audience's asset event with the counts (not on dry runs)."""
            return notify.announce(definition, run_id, dag_run, outlet_events)

        audience = check_audience()
        extracted = extract()
        prepared = validate_and_map.expand_kwargs(extracted)
        planned = plan(prepared)
        jobs = chunk()
        batch_settings = {
            "mailchimp_conn_id": definition.mailchimp.conn_id,
            "pool": MAILCHIMP_POOL,
            "deferrable": True,  # a batch waits in the triggerer, not on a worker slot
            "poll_interval": definition.poll_interval_s,
            "timeout": definition.batch_timeout_s,
            "map_index_template": "{{ task.job_label }}",
        }
        uploads = MailchimpBatchOperator.partial(task_id="upload_and_poll", **batch_settings).expand_kwargs(
            jobs
        )
        phase2 = tag_jobs()
        # Phase 2 moves tags by address, so it starts once every phase 1 job (email changes) is done;
        # with no phase 1 jobs, upload_and_poll is skipped and phase 2 still runs.
        tag_updates = MailchimpBatchOperator.partial(
            task_id="update_tags", trigger_rule=TriggerRule.NONE_FAILED, **batch_settings
        ).expand_kwargs(phase2)
        audience >> extracted >> prepared
        planned >> jobs >> phase2
        uploads >> tag_updates
        reconcile(audience, planned, uploads.output, tag_updates.output) >> announce()
    return dag


class _InvalidDefinitions(DAG):
    """Stands in for broken definition files: its validation fails, so the UI lists an import error
    with every broken file and field, while the valid exports' DAGs load normally."""

    def validate(self) -> None:
        raise DefinitionError(self.doc_md)


def _build_all() -> None:
    errors = []
    for loaded in load_all(exports_dir(DEFAULT_EXPORTS_DIR)):
        if loaded.error is not None:
            errors.append(str(loaded.error))
            continue
        globals()[loaded.definition.dag_id] = build_export_dag(loaded.definition, loaded.path)
    if errors:
        globals()["_invalid"] = _InvalidDefinitions(
            dag_id="mailchimp_export__invalid_definitions",
            schedule=None,
            doc_md="Invalid Mailchimp export definition(s):\n" + "\n".join(errors),
        )


_build_all()
