"""The SQLite warehouse connection in each form Airflow accepts, read the way the export reads it.

Airflow's own SQLite URI has three slashes before an absolute path (`sqlite:///tmp/w.db`), not
SQLAlchemy's four: Airflow parses `sqlite:////tmp/w.db` into an empty host and the schema `/tmp/w.db`, and
the SQLite provider's hook turns that into `file://tmp/w.db`, which SQLite refuses ("invalid uri
authority: tmp"). README.md ("Add it to an existing Airflow") says so; this test notices if that changes.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from urllib.parse import quote

import pytest
from airflow.sdk import Connection
from demo_warehouse.db import Target
from demo_warehouse_refresh import warehouse_target


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "warehouse.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE segment_profiles (customer_id TEXT)")
        db.execute("INSERT INTO segment_profiles VALUES ('c1')")
    return path


def _forms(path: Path) -> dict[str, str]:
    return {
        "json": json.dumps({"conn_type": "sqlite", "host": str(path)}),
        "uri, three slashes": f"sqlite:///{str(path).lstrip('/')}",
        "uri, encoded host": f"sqlite://{quote(str(path), safe='')}",
    }


@pytest.mark.parametrize("form", ["json", "uri, three slashes", "uri, encoded host"])
def test_accepted_forms_reach_the_warehouse(form: str, warehouse: Path, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", _forms(warehouse)[form])
    conn = Connection.get("warehouse")
    rows = conn.get_hook().get_conn().execute("SELECT customer_id FROM segment_profiles").fetchall()
    assert rows == [("c1",)]  # the export's extract step connects exactly so
    # The demo warehouse refresh DAG finds the same file for its seed tool.
    assert Path(Target.parse(warehouse_target(conn)).location) == warehouse


def test_sqlalchemy_style_four_slashes_is_not_an_airflow_sqlite_uri(warehouse: Path, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", f"sqlite:///{warehouse}")  # i.e. sqlite:////tmp/...
    conn = Connection.get("warehouse")
    assert (conn.host, conn.schema) == ("", str(warehouse))
    with pytest.raises(sqlite3.OperationalError, match="invalid uri authority"):
        conn.get_hook().get_conn()
