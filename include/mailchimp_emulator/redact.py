"""Log hygiene: no full API key, token or email address ever reaches a log line."""

from __future__ import annotations

import logging
import re

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

_EMAIL_RE = re.compile(
    r"([A-Za-z0-9._%+!#$&'*=?^`{|}~-])[A-Za-z0-9._%+!#$&'*=?^`{|}~-]*(@|%40)([A-Za-z0-9.-]+)"
)
_SECRET_PARAM_RE = re.compile(
    r"((?:apikey|api_key|key|token|access_token|Signature|x-amz-security-token)=)[^&\s]+", re.IGNORECASE
)
_KEY_RE = re.compile(r"\b([0-9a-f]{4})[0-9a-f]{28}(-[a-z]{2}\d{1,3})?\b")


def mask_secret(secret: str) -> str:
    """Keep the first four characters (and a `-dc` suffix) so a key can be recognised, not reused."""
    base, dash, dc = secret.rpartition("-")
    suffix = f"-{dc}" if dash and len(dc) <= 5 else ""
    head = (base if suffix else secret)[:4]
    return f"{head}…{suffix}" if len(secret) > 8 else "****"


def redact(text: str) -> str:
    """Mask emails (first character and domain kept), key-like strings and secret query parameters."""
    text = _EMAIL_RE.sub(lambda m: f"{m.group(1)}***{m.group(2)}{m.group(3)}", text)
    text = _SECRET_PARAM_RE.sub(lambda m: m.group(1) + "****", text)
    return _KEY_RE.sub(lambda m: f"{m.group(1)}…{m.group(2) or ''}", text)


class AccessLogger(AbstractAccessLogger):
    """One line per request: method, redacted path and query, status, duration, request id."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %.1fms rid=%s',
            request.remote,
            request.method,
            redact(request.path_qs),
            response.status,
            time * 1000,
            response.headers.get("X-Request-Id", "-"),
        )


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
