"""Test DAG: one deferrable upload, so dag.test() runs the trigger the way the triggerer would."""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import DAG
from mailchimp_provider.operators.batch import MailchimpBatchOperator

with DAG(
    "test_deferred_upload",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    params={"operations": "", "results": ""},
) as dag:
    MailchimpBatchOperator(
        task_id="upload",
        operations_path="{{ params.operations }}",
        results_path="{{ params.results }}",
        poll_interval=0.2,
        deferrable=True,
    )
