"""Small helpers shared by test modules."""

from __future__ import annotations

import json
from typing import Any


def mailchimp_connection(server: Any, **extra: Any) -> str:
    """An AIRFLOW_CONN_* value for a Mailchimp connection to the local server."""
    extra = {"privacy_consent": True, "allowed_exports": "*", **extra}
    return json.dumps(
        {"conn_type": "mailchimp", "host": server.base_url, "password": server.api_key, "extra": extra}
    )
