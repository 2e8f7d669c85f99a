"""Test DAG: an upload whose first try dies right after its batch id was stored, like a killed worker.

Lives in its own DAG bundle (see tests/conftest.py) because dag.test() runs DAGs from bundles.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG
from mailchimp_provider.operators.batch import MailchimpBatchOperator


class CrashAfterSubmit(MailchimpBatchOperator):
    def poll_until_complete(self, external_id, context):
        if context["ti"].try_number == 1:
            raise RuntimeError("simulated worker crash after submitting the batch")
        return super().poll_until_complete(external_id, context)


with DAG(
    "test_crash_after_submit",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    params={"operations": "", "results": ""},
) as dag:
    CrashAfterSubmit(
        task_id="upload",
        operations_path="{{ params.operations }}",
        results_path="{{ params.results }}",
        poll_interval=0.1,
        deferrable=False,
        retries=1,
        retry_delay=timedelta(seconds=0),
    )
