"""API authentication exactly as Mailchimp does it: Basic (any user, key as password) or Bearer."""

from __future__ import annotations

import base64
import binascii
import logging

from .config import Settings
from .problems import ApiError
from .redact import mask_secret

log = logging.getLogger("mailchimp_emulator.auth")


class Authenticator:
    """Checks API keys (with or without their `-<dc>` suffix) and OAuth tokens."""

    def __init__(self, settings: Settings) -> None:
        self._dc = settings.dc
        self._key_bases = frozenset(k.rpartition("-")[0] for k in settings.api_keys)
        self._tokens = frozenset(settings.oauth_tokens)

    def credential(self, header: str | None) -> str:
        """The key or token carried by an Authorization header; ApiError when absent or unreadable."""
        scheme, _, value = (header or "").strip().partition(" ")
        value = value.strip()
        if not scheme:
            raise ApiError("APIKeyMissing")
        scheme = scheme.lower()
        if scheme == "basic":
            try:
                decoded = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise ApiError("APIKeyInvalid") from None
            value = decoded.partition(":")[2]
        elif scheme not in ("bearer", "oauth"):
            raise ApiError("APIKeyInvalid")
        if not value:
            raise ApiError("APIKeyMissing")
        return value

    def check(self, header: str | None) -> None:
        credential = self.credential(header)
        if credential in self._tokens:
            return
        base, dash, dc = credential.rpartition("-")
        if not dash:
            base, dc = credential, self._dc
        if dc == self._dc and base in self._key_bases:
            return
        log.info("rejected credential %s", mask_secret(credential))
        raise ApiError("APIKeyInvalid")

    def token_valid(self, token: str) -> bool:
        return token in self._tokens
