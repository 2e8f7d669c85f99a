"""Test DAGs: an upload whose first try dies right after its batch id was stored, like a killed worker,
in worker mode and in deferrable mode. When ``$RECONNECT_FLAG`` names a file, the retry creates it the
moment it decides to reconnect to the running batch, so a test can keep the batch running until then.

Lives in its own DAG bundle (see tests/conftest.py) because dag.test() runs DAGs from bundles.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG
from mailchimp_provider.operators.batch import MailchimpBatchOperator


class CrashAfterSubmit(MailchimpBatchOperator):
    def poll_until_complete(self, external_id, context):
        if context["ti"].try_number == 1:
            raise RuntimeError("simulated worker crash after submitting the batch")
        return super().poll_until_complete(external_id, context)

    def is_job_active(self, status: str) -> bool:
        active = super().is_job_active(status)
        if active and os.environ.get("RECONNECT_FLAG"):
            Path(os.environ["RECONNECT_FLAG"]).write_text(status)
        return active


for dag_id, deferrable in (("test_crash_after_submit", False), ("test_crash_after_submit_deferred", True)):
    with DAG(
        dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        params={"operations": "", "results": ""},
    ) as dag:
        CrashAfterSubmit(
            task_id="upload",
            operations_path="{{ params.operations }}",
            results_path="{{ params.results }}",
            poll_interval=0.1,
            deferrable=deferrable,
            retries=1,
            retry_delay=timedelta(seconds=0),
        )
    globals()[dag_id] = dag
