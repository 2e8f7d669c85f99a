"""MailchimpHook against the local Mailchimp server, including its fault injection."""

from __future__ import annotations

import json

import pytest
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
