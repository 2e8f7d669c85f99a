"""The Airflow asset an export updates: one per Mailchimp audience, ``mailchimp://<audience_id>``.

Downstream DAGs schedule on it (``schedule=[audience_asset("abc123")]``, or ``Asset("mailchimp://abc123")``)
and read the run's counts from the triggering event's ``extra``. The scheme needs no registration:
Airflow 3 accepts any scheme but ``airflow``, and a provider only registers one to normalise or check URIs.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset

from mailchimp_provider.export.summary import RunSummary

SCHEME = "mailchimp"


def audience_asset(audience_id: str) -> Asset:
    return Asset(f"{SCHEME}://{audience_id}")


def event_extra(
    export: str, dag_id: str, run_id: str, audience_id: str, summary: RunSummary
) -> dict[str, Any]:
    """What a downstream DAG learns from the event: who ran, what was read and what happened, no people."""
    return {
        "export": export,
        "dag_id": dag_id,
        "run_id": run_id,
        "audience_id": audience_id,
        "dry_run": summary.dry_run,
        **summary.read,
        **summary.counts,
        **{k: v for k, v in summary.breakdowns.items() if k in ("rejected_locally", "failed_at_mailchimp")},
    }
