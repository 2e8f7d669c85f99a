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
    task,
)
from airflow.sdk.exceptions import AirflowFailException
from mailchimp_provider import notify
from mailchimp_provider.assets import audience_asset
from mailchimp_provider.export import steps
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
    """extract -> validate and map -> chunk -> upload and poll (one mapped task per batch job) -> reconcile."""
    segments = list(definition.segments)
    with DAG(
        dag_id=definition.dag_id,
        description=definition.description or f"Export {', '.join(segments)} to Mailchimp",
        schedule=_schedule(definition),
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        tags=["mailchimp", "export"],
        doc_md=f"Defined in `{source.name}`. Audience `{definition.mailchimp.audience_id}`, segments: "
        f"{', '.join(segments)}. Manual runs: `dry_run` plans without uploading; `segments` limits the "
        "run to some segments; `full_sync` re-sends profiles even if unchanged since the last run.",
        params={
            "dry_run": Param(
                False, type="boolean", description="Everything but the upload; the plan is in the report."
            ),
            "segments": Param(
                segments,
                type="array",
                items={"type": "string", "enum": segments},
                minItems=1,
                description="Export only these segments.",
            ),
            "full_sync": Param(
                False,
                type="boolean",
                description="Send every profile, also those unchanged since the last run.",
            ),
        },
        default_args={
            "retries": definition.retries,
            "retry_delay": timedelta(seconds=definition.retry_delay_s),
        },
        on_failure_callback=notify.run_failed_callback(definition),
    ) as dag:

        @task
        def check_audience(run_id=None) -> dict:
            """Consent and permission gates, then the audience's settings, merge fields and archived members."""
            return steps.check_audience(definition, run_id)

        @task
        def extract(params=None, run_id=None) -> dict:
            chosen = [s for s in params["segments"] if s in segments]
            if not chosen:
                raise AirflowFailException(
                    f"the segments param must name some of {segments}, got {params['segments']}"
                )
            return steps.extract_segment(definition, run_id, chosen)

        @task
        def validate_and_map(params=None, run_id=None) -> dict:
            return steps.validate_and_map(definition, run_id, full_sync=params["full_sync"])

        @task
        def chunk(params=None, run_id=None) -> list[dict]:
            return steps.chunk_jobs(definition, run_id, dry_run=params["dry_run"])

        @task(trigger_rule=TriggerRule.NONE_FAILED)
        def reconcile(
            audience: dict,
            extracted: dict,
            prepared: dict,
            uploads: list[dict] | None,
            params=None,
            run_id=None,
        ) -> dict:
            durations = {
                "check_audience": audience["seconds"],
                "extract": extracted["seconds"],
                "validate_and_map": prepared["seconds"],
            }
            return steps.reconcile_run(definition, run_id, params["dry_run"], _collect(uploads), durations)

        @task(outlets=[audience_asset(definition.mailchimp.audience_id)])
        def announce(run_id=None, dag_run=None, outlet_events=None) -> dict:
            """Alerts the run calls for, then the audience's asset event with the counts (not on dry runs)."""
            return notify.announce(definition, run_id, dag_run, outlet_events)

        audience = check_audience()
        extracted = extract()
        prepared = validate_and_map()
        jobs = chunk()
        uploads = MailchimpBatchOperator.partial(
            task_id="upload_and_poll",
            mailchimp_conn_id=definition.mailchimp.conn_id,
            pool=MAILCHIMP_POOL,
            poll_interval=definition.poll_interval_s,
            timeout=definition.batch_timeout_s,
            map_index_template="{{ task.job_label }}",
        ).expand_kwargs(jobs)
        audience >> extracted >> prepared >> jobs
        reconcile(audience, extracted, prepared, uploads.output) >> announce()
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
