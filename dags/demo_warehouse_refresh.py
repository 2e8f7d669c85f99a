"""Demo warehouse refresh: re-computes the demo segments, then updates the asset the exports wait on."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote

from airflow.sdk import DAG, Asset, Connection, task

SEGMENTS_REFRESHED = Asset("demo_warehouse_segments")
WAREHOUSE_CONN_ID = "demo_warehouse"


def warehouse_target(conn: Connection) -> str:
    """The seed tool's target URL for an Airflow SQLite or PostgreSQL connection."""
    if conn.conn_type == "sqlite":
        # The SQLite hook's own URL: the file path may be in the host (JSON form) or, from Airflow's URI
        # form sqlite:///abs/path, split over host and schema.
        return conn.get_hook().get_uri()
    user = quote(conn.login or "", safe="") + (f":{quote(conn.password, safe='')}" if conn.password else "")
    user = f"{user}@" if user else ""
    return f"postgresql://{user}{conn.host}:{conn.port or 5432}/{conn.schema}"


with DAG(
    dag_id="demo_warehouse_refresh",
    description="Refresh the demo customer segments; exports that follow the asset run afterwards",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,  # two refreshes at once would rewrite the same tables
    tags=["demo", "warehouse"],
):

    @task(outlets=[SEGMENTS_REFRESHED])
    def refresh_segments() -> dict[str, int]:
        from demo_warehouse.seed import refresh_segments as refresh

        return refresh(warehouse_target(Connection.get(WAREHOUSE_CONN_ID)))

    refresh_segments()
