"""docker-compose.yaml: the services, the init steps and the connections users rely on."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text(encoding="utf-8"))


def test_services_and_init_steps() -> None:
    services = compose()["services"]
    assert set(services) == {
        "postgres", "mailchimp-emulator", "airflow-init", "airflow-apiserver", "airflow-scheduler",
        "airflow-dag-processor", "airflow-triggerer",
    }  # fmt: skip
    assert [services[name]["command"] for name in ("airflow-apiserver", "airflow-scheduler")] == [
        "api-server",
        "scheduler",
    ]
    init = services["airflow-init"]["command"][-1]
    assert "airflow db migrate" in init
    assert "airflow pools set mailchimp_api 8" in init and "--include-deferred" in init
    assert "seed-demo-warehouse --target postgresql://" in init
    emulator = services["mailchimp-emulator"]
    assert emulator["entrypoint"][-1] == "mailchimp-emulator"
    assert emulator["command"][:6] == ["--host", "0.0.0.0", "--port", "8025", "--state", "/data/mailchimp.db"]
    init_sql = services["postgres"]["volumes"][1].split(":")[0]
    assert (ROOT / init_sql).is_file()


def test_connections_are_json_airflow_connections() -> None:
    environment = compose()["services"]["airflow-scheduler"]["environment"]
    assert environment["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/airflow/project/dags"
    mailchimp = json.loads(environment["AIRFLOW_CONN_MAILCHIMP_DEFAULT"])
    assert mailchimp["conn_type"] == "mailchimp"
    assert mailchimp["host"] == "http://mailchimp-emulator:8025"
    assert mailchimp["password"] == "0123456789abcdef0123456789abcdef-us6"
    assert mailchimp["extra"] == {"privacy_consent": True, "allowed_exports": "*"}
    warehouse = json.loads(environment["AIRFLOW_CONN_DEMO_WAREHOUSE"])
    assert (warehouse["conn_type"], warehouse["host"], warehouse["schema"]) == (
        "postgres",
        "postgres",
        "warehouse",
    )
