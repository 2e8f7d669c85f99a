"""MailchimpHook against the local Mailchimp server, including its fault injection."""

from __future__ import annotations

import json
import time

import pytest
from fired import fault_fired
from mailchimp_provider.hooks.config import RetryPolicy
from mailchimp_provider.hooks.errors import MailchimpApiError
from mailchimp_provider.hooks.mailchimp import MailchimpHook
from support import mailchimp_connection

FAST = RetryPolicy(attempts=8, base_delay=0.01, max_delay=0.05)


def hook(**kwargs) -> MailchimpHook:
    return MailchimpHook(retry=FAST, timeout=10, **kwargs)


def test_ping_and_audience(mailchimp_conn) -> None:
    ok, message = hook().test_connection()
    assert ok and "Chimpy" in message
    audience = hook().get_audience(mailchimp_conn.list_id)
    assert audience["id"] == mailchimp_conn.list_id
    tags = {f["tag"] for f in hook().get_merge_fields(mailchimp_conn.list_id)}
    assert {"FNAME", "LNAME"} <= tags


def test_test_button_explains_a_wrong_key(emulator, monkeypatch) -> None:
    conn = json.loads(mailchimp_connection(emulator))
    conn["password"] = "ffffffffffffffffffffffffffffffff-us6"
    monkeypatch.setenv("AIRFLOW_CONN_MAILCHIMP_DEFAULT", json.dumps(conn))
    ok, message = hook().test_connection()
    assert not ok and "401 API Key Invalid" in message
    assert "ffffffff" not in message


def test_oauth_token_finds_its_data_center(emulator, monkeypatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_MAILCHIMP_DEFAULT",
        json.dumps(
            {
                "conn_type": "mailchimp",
                "extra": {
                    "oauth_token": emulator.oauth_token,
                    "oauth_metadata_url": f"{emulator.base_url}/oauth2/metadata",
                },
            }
        ),
    )
    h = hook()
    assert h.config.base_url == f"{emulator.base_url}/3.0"
    assert h.config.authorization == f"Bearer {emulator.oauth_token}"
    assert h.call("GET", "ping")["health_status"]


@pytest.mark.parametrize(
    "faults",
    [
        {"throttle_next": 5},
        {"error_rate": 0.5, "seed": 3},
        {"drop_rate": 0.4, "seed": 5},
        {"bare_status": 403, "bare_next": 3},
        {"bare_status": 429, "bare_next": 3},
        {"latency_spike_rate": 0.5, "latency_spike_ms": 300, "seed": 1},
    ],
    ids=lambda f: next(iter(f)),
)
def test_recovers_from_transient_faults(mailchimp_conn, faults) -> None:
    mailchimp_conn.set_faults(**faults)
    h = hook()
    for _ in range(10):
        assert h.call("GET", f"lists/{mailchimp_conn.list_id}")["id"] == mailchimp_conn.list_id
    assert fault_fired(mailchimp_conn, faults) > 0, f"{faults} never fired"


def test_gives_up_at_once_on_validation_errors(mailchimp_conn) -> None:
    before = mailchimp_conn.stats()
    with pytest.raises(MailchimpApiError) as raised:
        hook().call("GET", "lists/doesnotexist")
    assert raised.value.status == 404 and raised.value.title == "Resource Not Found"
    with pytest.raises(MailchimpApiError) as raised:
        hook().call("PUT", f"lists/{mailchimp_conn.list_id}/members/abc", body={"email_address": "x"})
    assert raised.value.status == 400
    after = mailchimp_conn.stats()
    assert _total_requests(after) - _total_requests(before) == 2


def _total_requests(stats: dict) -> int:
    return sum(stats["requests_by_status"].values())


def test_gives_up_after_the_last_attempt(mailchimp_conn) -> None:
    mailchimp_conn.set_faults(throttle_next=100)
    with pytest.raises(MailchimpApiError, match="429"):
        MailchimpHook(retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.01)).call("GET", "ping")


def _operation(server, members: int = 3) -> str:
    body = json.dumps(
        {
            "members": [
                {"email_address": f"lost{i}@gmail.com", "status_if_new": "subscribed"} for i in range(members)
            ],
            "update_existing": True,
        }
    )
    return json.dumps(
        {"method": "POST", "path": f"/lists/{server.list_id}", "operation_id": "op-1", "body": body}
    )


def test_a_lost_answer_to_a_batch_submission_does_not_submit_a_second_batch(emulator, monkeypatch) -> None:
    """Issue 10 item 4: Mailchimp accepted the batch, the answer never arrived, the hook sent it again."""
    from lossy_proxy import LossyProxy

    with LossyProxy(emulator.port, method="POST", path="/3.0/batches") as proxy:
        conn = json.loads(mailchimp_connection(emulator))
        conn["host"] = proxy.base_url
        monkeypatch.setenv("AIRFLOW_CONN_MAILCHIMP_DEFAULT", json.dumps(conn))
        batch = hook().submit_batch(_operation(emulator))
        assert proxy.dropped == 1  # the fault fired: the accepted batch's answer was lost
    assert emulator.stats()["batches_submitted"] == 1
    direct = MailchimpHook(retry=FAST, timeout=10, mailchimp_conn_id="direct")
    monkeypatch.setenv("AIRFLOW_CONN_DIRECT", mailchimp_connection(emulator))
    assert [b["id"] for b in direct.call("GET", "batches")["batches"]] == [batch["id"]]
    assert direct.fetch_batch_results(batch["id"])["operation_id"].to_pylist() == ["op-1"]
    assert len(emulator.members()) == 3


def test_a_refused_submission_is_sent_again(mailchimp_conn) -> None:
    """A throttled POST /batches was not accepted: it is retried, and only one batch exists."""
    mailchimp_conn.set_faults(throttle_next=2)
    batch = hook().submit_batch(_operation(mailchimp_conn))
    stats = mailchimp_conn.stats()
    assert stats["too_many_requests"] == 2 and stats["batches_submitted"] == 1
    assert [b["id"] for b in hook().call("GET", "batches")["batches"]] == [batch["id"]]


def test_the_request_timeout_applies_to_every_call(mailchimp_conn) -> None:
    """A call slower than the timeout is given up and retried, not waited for (the default is 130 s)."""
    mailchimp_conn.set_faults(latency_ms=1500)
    slow = MailchimpHook(retry=RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.01), timeout=0.3)
    started = time.monotonic()
    with pytest.raises(MailchimpApiError, match="Connection failed: ReadTimeout"):
        slow.call("GET", "ping")
    assert time.monotonic() - started < 1.4  # two attempts of 0.3 s, not two of 1.5 s


def test_a_corrupt_archive_is_downloaded_six_times_then_fails(mailchimp_conn, monkeypatch) -> None:
    import requests

    batch_id = hook().submit_batch(_operation(mailchimp_conn))["id"]
    deadline = time.monotonic() + 60
    while hook().get_batch(batch_id)["status"] != "finished":
        assert time.monotonic() < deadline, "the batch did not finish"
        time.sleep(0.05)
    mailchimp_conn.set_faults(corrupt_archive=True)
    downloads: list[str] = []
    real_get = requests.get

    def counting_get(url, **kwargs):
        downloads.append(url)
        return real_get(url, **kwargs)

    monkeypatch.setattr(requests, "get", counting_get)
    with pytest.raises(MailchimpApiError, match="results archive is unreadable"):
        hook().fetch_batch_results(batch_id)
    assert len(downloads) == 6 and len(set(downloads)) == 6  # a fresh URL for each download
