"""docker-compose.yaml: valid Compose, the services of Airflow's Celery deployment, the init steps, the
connections users rely on, the demo as an optional profile.

No Docker engine here: the file is checked against the Compose Specification's JSON schema (the copy that
check-jsonschema ships, a PyPI package, so nothing fetched is committed), by `docker compose config` (or,
where the plugin cannot be installed, as here, Debian's Compose v1 `docker-compose config`), and the init
steps run for real against a throw-away Airflow home.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",
}
DEMO_SERVICES = {"mailchimp-emulator", "demo-warehouse", "demo-setup"}
DEMO_EXPORT = "mailchimp_export__demo_vip_and_churn"


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text(encoding="utf-8"))


def script(service: str) -> str:
    """A service's bash script as the container runs it (Compose turns `$$` into `$`)."""
    command = compose()["services"][service]["command"]
    assert command[0] == "-c" or command[:2] == ["bash", "-c"]
    return command[-1].replace("$$", "$")


def test_valid_by_the_compose_specification_schema() -> None:
    schema = json.loads(
        files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    )
    assert schema["title"] == "Compose Specification"
    validator = jsonschema.validators.validator_for(schema)(schema, format_checker=jsonschema.FormatChecker())
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose())]
    assert errors == []
    # The schema does bite: an unknown service key is refused.
    broken = compose()
    broken["services"]["redis"]["restart_policy"] = "always"
    assert not validator.is_valid(broken)


def test_services_of_a_celery_deployment_and_the_optional_demo() -> None:
    services = compose()["services"]
    assert set(services) == {
        "postgres",
        "redis",
        "airflow-init",
        "airflow-cli",
        *AIRFLOW_SERVICES,
        *DEMO_SERVICES,
    }
    assert {name: services[name]["command"] for name in AIRFLOW_SERVICES} == AIRFLOW_SERVICES
    assert {name for name, s in services.items() if "demo" in s.get("profiles", [])} == DEMO_SERVICES
    assert services["airflow-cli"]["profiles"] == ["debug"]
    # Without the demo profile nothing waits for a demo service.
    for name, service in services.items():
        if name not in DEMO_SERVICES:
            assert not set(service.get("depends_on", {})) & DEMO_SERVICES, name
    for name in (*AIRFLOW_SERVICES, "airflow-init"):
        assert services[name]["build"]["target"] == "airflow", "the deployment image, without the demo"
        assert "healthcheck" in services[name] or name == "airflow-init"
    for name in ("mailchimp-emulator", "demo-setup"):
        assert services[name]["build"]["target"] == "demo"
    emulator = services["mailchimp-emulator"]
    assert emulator["entrypoint"][-1] == "mailchimp-emulator"
    assert emulator["command"][:6] == ["--host", "0.0.0.0", "--port", "8025", "--state", "/data/mailchimp.db"]
    assert (ROOT / "include" / "demo" / emulator["command"][-1].rsplit("/", 1)[-1]).is_file()


