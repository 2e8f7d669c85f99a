"""Real parts for alerts: a local SMTP server (aiosmtpd) on a free port, the local Mailchimp server and a
small demo warehouse with addresses Mailchimp refuses."""

from __future__ import annotations

import email
import email.policy
import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
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
