"""MailchimpBatchOperator: submit one Mailchimp batch job, wait for it, stage its per-operation results."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, ObjectStoragePath, ResumableJobMixin, conf
from airflow.sdk.exceptions import AirflowFailException

from mailchimp_provider.batches import BatchStatus, Patience, new_marker, operation_lines, poll_delays
from mailchimp_provider.export.staging import read_text, write_parquet
from mailchimp_provider.hooks.errors import MailchimpApiError, is_permanent
from mailchimp_provider.hooks.mailchimp import MailchimpHook
from mailchimp_provider.triggers.batch import MailchimpBatchTrigger, batch_summary

GONE = "gone"
# The triggerer's first poll comes no sooner than this after deferring. A batch already finished would
# otherwise resume the task before the scheduler has seen the worker end the deferring attempt, and Airflow
# 3.3 then fails the resumed attempt as "state changed externally" (a spurious retry whose resumed attempt
# gets 404s): apache/airflow#72716, fix pending in PR #72767. Drop it once a release carries that fix.
RESUME_NOT_BEFORE_S = 10.0
SUBMISSION_KEY = "mailchimp_batch_submission"


class MailchimpBatchTimeout(RuntimeError):
    """The batch did not finish in time; it is left running in Mailchimp."""


class MailchimpBatchOperator(ResumableJobMixin, BaseOperator):
    """Run the operations in a staged JSON-lines file as one Mailchimp batch job.

    The batch is built and submitted on the worker; waiting happens in the triggerer (deferrable, the
    default where ``[operators] default_deferrable`` is set) or on the worker. The batch id goes to the
    task state store before waiting, so a retry after a crash reconnects to the running batch instead of
    submitting it twice; the submission's marker goes there before the POST, so a retry after a crash
    between POST and storing the id finds the batch too. The finished batch's results archive is parsed
    into a Parquet file of ``operation_id, status_code, response``; only a small summary goes to XCom.
    Mailchimp refusing the key, the audience or the request fails the task at once, without retries.

    :param operations_path: staged JSON lines, one Mailchimp batch operation each.
    :param results_path: where the per-operation results are written.
    :param mailchimp_conn_id: connection of type ``mailchimp``.
    :param deferrable: wait in the triggerer instead of the worker.
    :param poll_interval: the longest wait between status checks (they start 1 s apart and double).
    :param timeout: seconds one try waits for the batch to apply its operations before it fails, naming
        the batch; once they are all applied, as long again from then for Mailchimp to finish it (which
        its users report can take hours). A retry reconnects and waits as long again.
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
        self._batch_id: str | None = None
        self._collected: dict[str, dict] = {}

    @cached_property
    def hook(self) -> MailchimpHook:
        return MailchimpHook(self.mailchimp_conn_id)

    def execute(self, context: Any) -> dict:
        with _fail_fast():
            return self.execute_resumable(context)

    def submit_job(self, context: Any) -> str:
        store = context.get("task_state_store")
        operations = read_text(ObjectStoragePath(self.operations_path))
        total = len(operation_lines(operations)) + 1  # with the marker
        earlier = store.get(SUBMISSION_KEY) if store is not None else None
        if earlier:  # an earlier try may have died between the POST and storing the batch id
            found = self.hook.find_batch(
                earlier["marker"],
                total,
                earlier["since"],
                wait=self.timeout,
                poll_interval=self.poll_interval,
            )
            if found is not None:
                self.log.info("Found batch %s submitted by an earlier try", found["id"])
                return found["id"]
        marker = new_marker()
        if store is not None:
            store.set(SUBMISSION_KEY, {"marker": marker, "since": time.time()})
        batch = self.hook.submit_batch(
            operations, marker, wait=self.timeout, poll_interval=self.poll_interval
        )
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

    def poll_until_complete(self, external_id: Any, context: Any) -> dict:
        """Wait for the batch (each try waits up to ``timeout``), then collect its results.

        Returns the results because ResumableJobMixin returns this method's value when a retry
        reconnects to a running batch (it calls ``get_job_result`` itself only after a fresh
        submission, which then finds them collected).
        """
        batch_id = self._batch_id = str(external_id)
        deadline = time.time() + self.timeout
        if self.deferrable:
            self.defer(
                trigger=MailchimpBatchTrigger(
                    self.mailchimp_conn_id,
                    batch_id,
                    self.poll_interval,
                    deadline,
                    not_before=min(deadline, time.time() + RESUME_NOT_BEFORE_S),
                    grace=self.timeout,
                ),
                method_name="execute_complete",
            )
        patience = Patience(deadline, self.timeout)
        batch = self._get_batch(batch_id)
        delays = poll_delays(self.poll_interval)
        while not BatchStatus(batch["status"]).is_terminal():
            if patience.saw(batch, time.time()):
                self.log.info(
                    "Batch %s applied all %s operations; waiting up to %.0fs more for Mailchimp to finish it",
                    batch_id,
                    batch.get("total_operations"),
                    patience.until - time.time(),
                )
            if time.time() >= patience.until:
                applied = patience.applied_at is not None
                raise MailchimpBatchTimeout(self._timeout_message(batch_id, batch["status"], applied))
            self.log.info(
                "Batch %s is %s (%s/%s operations)",
                batch_id,
                batch["status"],
                batch.get("finished_operations"),
                batch.get("total_operations"),
            )
            time.sleep(min(next(delays), max(0.0, patience.until - time.time())))
            batch = self._get_batch(batch_id)
        return self.get_job_result(batch_id, context)

    def _get_batch(self, batch_id: str) -> dict:
        try:
            return self.hook.get_batch(batch_id)
        except MailchimpApiError as exc:
            if exc.status == 404:  # deleted or expired while we waited: a retry submits it again
                raise MailchimpApiError(0, "Batch gone", f"batch {batch_id} vanished") from None
            raise

    def _timeout_message(self, batch_id: str, status: str, applied: bool) -> str:
        waited = (
            f"applied all its operations but did not finish within {self.timeout:.0f}s after that"
            if applied
            else f"did not finish within {self.timeout:.0f}s"
        )
        return (
            f"Mailchimp batch {batch_id} {waited} (last status: {status}). "
            "It was left running; a retry of this task reconnects to it."
        )

    def get_job_result(self, external_id: Any, context: Any) -> dict:
        """Stage the results; the summary's counts are Mailchimp's, so they include the marker operation."""
        batch_id = str(external_id)
        if batch_id in self._collected:
            return self._collected[batch_id]
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
        self._collected[batch_id] = summary
        return summary

    def execute_complete(self, context: Any, event: dict) -> dict:
        """Resume after the trigger: fail with its message, or collect the finished batch's results."""
        with _fail_fast():
            if event["status"] == "timeout":
                raise MailchimpBatchTimeout(
                    self._timeout_message(
                        event["batch_id"], event["last_status"], event.get("applied", False)
                    )
                )
            if event["status"] != "finished":
                status = event.get("http_status", 0)
                raise MailchimpApiError(
                    0 if status == 404 else status,  # a vanished batch is submitted again by a retry
                    "Batch polling failed",
                    f"batch {event['batch_id']}: {event['message']}",
                )
            return self.get_job_result(event["batch"]["id"], context)

    def on_kill(self) -> None:
        """Withdraw a batch that has not started; leave a running one to finish (a re-run reconnects).

        See ``BatchStatus.is_withdrawable``; the trigger's ``on_kill`` does the same for deferred tasks.
        """
        if self._batch_id is None:
            return
        try:
            status = self.hook.get_batch(self._batch_id)["status"]
            if BatchStatus(status).is_withdrawable():
                self.hook.delete_batch(self._batch_id)
                self.log.info("Killed: withdrew batch %s before it started", self._batch_id)
            else:
                self.log.info("Killed: batch %s is %s and is left to finish", self._batch_id, status)
        except (MailchimpApiError, ValueError) as exc:
            self.log.warning("Killed: could not check batch %s: %s", self._batch_id, exc)


@contextmanager
def _fail_fast() -> Iterator[None]:
    """Mailchimp refusing the key, the audience or the request does not fix itself: fail without retries."""
    try:
        yield
    except Exception as exc:
        if is_permanent(exc):
            raise AirflowFailException(str(exc)) from None
        raise
