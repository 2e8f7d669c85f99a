"""MailchimpBatchTrigger: exact serialization, polling to the end, timeouts and errors as events."""

from __future__ import annotations

import asyncio
import importlib
import itertools
import json
import threading
import time

import pytest
from mailchimp_provider.batches import poll_delays
from mailchimp_provider.hooks.errors import MailchimpApiError
from mailchimp_provider.hooks.mailchimp import MailchimpHook
from mailchimp_provider.triggers.batch import MailchimpBatchTrigger
from support import mailchimp_connection


def test_serialization_round_trip() -> None:
    trigger = MailchimpBatchTrigger(
        "mc", "b123", 2.5, 1_900_000_000.0, not_before=1_800_000_000.0, grace=60.0
    )
    path, kwargs = trigger.serialize()
    module, _, name = path.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (path, kwargs)
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert not module.startswith("dags")


def _first_event(trigger: MailchimpBatchTrigger) -> dict:
    """The trigger's event; it must yield exactly one and then end."""

    async def every():
        return [event.payload async for event in trigger.run()]

    (event,) = asyncio.run(every())
    return event


def _submit(server, members: int = 3) -> str:
    body = json.dumps(
        {
            "members": [
                {"email_address": f"user{i}@gmail.com", "status_if_new": "subscribed"} for i in range(members)
            ],
            "update_existing": True,
        }
    )
    op = json.dumps(
        {"method": "POST", "path": f"/lists/{server.list_id}", "operation_id": "op-1", "body": body}
    )
    return MailchimpHook().submit_batch(op)["id"]


def test_polls_until_finished(mailchimp_conn) -> None:
    batch_id = _submit(mailchimp_conn)
    event = _first_event(MailchimpBatchTrigger("mailchimp_default", batch_id, 0.1, time.time() + 60))
    assert event["status"] == "finished"
    assert event["batch"]["id"] == batch_id and event["batch"]["total_operations"] == 2  # with the marker
    assert "response_body_url" not in event["batch"]


def test_polls_start_1_s_apart_and_double_up_to_the_interval(mailchimp_conn) -> None:
    """A small batch is seen finished within seconds, not a whole poll interval later."""
    assert list(itertools.islice(poll_delays(10.0), 6)) == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert list(itertools.islice(poll_delays(0.5), 2)) == [0.5, 0.5]
    mailchimp_conn.set_faults(stuck_in="started")
    batch_id = _submit(mailchimp_conn)
    mailchimp_conn.reset_stats()
    # polls at about 0, 1 and 3 s, then at the deadline; a fixed 60 s interval would poll at 0 and 3.6 s
    event = _first_event(MailchimpBatchTrigger("mailchimp_default", batch_id, 60.0, time.time() + 3.6))
    assert event["status"] == "timeout"
    assert mailchimp_conn.stats()["requests_total"] >= 3


def test_reports_timeout_with_the_last_status(mailchimp_conn) -> None:
    mailchimp_conn.set_faults(stuck_in="started")
    batch_id = _submit(mailchimp_conn)
    event = _first_event(MailchimpBatchTrigger("mailchimp_default", batch_id, 0.1, time.time() + 1.5))
    assert event == {"status": "timeout", "batch_id": batch_id, "last_status": "started", "applied": False}


def test_a_batch_slow_to_finish_after_its_last_operation_is_waited_for(mailchimp_conn) -> None:
    """Mailchimp can report every operation done and stay short of "finished" for hours: past the
    deadline, the trigger gives it ``grace`` from the moment it saw the operations applied."""
    mailchimp_conn.set_faults(stuck_in="finalizing")
    batch_id = _submit(mailchimp_conn)
    release = threading.Timer(2.5, lambda: mailchimp_conn.set_faults(stuck_in=None))
    release.start()
    try:
        trigger = MailchimpBatchTrigger("mailchimp_default", batch_id, 0.1, time.time() + 1.0, grace=60.0)
        event = _first_event(trigger)
    finally:
        release.cancel()
    assert event["status"] == "finished" and event["batch"]["id"] == batch_id


def test_a_batch_that_never_finishes_after_its_last_operation_still_ends_the_wait(mailchimp_conn) -> None:
    mailchimp_conn.set_faults(stuck_in="finalizing")
    batch_id = _submit(mailchimp_conn)
    event = _first_event(
        MailchimpBatchTrigger("mailchimp_default", batch_id, 0.1, time.time() + 0.5, grace=1.0)
    )
    assert event == {"status": "timeout", "batch_id": batch_id, "last_status": "finalizing", "applied": True}


def test_reports_errors(mailchimp_conn) -> None:
    event = _first_event(MailchimpBatchTrigger("mailchimp_default", "nosuchbatch", 0.1, time.time() + 10))
    assert event["status"] == "error" and "404" in event["message"] and event["http_status"] == 404


def test_gives_up_at_once_on_a_refused_key(mailchimp_conn, monkeypatch) -> None:
    conn = json.loads(mailchimp_connection(mailchimp_conn))
    conn["password"] = "ffffffffffffffffffffffffffffffff-us6"
    monkeypatch.setenv("AIRFLOW_CONN_MAILCHIMP_DEFAULT", json.dumps(conn))
    event = _first_event(MailchimpBatchTrigger("mailchimp_default", "b1", 0.1, time.time() + 10))
    assert event["status"] == "error" and event["http_status"] == 401
    assert mailchimp_conn.stats()["requests_by_status"] == {"401": 1}


def test_on_kill_withdraws_a_pending_batch_and_leaves_a_running_one(mailchimp_conn) -> None:
    mailchimp_conn.set_faults(stuck_in="pending")
    pending = _submit(mailchimp_conn)
    asyncio.run(MailchimpBatchTrigger("mailchimp_default", pending, 0.1, time.time() + 10).on_kill())
    with pytest.raises(MailchimpApiError, match="404"):
        MailchimpHook().get_batch(pending)

    mailchimp_conn.set_faults(stuck_in="started")
    running = _submit(mailchimp_conn)
    deadline = time.time() + 30
    while MailchimpHook().get_batch(running)["status"] != "started":
        assert time.time() < deadline, "the batch never started"
        time.sleep(0.1)
    asyncio.run(MailchimpBatchTrigger("mailchimp_default", running, 0.1, time.time() + 10).on_kill())
    assert MailchimpHook().get_batch(running)["status"] == "started"
