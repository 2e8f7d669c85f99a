"""Fixtures that run real parts: the local Mailchimp server (a subprocess talking HTTP), an Airflow
metadata database, and a seeded SQLite warehouse."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from mailchimp_emulator.testing import EmulatorProcess
from support import mailchimp_connection

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEMO_AUDIENCES = ROOT / "include" / "demo" / "mailchimp-audiences.yaml"


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A migrated Airflow metadata DB in the tests' own AIRFLOW_HOME, with the Mailchimp pool."""
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], check=True, capture_output=True, env=os.environ)
    subprocess.run(
        [
            str(BIN / "airflow"),
            "pools",
            "set",
            "mailchimp_api",
            "8",
            "Mailchimp connections",
            "--include-deferred",
        ],
        check=True,
        capture_output=True,
        env=os.environ,
    )


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    config = yaml.safe_load(DEMO_AUDIENCES.read_text())
    with EmulatorProcess(tmp_path / "mailchimp", config=config) as server:
        yield server


@pytest.fixture
def mailchimp_conn(emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch) -> EmulatorProcess:
    """The default Mailchimp connection, pointing at the local server."""
    monkeypatch.setenv("AIRFLOW_CONN_MAILCHIMP_DEFAULT", mailchimp_connection(emulator))
    return emulator


@pytest.fixture(scope="session")
def seeded_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo warehouse, built once; tests that change it copy it first."""
    path = tmp_path_factory.mktemp("warehouse") / "warehouse.db"
    subprocess.run(
        [
            str(BIN / "seed-demo-warehouse"),
            "--target",
            f"sqlite:///{path}",
            "--profiles",
            "3000",
            "--seed",
            "7",
        ],
        check=True,
        capture_output=True,
    )
    return path


PG_ADMIN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres"}


def _pg_admin():
    import psycopg2

    try:
        conn = psycopg2.connect(connect_timeout=3, **PG_ADMIN)
    except psycopg2.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is required under CI: {exc}")
        pytest.skip(f"no PostgreSQL server reachable at 127.0.0.1:5432 ({str(exc).strip()})")
    conn.autocommit = True
    return conn


@pytest.fixture
def postgres_warehouse(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A demo warehouse in its own PostgreSQL database, created and dropped by the test."""
    import uuid

    name = f"mailchimp_test_{uuid.uuid4().hex[:10]}"
    admin = _pg_admin()
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    try:
        target = f"postgresql://postgres@127.0.0.1:5432/{name}"
        subprocess.run(
            [str(BIN / "seed-demo-warehouse"), "--target", target, "--profiles", "3000", "--seed", "7"],
            check=True,
            capture_output=True,
        )
        monkeypatch.setenv(
            "AIRFLOW_CONN_DEMO_WAREHOUSE",
            json.dumps(
                {
                    "conn_type": "postgres",
                    "host": "127.0.0.1",
                    "port": 5432,
                    "login": "postgres",
                    "schema": name,
                }
            ),
        )
        yield target
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def warehouse(tmp_path, seeded_sqlite, monkeypatch) -> Path:
    path = tmp_path / "warehouse.db"
    shutil.copy(seeded_sqlite, path)
    monkeypatch.setenv("AIRFLOW_CONN_DEMO_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    monkeypatch.setenv("MAILCHIMP_EXPORT_BASE_PATH", str(tmp_path / "staging"))
    return path
