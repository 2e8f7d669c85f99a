"""The `airflow_services` fixture: one real Airflow deployment (Celery, two workers) for the session.

Exports used by the scenarios, each into its own audience of the local Mailchimp server:
svc_manual (triggered by hand), svc_browser (triggered from the UI), svc_asset (follows the demo
warehouse refresh), svc_wide (many upload tasks, prepared in four partitions), svc_wide_local (the same on the LocalExecutor),
svc_crash (a worker killed mid-upload).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import yaml
from deployment import (
    DEMO_AUDIENCES,
    AirflowDeployment,
    export_definition,
    postgres_database,
    redis_database,
)

WAREHOUSE_PROFILES = 5000
EXPORTS = {
    "svc_manual": export_definition("svc_manual", "svc0manual"),
    "svc_browser": export_definition("svc_browser", "svc0browser"),
    "svc_asset": export_definition(
        "svc_asset", "svc0asset", schedule={"after_assets": ["demo_warehouse_segments"]}
    ),
    "svc_wide": export_definition(
        "svc_wide",
        "svc0wide",
        segments=["newsletter_opt_in"],
        job_size=500,
        max_profiles=5000,
        poll_interval_s=1,
        prepare_partitions=4,
    ),
    "svc_wide_local": export_definition(
        "svc_wide_local",
        "svc0local",
        segments=["newsletter_opt_in"],
        job_size=500,
        max_profiles=5000,
        poll_interval_s=1,
    ),
    "svc_crash": export_definition(
        "svc_crash", "svc0crash", job_size=500, max_profiles=5000, poll_interval_s=1
    ),
}


def _audiences() -> list[dict]:
    demo = yaml.safe_load(DEMO_AUDIENCES.read_text())["audiences"][0]
    names = [definition["mailchimp"]["audience_id"] for definition in EXPORTS.values()]
    return [{**demo, "id": name, "name": f"services test {name}"} for name in names]


@pytest.fixture(scope="session")
def airflow_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowDeployment]:
    import psycopg2

    try:
        psycopg2.connect(
            host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=3
        ).close()
    except psycopg2.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is required under CI: {exc}")
        pytest.skip(f"no PostgreSQL server reachable at 127.0.0.1:5432 ({str(exc).strip()})")
    base = tmp_path_factory.mktemp("airflow-services")
    with (
        postgres_database("airflow_services") as metadata_db,
        postgres_database("services_warehouse") as warehouse_db,
        redis_database() as redis_db,
    ):
        deployment = AirflowDeployment(base, metadata_db, warehouse_db, redis_db)
        try:
            try:
                deployment.start(EXPORTS, _audiences(), WAREHOUSE_PROFILES)
            except Exception as exc:
                raise AssertionError(f"{exc}\n\nService logs:\n{deployment.log_tails()}") from exc
            yield deployment
        finally:
            deployment.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A failed services test shows the end of every service's log (full logs stay in the tmp dir)."""
    outcome = yield
    report = outcome.get_result()
    deployment = item.funcargs.get("airflow_services") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(deployment, AirflowDeployment):
        report.sections.append(("Airflow services logs", deployment.log_tails()))
