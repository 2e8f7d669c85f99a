"""A deferred upload is not resumed before the scheduler can have seen its worker end the deferring
attempt: otherwise Airflow 3.3 fails the resumed attempt as "state changed externally" and retries it
(apache/airflow#72716). The real-deployment check: tests/services (test_deferred_uploads_resume_...)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from airflow.sdk.exceptions import TaskDeferred
from mailchimp_provider.hooks.mailchimp import MailchimpHook
from mailchimp_provider.operators import batch
from mailchimp_provider.operators.batch import MailchimpBatchOperator

pytestmark = pytest.mark.resume_settle


def _finished_batch(server) -> str:
    body = json.dumps({"members": [{"email_address": "ann@gmail.com", "status_if_new": "subscribed"}]})
    op = json.dumps({"method": "POST", "path": f"/lists/{server.list_id}", "operation_id": "1", "body": body})
    hook = MailchimpHook()
    batch_id = hook.submit_batch(op)["id"]
    deadline = time.monotonic() + 30
    while hook.get_batch(batch_id)["status"] != "finished":
        assert time.monotonic() < deadline, "the local server did not finish a one-member batch"
        time.sleep(0.05)
    return batch_id


def test_the_first_poll_waits_even_for_a_finished_batch(mailchimp_conn) -> None:
    batch_id = _finished_batch(mailchimp_conn)
    operator = MailchimpBatchOperator(
        task_id="upload", operations_path="-", results_path="-", deferrable=True, poll_interval=0.1
    )

    with pytest.raises(TaskDeferred) as deferred:
        operator.poll_until_complete(batch_id, context={})
    trigger = deferred.value.trigger
    assert trigger.not_before >= time.time() + batch.RESUME_NOT_BEFORE_S - 1.0 > time.time() + 5

    trigger.not_before = time.time() + 1.0  # the trigger honours it (shortened here)

    async def first_event() -> dict:
        async for event in trigger.run():
            return event.payload

    event = asyncio.run(first_event())
    assert time.time() >= trigger.not_before
    assert event["status"] == "finished" and event["batch"]["id"] == batch_id
