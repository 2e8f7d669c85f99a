"""Connection settings to base URL and auth, and the consent and permission gates."""

from __future__ import annotations

import base64
import json

import pytest
from airflow.sdk import Connection
from mailchimp_provider.hooks.config import RetryPolicy, config_from_connection
from mailchimp_provider.hooks.errors import MailchimpApiError, MailchimpConfigError, mask_emails_in

KEY = "0123456789abcdef0123456789abcdef-us6"


def conn(extra: dict | None = None, **kwargs) -> Connection:
    return Connection(conn_id="mc", conn_type="mailchimp", extra=json.dumps(extra or {}), **kwargs)


def test_key_suffix_gives_the_data_center_and_basic_auth() -> None:
    config = config_from_connection(conn(password=KEY))
    assert config.base_url == "https://us6.api.mailchimp.com/3.0"
    scheme, value = config.authorization.split(" ")
    assert scheme == "Basic" and base64.b64decode(value).decode().endswith(f":{KEY}")
    assert KEY in config.secrets and value in config.secrets
    assert KEY not in repr(config)


def test_host_overrides_and_explicit_data_center_wins() -> None:
    assert config_from_connection(conn(password=KEY, host="http://127.0.0.1:8025/")).base_url == (
        "http://127.0.0.1:8025/3.0"
    )
    assert config_from_connection(conn(password=KEY, extra={"data_center": "eu1"})).base_url == (
        "https://eu1.api.mailchimp.com/3.0"
    )


def test_token_uses_bearer_and_discovers_the_data_center() -> None:
    seen = {}

    def discover(url: str, token: str) -> dict:
        seen.update(url=url, token=token)
        return {"dc": "us19", "api_endpoint": "https://us19.api.mailchimp.com"}

    config = config_from_connection(conn(extra={"oauth_token": "tok"}), discover)
    assert config.authorization == "Bearer tok"
    assert config.base_url == "https://us19.api.mailchimp.com/3.0"
    assert seen == {"url": "https://login.mailchimp.com/oauth2/metadata", "token": "tok"}
    with pytest.raises(MailchimpConfigError, match="token was not accepted"):
        config_from_connection(
            conn(extra={"oauth_token": "bad"}), lambda url, token: {"error": "invalid_token"}
        )


def test_missing_credentials_or_data_center_are_explained() -> None:
    with pytest.raises(MailchimpConfigError, match="neither an API key"):
        config_from_connection(conn())
    with pytest.raises(MailchimpConfigError, match="cannot tell the data center"):
        config_from_connection(conn(password="no-dashes-here_"))


def test_consent_and_permission_gates() -> None:
    with pytest.raises(MailchimpConfigError, match="no data-privacy consent"):
        config_from_connection(conn(password=KEY, extra={"allowed_exports": "*"})).check_usable_for(
            "a", "d_a"
        )
    config = config_from_connection(
        conn(password=KEY, extra={"privacy_consent": "true", "allowed_exports": "a, b"})
    )
    config.check_usable_for("b", "dag_b")
    with pytest.raises(MailchimpConfigError, match="may not be used by export 'c'"):
        config.check_usable_for("c", "dag_c")


def test_errors_carry_status_title_detail_and_mask_emails() -> None:
    body = b'{"type": "x", "title": "Invalid Resource", "status": 400, "detail": "anna.smith@gmail.com looks fake"}'
    error = MailchimpApiError.from_response(400, body, "application/problem+json")
    assert (error.status, error.title) == (400, "Invalid Resource")
    assert "anna.smith" not in str(error) and "a***@gmail.com" in str(error)
    assert not error.retryable
    bare = MailchimpApiError.from_response(403, b"", "")
    assert bare.bare and bare.retryable
    assert not MailchimpApiError.from_response(403, b'{"title": "Forbidden", "status": 403}').retryable
    assert MailchimpApiError.from_response(502, b"<html>Bad gateway</html>", "text/html").retryable
    assert mask_emails_in("to bo@x.org and al@y.co") == "to b***@x.org and a***@y.co"


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(attempts=5, base_delay=1, max_delay=4)
    assert all(0 <= policy.delay(n) <= min(4, 2 ** (n - 1)) for n in range(1, 8) for _ in range(20))


def test_no_answer_at_all_is_worth_retrying_later() -> None:
    assert MailchimpApiError(0, "Connection failed", "ConnectionError").retryable


def test_retry_policy_defaults_and_shape() -> None:
    """10 attempts, exponential from 1 s, capped at 60 s, full jitter: each delay is uniform in
    [0, min(60, 2^(n-1))], so it spreads over that whole range and is never a constant."""
    import statistics

    policy = RetryPolicy()
    assert (policy.attempts, policy.base_delay, policy.max_delay) == (10, 1.0, 60.0)
    for attempt in range(1, 12):
        cap = min(60.0, 2.0 ** (attempt - 1))
        delays = [policy.delay(attempt) for _ in range(400)]
        assert all(0 <= d <= cap for d in delays)
        assert min(delays) < 0.2 * cap and max(delays) > 0.8 * cap
        assert 0.35 * cap < statistics.fmean(delays) < 0.65 * cap


def test_request_timeout_is_130_seconds_by_default() -> None:
    """Mailchimp gives up on a call after 120 s; we wait a little longer before calling it lost."""
    from mailchimp_provider.hooks.mailchimp import MailchimpHook
    from mailchimp_provider.hooks.mailchimp_async import MailchimpAsyncHook

    assert MailchimpHook().timeout == 130.0
    assert MailchimpAsyncHook().timeout == 130.0
