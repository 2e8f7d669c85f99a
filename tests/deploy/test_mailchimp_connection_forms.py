"""The Mailchimp connection in each form README.md ("Add it to an existing Airflow") shows: what the
provider makes of it (base URL, consent, allowed exports), read through Airflow's own connection lookup."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from airflow.sdk import Connection
from mailchimp_provider.hooks.config import config_from_connection

KEY = "0123456789abcdef0123456789abcdef-us6"
LOCAL = "http://127.0.0.1:8025"
FORMS = {
    # JSON: the base URL (the local server) goes in "host".
    "json, local server": (
        json.dumps(
            {
                "conn_type": "mailchimp",
                "host": LOCAL,
                "password": KEY,
                "extra": {"privacy_consent": True, "allowed_exports": "vip,churn"},
            }
        ),
        f"{LOCAL}/3.0",
    ),
    # URI: the key is the password, extras are query parameters; no host means Mailchimp itself.
    "uri, mailchimp": (f"mailchimp://:{KEY}@/?privacy_consent=true&allowed_exports=vip%2Cchurn", None),
    # URI with a base URL: the host URL-encoded, scheme included.
    "uri, local server": (
        f"mailchimp://:{KEY}@{quote(LOCAL, safe='')}/?privacy_consent=true&allowed_exports=vip%2Cchurn",
        f"{LOCAL}/3.0",
    ),
}


@pytest.mark.parametrize("form", FORMS)
def test_connection_forms(form: str, monkeypatch) -> None:
    value, base_url = FORMS[form]
    monkeypatch.setenv("AIRFLOW_CONN_MAILCHIMP_DEFAULT", value)
    config = config_from_connection(Connection.get("mailchimp_default"))
    assert config.base_url == (base_url or "https://us6.api.mailchimp.com/3.0")
    assert config.privacy_consent is True
    assert config.allowed == ("vip", "churn")
