"""Real parts for alerts: a local SMTP server (aiosmtpd) on a free port, a local Slack Web API (the part
of it the Slack provider's notifier calls), the local Mailchimp server and a small demo warehouse with
addresses Mailchimp refuses."""

from __future__ import annotations

import email
import email.policy
import json
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from aiosmtpd.controller import Controller
from mailchimp_emulator.testing import EmulatorProcess, free_port
from support import mailchimp_connection

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEMO_AUDIENCES = ROOT / "include" / "demo" / "mailchimp-audiences.yaml"
REFUSED_BY_MAILCHIMP = [f"someone{i}@example.com" for i in range(5)]


@dataclass
class Inbox:
    """What the SMTP server received, parsed."""

    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's hook name)
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 Message accepted"


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Inbox]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_DEFAULT",
        json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": controller.port,
                "extra": {
                    "disable_ssl": True,
                    "disable_tls": True,
                    "from_email": "airflow@exports.local",
                    "retry_limit": 0,
                    "timeout": 10,
                },
            }
        ),
    )
    try:
        yield inbox
    finally:
        controller.stop()


SLACK_TOKEN = "xoxb-local-slack-token"


@dataclass
class SlackChannelLog:
    """What the local Slack Web API received: each chat.postMessage's JSON body."""

    posts: list[dict] = field(default_factory=list)


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlackChannelLog]:
    """``chat.postMessage`` as Slack answers it; a wrong token gets Slack's ``invalid_auth``."""
    log = SlackChannelLog()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's hook name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path != "/api/chat.postMessage":
                answer = {"ok": False, "error": "unknown_method"}
            elif self.headers.get("Authorization") != f"Bearer {SLACK_TOKEN}":
                answer = {"ok": False, "error": "invalid_auth"}
            else:
                log.posts.append(json.loads(body))
                answer = {"ok": True, "channel": "C0123", "ts": "1796000000.000100"}
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLACK_API_DEFAULT",
        json.dumps(
            {
                "conn_type": "slack",
                "password": SLACK_TOKEN,
                "extra": {"base_url": f"http://127.0.0.1:{server.server_port}/api/"},
            }
        ),
    )
    try:
        yield log
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def alerts_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("alerts-warehouse") / "warehouse.db"
    subprocess.run(
        [str(BIN / "seed-demo-warehouse"), "--target", f"sqlite:///{path}", "--profiles", "1500"]
        + ["--seed", "11"],
        check=True,
        capture_output=True,
    )
    conn = sqlite3.connect(path)
    for i, address in enumerate(REFUSED_BY_MAILCHIMP):
        conn.execute(
            "INSERT INTO customer_profiles (customer_id, email, country, loyalty_tier, signup_date, updated_at) "
            "VALUES (?, ?, 'DE', 'gold', '2024-01-01', '2024-01-01')",
            (f"Z{i:07d}", address),
        )
        conn.execute("INSERT INTO segment_memberships VALUES ('vip_customers', ?)", (f"Z{i:07d}",))
    conn.commit()
    conn.close()
    return path


@pytest.fixture(scope="session")
def alerts_airflow_db() -> None:
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], check=True, capture_output=True)
    subprocess.run(
        [str(BIN / "airflow"), "pools", "set", "mailchimp_api", "8", "Mailchimp", "--include-deferred"],
        check=True,
        capture_output=True,
    )


@pytest.fixture
def export_env(
    tmp_path: Path, alerts_warehouse: Path, alerts_airflow_db: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[EmulatorProcess]:
    """The local Mailchimp server and a private copy of the warehouse, wired as the demo connections."""
    warehouse = tmp_path / "warehouse.db"
    shutil.copy(alerts_warehouse, warehouse)
    monkeypatch.setenv(
        "AIRFLOW_CONN_DEMO_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(warehouse)})
    )
    monkeypatch.setenv("MAILCHIMP_EXPORT_BASE_PATH", str(tmp_path / "staging"))
    with EmulatorProcess(tmp_path / "mailchimp", config=yaml.safe_load(DEMO_AUDIENCES.read_text())) as server:
        monkeypatch.setenv("AIRFLOW_CONN_MAILCHIMP_DEFAULT", mailchimp_connection(server))
        yield server
