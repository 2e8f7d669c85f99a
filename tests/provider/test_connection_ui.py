"""The connection-UI middleware on a small ASGI app: what reaches Airflow's route and what the form gets.
The same fixes against the real API server: tests/services/test_connection_ui_on_services.py."""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.testclient import TestClient
from mailchimp_provider.connection_ui import EXTRA_FIELDS, MailchimpConnectionUiMiddleware

STORED = {
    "connection_id": "mailchimp_default",
    "conn_type": "mailchimp",
    "host": "http://127.0.0.1:8025",
    "port": None,
    "password": "***",
    "extra": json.dumps({"privacy_consent": True, "allowed_exports": "*"}),
}
OTHER = {**STORED, "connection_id": "web", "conn_type": "http", "extra": json.dumps({"a": 1})}


def _client() -> TestClient:
    app = FastAPI()

    @app.post("/api/v2/connections/test")
    async def echo(request: Request) -> dict:
        return {"received": await request.json()}

    @app.get("/api/v2/connections")
    def listing() -> dict:
        return {"connections": [STORED, OTHER], "total_entries": 2, "padding": "x" * 2000}

    @app.get("/api/v2/connections/{conn_id}")
    def one(conn_id: str) -> dict:
        return STORED if conn_id == "mailchimp_default" else OTHER

    app.add_middleware(GZipMiddleware, minimum_size=100)  # inside ours, as in Airflow's API server
    app.add_middleware(MailchimpConnectionUiMiddleware)
    return TestClient(app)


def test_port_zero_is_dropped_from_a_mailchimp_connection_test() -> None:
    body = {"connection_id": "mailchimp_default", "conn_type": "mailchimp", "port": 0, "password": "***"}
    received = _client().post("/api/v2/connections/test", json=body).json()["received"]
    assert "port" not in received
    assert received["password"] == "***"


def test_other_connection_types_and_real_ports_are_left_alone() -> None:
    client = _client()
    http = {"connection_id": "web", "conn_type": "http", "port": 0}
    assert client.post("/api/v2/connections/test", json=http).json()["received"] == http
    mailchimp = {"connection_id": "m", "conn_type": "mailchimp", "port": 8025}
    assert client.post("/api/v2/connections/test", json=mailchimp).json()["received"] == mailchimp


def test_read_connections_carry_every_mailchimp_extra_key() -> None:
    client = _client()
    one = json.loads(client.get("/api/v2/connections/mailchimp_default").json()["extra"])
    assert set(one) == set(EXTRA_FIELDS)
    assert one["privacy_consent"] is True and one["oauth_token"] is None
    # gzip-compressed answers (the API's GZip middleware; browsers accept it) are read as well
    listing = client.get("/api/v2/connections", headers={"Accept-Encoding": "gzip"}).json()["connections"]
    assert set(json.loads(listing[0]["extra"])) == set(EXTRA_FIELDS)
    assert json.loads(listing[1]["extra"]) == {"a": 1}
    assert json.loads(client.get("/api/v2/connections/web").json()["extra"]) == {"a": 1}
