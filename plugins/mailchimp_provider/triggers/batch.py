"""MailchimpBatchTrigger: waits in the triggerer for a Mailchimp batch to finish, polling only."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from mailchimp_provider.batches import BatchStatus, Patience, poll_delays
from mailchimp_provider.hooks.errors import MailchimpApiError
from mailchimp_provider.hooks.mailchimp_async import MailchimpAsyncHook

SUMMARY_FIELDS = (
    "id",
    "status",
    "total_operations",
    "finished_operations",
    "errored_operations",
    "submitted_at",
    "completed_at",
)


def batch_summary(batch: dict) -> dict:
    """The few batch fields worth carrying in events and XCom (no result URLs: they are bearer links)."""
    return {key: batch.get(key) for key in SUMMARY_FIELDS}


class MailchimpBatchTrigger(BaseTrigger):
    """Poll ``GET /batches/{id}`` until the batch finishes or the wait ends (:class:`Patience`: until
    ``deadline``, epoch seconds, or ``grace`` seconds after the batch applied its last operation if that
    is later); the first poll not before ``not_before`` (epoch seconds), then after 1 s, doubling up to
    ``poll_interval``.

    Yields exactly one event, then ends: ``{"status": "finished", "batch": {...}}``, ``{"status":
    "timeout", "batch_id", "last_status", "applied"}`` or ``{"status": "error", "batch_id", "message",
    "http_status"}`` (0 when there was no answer). ``deadline`` is wall-clock time, so it survives the
    trigger moving to another triggerer process.
    """

    def __init__(
        self,
        mailchimp_conn_id: str,
        batch_id: str,
        poll_interval: float,
        deadline: float,
        not_before: float = 0.0,
        grace: float = 0.0,  # 0 for triggers serialized before it existed: they end at the deadline
    ) -> None:
        super().__init__()
        self.mailchimp_conn_id = mailchimp_conn_id
        self.batch_id = batch_id
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.not_before = not_before  # epoch seconds of the first poll (see MailchimpBatchOperator)
        self.grace = grace

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "mailchimp_conn_id": self.mailchimp_conn_id,
                "batch_id": self.batch_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "not_before": self.not_before,
                "grace": self.grace,
            },
        )

    async def on_kill(self) -> None:
        """The deferred task was killed: withdraw the batch if it has not started, as the operator's
        ``on_kill`` does for a task waiting on a worker; a running batch is left to finish."""
        hook = MailchimpAsyncHook(self.mailchimp_conn_id)
        try:
            status = (await hook.get_batch(self.batch_id)).get("status", "unknown")
            if BatchStatus(status).is_withdrawable():
                await hook.call("DELETE", f"batches/{self.batch_id}")
                self.log.info("Killed: withdrew batch %s before it started", self.batch_id)
            else:
                self.log.info("Killed: batch %s is %s and is left to finish", self.batch_id, status)
        except (MailchimpApiError, ValueError) as exc:
            self.log.warning("Killed: could not check batch %s: %s", self.batch_id, exc)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = MailchimpAsyncHook(self.mailchimp_conn_id)
        last_status = "unknown"
        patience = Patience(self.deadline, self.grace)
        await asyncio.sleep(max(0.0, self.not_before - time.time()))
        delays = poll_delays(self.poll_interval)
        try:
            while True:
                batch = await hook.get_batch(self.batch_id)
                last_status = batch.get("status", "unknown")
                if BatchStatus(last_status).is_terminal():
                    yield TriggerEvent({"status": "finished", "batch": batch_summary(batch)})
                    return
                if patience.saw(batch, time.time()) and self.grace:
                    self.log.info(
                        "Batch %s applied all %s operations; waiting up to %.0fs more for Mailchimp to "
                        "finish it (its results)",
                        self.batch_id,
                        batch.get("total_operations"),
                        max(0.0, patience.until - time.time()),
                    )
                if time.time() >= patience.until:
                    applied = patience.applied_at is not None
                    yield TriggerEvent(
                        {
                            "status": "timeout",
                            "batch_id": self.batch_id,
                            "last_status": last_status,
                            "applied": applied,
                        }
                    )
                    return
                delay = next(delays)
                self.log.info("Batch %s is %s; next poll in %ss", self.batch_id, last_status, delay)
                await asyncio.sleep(min(delay, max(0.0, patience.until - time.time())))
        except (MailchimpApiError, ValueError) as exc:
            status = exc.status if isinstance(exc, MailchimpApiError) else 0
            yield TriggerEvent(
                {"status": "error", "batch_id": self.batch_id, "message": str(exc), "http_status": status}
            )
