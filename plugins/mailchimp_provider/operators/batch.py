"""MailchimpBatchOperator: submit one Mailchimp batch job, wait for it, stage its per-operation results."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, ObjectStoragePath, ResumableJobMixin, conf

from mailchimp_provider.batches import BatchStatus
from mailchimp_provider.export.staging import read_text, write_parquet
from mailchimp_provider.hooks.errors import MailchimpApiError
from mailchimp_provider.hooks.mailchimp import MailchimpHook
from mailchimp_provider.triggers.batch import MailchimpBatchTrigger, batch_summary

GONE = "gone"


class MailchimpBatchTimeout(RuntimeError):
    """The batch did not finish in time; it is left running in Mailchimp."""


class MailchimpBatchOperator(ResumableJobMixin, BaseOperator):
    """Run the operations in a staged JSON-lines file as one Mailchimp batch job.

    The batch is built and submitted on the worker; waiting happens in the triggerer (deferrable, the
    default where ``[operators] default_deferrable`` is set) or on the worker. The batch id goes to the
    task state store before waiting, so a retry after a crash reconnects to the running batch instead of
    submitting it twice. The finished batch's results archive is parsed into a Parquet file of
    ``operation_id, status_code, response``; only a small summary goes to XCom.

    :param operations_path: staged JSON lines, one Mailchimp batch operation each.
    :param results_path: where the per-operation results are written.
    :param mailchimp_conn_id: connection of type ``mailchimp``.
    :param deferrable: wait in the triggerer instead of the worker.
    :param poll_interval: seconds between status checks.
    :param timeout: seconds from submission after which the task fails, naming the batch.
    :param job_label: what the batch carries, e.g. "job 3 of 20, 50,000 members" (a mapped task's name).
    """

    template_fields: Sequence[str] = ("operations_path", "results_path")
    ui_color = "#ffe01b"
    external_id_key = "mailchimp_batch_id"

    def __init__(
        self,
        *,
        operations_path: str,
        results_path: str,
        mailchimp_conn_id: str = MailchimpHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 10.0,
        timeout: float = 3 * 3600.0,
        job_label: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.job_label = job_label  # what this batch carries, for the mapped task's name in the UI
        self.operations_path = operations_path
        self.results_path = results_path
        self.mailchimp_conn_id = mailchimp_conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout

    @cached_property
    def hook(self) -> MailchimpHook:
        return MailchimpHook(self.mailchimp_conn_id)

    def execute(self, context: Any) -> dict:
        return self.execute_resumable(context)

    def submit_job(self, context: Any) -> str:
        operations = read_text(ObjectStoragePath(self.operations_path))
        batch = self.hook.submit_batch(operations)
        self.log.info(
            "Submitted Mailchimp batch %s with %s operations", batch["id"], batch.get("total_operations")
        )
        return batch["id"]

    def get_job_status(self, external_id: Any, context: Any) -> str:
        try:
            return self.hook.get_batch(str(external_id))["status"]
        except MailchimpApiError as exc:
            if exc.status == 404:  # deleted, or expired after 7 days: submit again
                return GONE
            raise

    def is_job_active(self, status: str) -> bool:
        return status in BatchStatus.__members__.values() and not BatchStatus(status).is_terminal()

    def is_job_succeeded(self, status: str) -> bool:
        return status == BatchStatus.FINISHED

    def _deadline(self, batch: dict) -> float:
        submitted = batch.get("submitted_at")
        try:
            start = dt.datetime.fromisoformat(submitted).timestamp() if submitted else time.time()
        except ValueError:
            start = time.time()
        return start + self.timeout

    def poll_until_complete(self, external_id: Any, context: Any) -> None:
        batch_id = str(external_id)
        batch = self.hook.get_batch(batch_id)
        deadline = self._deadline(batch)
        if self.deferrable:
            self.defer(
                trigger=MailchimpBatchTrigger(self.mailchimp_conn_id, batch_id, self.poll_interval, deadline),
                method_name="execute_complete",
            )
        while not BatchStatus(batch["status"]).is_terminal():
            if time.time() >= deadline:
                raise MailchimpBatchTimeout(self._timeout_message(batch_id, batch["status"]))
            self.log.info(
                "Batch %s is %s (%s/%s operations)",
                batch_id,
                batch["status"],
                batch.get("finished_operations"),
                batch.get("total_operations"),
            )
            time.sleep(min(self.poll_interval, max(0.0, deadline - time.time())))
            batch = self.hook.get_batch(batch_id)

    def _timeout_message(self, batch_id: str, status: str) -> str:
        return (
            f"Mailchimp batch {batch_id} did not finish within {self.timeout:.0f}s (last status: {status}). "
            "It was left running; a retry of this task reconnects to it."
        )

    def get_job_result(self, external_id: Any, context: Any) -> dict:
        batch_id = str(external_id)
        results = self.hook.fetch_batch_results(batch_id)
        write_parquet(ObjectStoragePath(self.results_path), results)
        summary = batch_summary(self.hook.get_batch(batch_id))
        summary["results"] = results.num_rows
        self.log.info(
            "Batch %s finished: %s operations, %s errored",
            batch_id,
            summary.get("total_operations"),
            summary.get("errored_operations"),
        )
        return summary

    def execute_complete(self, context: Any, event: dict) -> dict:
        """Resume after the trigger: fail with its message, or collect the finished batch's results."""
        if event["status"] == "timeout":
            raise MailchimpBatchTimeout(self._timeout_message(event["batch_id"], event["last_status"]))
        if event["status"] != "finished":
            raise MailchimpApiError(
                0, "Batch polling failed", f"batch {event['batch_id']}: {event['message']}"
            )
        return self.get_job_result(event["batch"]["id"], context)