def test_airflow_settings_shared_by_every_airflow_service() -> None:
    services = compose()["services"]
    for name in (*AIRFLOW_SERVICES, "airflow-init", "demo-setup"):
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://:@redis:6379/0"
        assert env["AIRFLOW__CORE__FERNET_KEY"].startswith("${AIRFLOW_FERNET_KEY:?"), (
            "a Fernet key is required"
        )
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"].startswith("${AIRFLOW_JWT_SECRET:?")
        assert env["AIRFLOW__CORE__TEST_CONNECTION"] == "Enabled"
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/airflow/project/dags"
        assert env["MAILCHIMP_EXPORT_BASE_PATH"] == "/opt/airflow/staging"
    # Export definitions are mounted for live edits; the DAG files come from the image (no demo DAG there).
    mounts = services["airflow-scheduler"]["volumes"]
    assert "./include/exports:/opt/airflow/project/include/exports:ro" in mounts
    assert not [m for m in mounts if m.startswith("./dags")]
    assert services["airflow-worker"]["environment"]["DUMB_INIT_SETSID"] == "0"


def test_init_creates_pool_and_json_connections() -> None:
    init = script("airflow-init")
    assert "airflow db migrate" in init
    assert "airflow pools set mailchimp_api 8" in init and "--include-deferred" in init
    assert "airflow connections import" in init
    connections = json.loads(compose()["services"]["airflow-init"]["environment"]["DEMO_CONNECTIONS_JSON"])
    mailchimp = connections["mailchimp_default"]
    assert mailchimp["conn_type"] == "mailchimp"
    assert mailchimp["host"] == "http://mailchimp-emulator:8025"
    assert mailchimp["password"] == "0123456789abcdef0123456789abcdef-us6"
    assert mailchimp["extra"] == {"privacy_consent": True, "allowed_exports": "*"}
    warehouse = connections["demo_warehouse"]
    assert (warehouse["conn_type"], warehouse["host"], warehouse["schema"]) == (
        "postgres",
        "demo-warehouse",
        "warehouse",
    )
    warehouse_db = compose()["services"]["demo-warehouse"]["environment"]
    assert (
        warehouse_db["POSTGRES_USER"],
        warehouse_db["POSTGRES_PASSWORD"],
        warehouse_db["POSTGRES_DB"],
    ) == (
        warehouse["login"],
        warehouse["password"],
        warehouse["schema"],
    )
    setup = script("demo-setup")
    assert (
        "seed-demo-warehouse --target postgresql://warehouse:warehouse@demo-warehouse:5432/warehouse" in setup
    )
    assert f"airflow dags unpause {DEMO_EXPORT}" in setup


STATE = Path(__file__).with_name("airflow_state.py")


def _probe(env: dict[str, str], *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(STATE), *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _bash(env: dict[str, str], text: str) -> None:
    done = subprocess.run(["bash", "-c", text], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_init_and_demo_setup_steps_run(tmp_path: Path) -> None:
    """airflow-init's script, and demo-setup's DAG steps, on a throw-away Airflow home (SQLite metadata)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "MAILCHIMP_")) and k != "PYTHONPATH"
    }
    env |= {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "plugins"), os.environ.get("PYTHONPATH")) if p),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "MAILCHIMP_EXPORTS_DIR": str(ROOT / "include" / "exports"),
        "DEMO_CONNECTIONS_JSON": compose()["services"]["airflow-init"]["environment"][
            "DEMO_CONNECTIONS_JSON"
        ],
    }
    _bash(env, script("airflow-init"))
    first = _probe(env, "http://edited")  # then edited, as in the UI
    assert first["pool"] == [8, True]
    assert first["connections"] == {
        "mailchimp_default": ["mailchimp", "http://mailchimp-emulator:8025"],
        "demo_warehouse": ["postgres", "demo-warehouse"],
    }

    # The next start keeps the edited connection and imports the ones given instead of the demo's.
    env["AIRFLOW_CONNECTIONS_JSON"] = json.dumps(
        {
            "mailchimp_default": {"conn_type": "mailchimp"},
            "crm": {"conn_type": "sqlite", "host": "/data/crm.db"},
        }
    )
    _bash(env, script("airflow-init"))
    # demo-setup's DAG steps (its seeding needs the demo warehouse service). New export DAGs start paused
    # even where the deployment's default is not to; demo-setup unpauses the demo export.
    reserialize, unpause = [
        line for line in script("demo-setup").splitlines() if line.startswith("airflow dags")
    ]
    _bash(env | {"AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False"}, reserialize)
    second = _probe(env)
    assert second["connections"] == {
        "mailchimp_default": ["mailchimp", "http://edited"],
        "demo_warehouse": ["postgres", "demo-warehouse"],
        "crm": ["sqlite", "/data/crm.db"],
    }
    assert second["paused"] == {DEMO_EXPORT: True, "demo_warehouse_refresh": False}
    _bash(env, unpause)
    assert _probe(env)["paused"][DEMO_EXPORT] is False


def _compose() -> list[str] | None:
    """The Compose implementation installed: the `docker compose` plugin, else Debian's `docker-compose`."""
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def _installable() -> list[str]:
    """Which Compose packages this machine's apt sources offer."""
    if not shutil.which("apt-cache"):
        return []
    found = []
    for package in ("docker-compose-plugin", "docker-compose"):
        policy = subprocess.run(
            ["apt-cache", "policy", package], capture_output=True, text=True, timeout=60
        ).stdout
        if "Candidate:" in policy and "Candidate: (none)" not in policy:
            found.append(package)
    return found


def test_docker_compose_config_accepts_it(tmp_path: Path) -> None:
    """`docker compose config` (or Compose v1's `docker-compose config`, Debian's package, where the plugin
    cannot be installed) parses, interpolates and validates the file as Compose itself does."""
    command = _compose()
    if command is None:
        offered = _installable()
        if offered and os.environ.get("CI") == "true":
            pytest.fail(
                f"{' or '.join(offered)} can be installed but is not: .ci/run should apt-get install it"
            )
        pytest.skip(
            f"no Compose installed (apt-get install {offered[0]})"
            if offered
            else "no Compose can be installed here: no apt candidate for docker-compose-plugin or docker-compose"
        )
    empty = tmp_path / "empty.env"  # a developer's own .env must not fill the gaps checked below
    empty.write_text("")
    base = [*command, "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yaml")]
    base += ["--env-file", str(empty)]
    env = os.environ | {"AIRFLOW_FERNET_KEY": "k" * 43 + "=", "AIRFLOW_JWT_SECRET": "test-secret"}
    done = subprocess.run(
        [*base, "--profile", "demo", "config"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)["services"]
    assert set(resolved) >= set(AIRFLOW_SERVICES) | DEMO_SERVICES | {"airflow-init"}
    assert resolved["airflow-worker"]["environment"]["AIRFLOW__CORE__FERNET_KEY"] == env["AIRFLOW_FERNET_KEY"]
    # The shell's variables were left to the shell (the output is a compose file again: `$` shows as `$$`),
    # Compose's own were filled in.
    assert (
        '"$${AIRFLOW_CONNECTIONS_JSON:-$$DEMO_CONNECTIONS_JSON}"' in resolved["airflow-init"]["command"][-1]
    )
    assert "--profiles 100000" in resolved["demo-setup"]["command"][-1]
    missing = subprocess.run(
        [*base, "config", "-q"],
        capture_output=True,
        text=True,
        env={k: v for k, v in env.items() if k != "AIRFLOW_FERNET_KEY"},
        timeout=120,
    )
    assert missing.returncode != 0 and "AIRFLOW_FERNET_KEY" in missing.stderr
