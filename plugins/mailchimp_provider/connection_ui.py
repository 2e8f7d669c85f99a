"""Two workarounds for Airflow 3.3.2's connection UI, as an API-server middleware (an Airflow plugin).

1. **Test button** (drop once the installed Airflow carries apache/airflow PR 73298, merged after 3.3.2):
   the UI sends ``port: Number(null)``, i.e. ``0``, for a connection without a port, together with the
   masked password ``"***"``. ``POST /api/v2/connections/test`` takes port 0 for another destination
   than the stored one (port NULL) and refuses to reuse the stored key: every Mailchimp connection's
   test fails with "400 Bad Request". The fix upstream treats port 0 like a blank port; so does this,
   for Mailchimp connections only (they never use a port).
2. **Every field editable**: the connection form shows an extra field only if the stored ``extra`` JSON
   has its key (the UI's param store drops the others), so a connection created from the CLI, the REST
   API or an environment-style JSON with only some keys shows only those fields. Connections read
   through the REST API get the missing Mailchimp keys as ``null``, which the form shows as empty fields;
   nothing is stored until the user saves.

A middleware rather than a patched Airflow: the project controls it, it is scoped to
``conn_type == "mailchimp"``, and it goes away with its entry point (``airflow.plugins`` in pyproject.toml).
"""

from __future__ import annotations

import json
import re
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from mailchimp_provider import get_provider_info

CONN_TYPE = "mailchimp"
EXTRA_FIELDS = tuple(
    next(c for c in get_provider_info()["connection-types"] if c["connection-type"] == CONN_TYPE)[
        "conn-fields"
    ]
)
_TEST_PATH = "/api/v2/connections/test"
_READ_PATH = re.compile(r"^/api/v2/connections(/[^/]+)?$")


def without_zero_port(body: bytes) -> bytes:
    """A connection-test request body with ``port: 0`` dropped, for Mailchimp connections."""
    try:
        payload = json.loads(body)
    except ValueError:
        return body  # let the API answer its own validation error
    if isinstance(payload, dict) and payload.get("conn_type") == CONN_TYPE and payload.get("port") == 0:
        del payload["port"]
        return json.dumps(payload).encode()
    return body


def with_every_extra_field(body: bytes) -> bytes:
    """A connection (or list of connections) response with every Mailchimp extra key present."""
    try:
        payload = json.loads(body)
    except ValueError:
        return body
    if not isinstance(payload, dict):
        return body
    connections = payload.get("connections") if "connections" in payload else [payload]
    changed = False
    for conn in connections or []:
        if not isinstance(conn, dict) or conn.get("conn_type") != CONN_TYPE:
            continue
        try:
            extra = json.loads(conn.get("extra") or "{}")
        except ValueError:
            continue  # not JSON: the form shows it as it is
        if isinstance(extra, dict) and not set(EXTRA_FIELDS) <= extra.keys():
            conn["extra"] = json.dumps({**dict.fromkeys(EXTRA_FIELDS), **extra})
            changed = True
    return json.dumps(payload).encode() if changed else body


async def _read_body(receive: Any) -> bytes:
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


def _with_length(headers: list[tuple[bytes, bytes]], length: int) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in headers if k.lower() != b"content-length"] + [
        (b"content-length", str(length).encode())
    ]


class MailchimpConnectionUiMiddleware:
    """ASGI middleware: rewrites the connection-test request and connection read responses (above)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["method"] == "POST" and scope["path"] == _TEST_PATH:
            return await self._fix_test_request(scope, receive, send)
        if scope["method"] == "GET" and _READ_PATH.match(scope["path"]):
            return await self._fix_read_response(scope, receive, send)
        return await self.app(scope, receive, send)

    async def _fix_test_request(self, scope: dict, receive: Any, send: Any) -> None:
        body = without_zero_port(await _read_body(receive))
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()  # e.g. http.disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        scope = {**scope, "headers": _with_length(scope["headers"], len(body))}
        await self.app(scope, replay, send)

    async def _fix_read_response(self, scope: dict, receive: Any, send: Any) -> None:
        start: dict | None = None
        chunks: list[bytes] = []

        async def collect(message: dict) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                return await send(message)
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            if start["status"] == 200:
                body = with_every_extra_field(body)
            await send({**start, "headers": _with_length(start.get("headers", []), len(body))})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        # Uncompressed, to be readable here (the API compresses answers above 1 KiB for clients that accept it).
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"accept-encoding"]
        await self.app({**scope, "headers": headers}, receive, collect)


class MailchimpConnectionUiPlugin(AirflowPlugin):
    """Registered by the package's ``airflow.plugins`` entry point (Airflow loads a provider's own
    ``plugins`` only with ``[core] lazy_discover_providers = False``)."""

    name = "mailchimp_connection_ui"
    fastapi_root_middlewares = [
        {
            "middleware": MailchimpConnectionUiMiddleware,
            "args": [],
            "kwargs": {},
            "name": "Mailchimp connection UI",
        }
    ]
