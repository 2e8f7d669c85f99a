"""Alerts through Airflow notifiers, and the audience's asset event, at the end of an export run.

Messages are composed here in Python and handed to the notifiers' ``notify`` directly, never through
their Jinja rendering: reasons quoted from Mailchimp or the warehouse must not be run as templates.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseNotifier
from airflow.sdk.exceptions import AirflowSkipException

from mailchimp_provider.assets import audience_asset, event_extra
from mailchimp_provider.export.alerts import (
    Alerts,
    EmailChannel,
    NotifierChannel,
    SlackChannel,
    blocked_removals,
)
from mailchimp_provider.export.definition import ExportDefinition
from mailchimp_provider.export.summary import RunSummary, read_summary
from mailchimp_provider.hooks.errors import mask_emails_in

log = logging.getLogger(__name__)


def _base_url() -> str:
    from airflow.configuration import conf

    return (conf.get("api", "base_url", fallback="") or "http://localhost:8080").rstrip("/")


def run_links(dag_id: str, run_id: str) -> list[str]:
    base, run = _base_url(), quote(run_id, safe="")
    return [
        f"Run report: {base}/mailchimp-exports/exports/{quote(dag_id)}/runs/{run}",
        f"DAG run: {base}/dags/{quote(dag_id)}/runs/{run}",
    ]


def counts_lines(summary: RunSummary | None) -> list[str]:
    """The run's numbers as text lines; reasons are codes or Mailchimp's (address-masked) causes."""
    if summary is None:
        return ["No report was written (the run stopped before reconcile)."]
    read = summary.read
    lines = [
        f"Read {read.get('profiles_read', 0):,} profiles ({read.get('rows_read', 0):,} rows)"
        + (", dry run: nothing was uploaded" if summary.dry_run else ""),
        ", ".join(
            f"{k.replace('_', ' ')} {v:,}"
            for k, v in summary.counts.items()
            if v or k in ("created", "updated")
        ),
    ]
    for key in ("rejected_locally", "failed_at_mailchimp"):
        for reason, count in sorted(summary.breakdowns.get(key, {}).items()):
            lines.append(f"  {key.replace('_', ' ')}: {mask_emails_in(str(reason))[:120]} {count:,}")
    return lines


def build_notifier(channel: Any, subject: str, text: str) -> BaseNotifier:
    if isinstance(channel, EmailChannel):
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        return SmtpNotifier(
            to=list(channel.to),
            from_email=channel.from_email,
            subject=subject,
            html_content=f"<pre>{html.escape(text)}</pre>",
            smtp_conn_id=channel.conn_id,
        )
    if isinstance(channel, SlackChannel):
        from airflow.providers.slack.notifications.slack import SlackNotifier

        return SlackNotifier(
            slack_conn_id=channel.conn_id, channel=channel.channel, text=f"{subject}\n{text}"
        )
    if isinstance(channel, NotifierChannel):
        from airflow.sdk.module_loading import import_string

        notifier_class = import_string(channel.class_)
        return notifier_class(**channel.kwargs, **{channel.message_arg: f"{subject}\n{text}"})
    raise TypeError(f"unknown alert channel {channel!r}")


def send(alerts: Alerts, subject: str, text: str) -> None:
    """Every channel is tried; the first failure is raised after the others have had their turn.

    Notifiers get an empty context: the message is complete, and a DAG callback's context holds a
    serialized DAG that notifiers cannot render templates with."""
    errors = []
    for channel in alerts.notify:
        try:
            build_notifier(channel, subject, text).notify({})
        except Exception as exc:  # one broken channel must not silence the others
            log.error("Alert through %s channel failed: %s", channel.type, exc)
            errors.append(exc)
    if errors:
        raise errors[0]


def run_failed_callback(definition: ExportDefinition):
    """The DAG's on_failure_callback when the definition asks to hear about failed runs or about
    removals the guard blocked (a blocked run fails before anything is sent, so only this hears of it)."""
    alerts = definition.alerts
    if alerts is None or not (alerts.run_failed or alerts.removals_blocked):
        return None

    def on_failure(context: Any) -> None:
        dag_run = context.get("dag_run")
        run_id = context.get("run_id") or getattr(dag_run, "run_id", "")
        summary = read_summary(definition.export, run_id)
        blocked = blocked_removals(summary) if summary is not None else 0
        if blocked and alerts.removals_blocked:
            subject = f"Mailchimp export {definition.export}: removals blocked"
            headline = (
                f"the removal guard held back {blocked:,} removals: check the segment's source, or run again "
                "with allow_removals if they are right"
            )
        elif alerts.run_failed:
            subject = f"Mailchimp export {definition.export}: run failed"
            headline = str(context.get("reason") or "a task failed")
            if task_id := getattr(context.get("ti"), "task_id", None):
                headline += f" (task {task_id})"
        else:
            return
        text = "\n".join(
            [
                f"Mailchimp export '{definition.export}' (audience {definition.mailchimp.audience_id}) "
                f"run {run_id} failed: {headline}.",
                *counts_lines(summary),
                *run_links(definition.dag_id, run_id),
            ]
        )
        send(alerts, subject, text)

    return on_failure


def announce(definition: ExportDefinition, run_id: str, dag_run: Any, outlet_events: Any) -> dict:
    """After reconcile: alerts whose conditions the run meets, then the audience's asset event.

    A dry run changes nothing in Mailchimp, so it emits no asset event (the task is skipped)."""
    summary = read_summary(definition.export, run_id)
    if summary is None:
        raise RuntimeError(f"no report for run {run_id}: reconcile did not write one")
    started = getattr(dag_run, "start_date", None)
    elapsed = (dt.datetime.now(dt.UTC) - started).total_seconds() if started else 0.0
    alerts = definition.alerts
    reasons = alerts.triggered(summary, elapsed) if alerts else []
    if reasons:
        text = "\n".join(
            [
                f"Mailchimp export '{definition.export}' (audience {definition.mailchimp.audience_id}) "
                f"run {run_id} needs a look:",
                *(f"- {reason}" for reason in reasons),
                *counts_lines(summary),
                *run_links(definition.dag_id, run_id),
            ]
        )
        send(alerts, f"Mailchimp export {definition.export}: {len(reasons)} alert(s)", text)
    if summary.dry_run:
        raise AirflowSkipException("dry run: the audience did not change, so no asset event")
    extra = event_extra(
        definition.export, definition.dag_id, run_id, definition.mailchimp.audience_id, summary
    )
    outlet_events[audience_asset(definition.mailchimp.audience_id)].extra = extra
    return {"alerts": len(reasons), "asset_extra": extra}
