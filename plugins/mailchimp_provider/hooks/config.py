"""Everything a Mailchimp call needs from an Airflow connection, shared by the sync and async hooks."""

from __future__ import annotations

import base64
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mailchimp_provider.hooks.errors import MailchimpConfigError

DEFAULT_OAUTH_METADATA_URL = "https://login.mailchimp.com/oauth2/metadata"
USER_AGENT = "airflow-provider-mailchimp-segments"


def _flag(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1", "yes", "on")


@dataclass(frozen=True)
class MailchimpConfig:
    """Base URL and credentials of one connection. ``repr`` never shows the secret."""

    conn_id: str
    base_url: str
    authorization: str = field(repr=False)
    privacy_consent: bool
    allowed: tuple[str, ...]

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every string that reveals the credential, for the secrets masker."""
        scheme, _, value = self.authorization.partition(" ")
        found = [value]
        if scheme == "Basic":
            found.append(base64.b64decode(value).decode().partition(":")[2])
        return tuple(found)

    def allows(self, *names: str) -> bool:
        return "*" in self.allowed or any(name in self.allowed for name in names)

    def check_usable_for(self, export: str, dag_id: str) -> None:
        """The consent and permission gates, checked before the warehouse is read."""
        if not self.privacy_consent:
            raise MailchimpConfigError(
                f"Mailchimp connection '{self.conn_id}' has no data-privacy consent: an administrator must "
                "tick 'I agree: data privacy' on the connection (extra field privacy_consent) before any "
                "profile is sent to Mailchimp."
            )
        if not self.allows(export, dag_id):
            allowed = ", ".join(self.allowed) or "nobody"
            raise MailchimpConfigError(
                f"Mailchimp connection '{self.conn_id}' may not be used by export '{export}' (allowed: "
                f"{allowed}). Add '{export}' to the connection's 'allowed_exports' field, or use another "
                "connection."
            )


def data_center_of_key(api_key: str) -> str | None:
    _, dash, dc = api_key.rpartition("-")
    return dc if dash and dc.isalnum() else None


def config_from_connection(
    conn: Any, discover: Callable[[str, str], dict[str, Any]] | None = None
) -> MailchimpConfig:
    """Resolve base URL and auth from a connection (host, password = API key, extras).

    The data center comes from the ``data_center`` extra, the key's ``-us6`` suffix or, for OAuth tokens,
    from Mailchimp's metadata endpoint through ``discover(url, token)``. A ``host`` overrides the URL
    (the local Mailchimp server, a proxy).
    """
    extra = conn.extra_dejson or {}
    api_key = (conn.password or "").strip()
    token = str(extra.get("oauth_token") or "").strip()
    if not api_key and not token:
        raise MailchimpConfigError(
            f"Mailchimp connection '{conn.conn_id}' has neither an API key (password) nor an OAuth token "
            "(extra oauth_token)."
        )
    if token:
        authorization = f"Bearer {token}"
    else:
        authorization = "Basic " + base64.b64encode(f"airflow:{api_key}".encode()).decode()
    base = (conn.host or "").strip().rstrip("/")
    if base:
        if "://" not in base:
            base = f"https://{base}"
        if conn.port:
            base = f"{base}:{conn.port}"
    else:
        dc = str(extra.get("data_center") or "").strip() or (
            data_center_of_key(api_key) if not token else None
        )
        if dc:
            base = f"https://{dc}.api.mailchimp.com"
        elif token and discover is not None:
            url = str(extra.get("oauth_metadata_url") or DEFAULT_OAUTH_METADATA_URL)
            metadata = discover(url, token)
            if not metadata.get("api_endpoint"):
                raise MailchimpConfigError(
                    f"Mailchimp connection '{conn.conn_id}': the OAuth token was not accepted by the "
                    "metadata endpoint (no api_endpoint in its answer); check the token."
                )
            base = str(metadata["api_endpoint"]).rstrip("/")
        else:
            raise MailchimpConfigError(
                f"Mailchimp connection '{conn.conn_id}': cannot tell the data center; give a key ending in "
                "'-<dc>' (e.g. -us6), the data_center field, or a base URL."
            )
    if not base.endswith("/3.0"):
        base = f"{base}/3.0"
    allowed = tuple(p.strip() for p in str(extra.get("allowed_exports") or "").split(",") if p.strip())
    return MailchimpConfig(conn.conn_id, base, authorization, _flag(extra.get("privacy_consent")), allowed)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: Mailchimp documents no Retry-After to wait for."""

    attempts: int = 10
    base_delay: float = 1.0
    max_delay: float = 60.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))
