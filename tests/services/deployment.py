"""A real Airflow 3.3 deployment on loopback, for the services tests.

PostgreSQL metadata database (a fresh database, dropped afterwards), `airflow api-server`, `scheduler`,
`dag-processor`, `triggerer` and two CeleryExecutor workers on the machine's Redis (a Redis database
number nobody else uses), the local Mailchimp server and a PostgreSQL demo warehouse. Every process runs
in its own process group so that stopping (or crashing, for the worker-kill test) takes its children too.
Logs live under the pytest tmp dir and are printed when a test fails.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
import yaml
from mailchimp_emulator.testing import EmulatorProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEMO_DEFINITION = ROOT / "include" / "exports" / "demo_vip_and_churn.yaml"
DEMO_AUDIENCES = ROOT / "include" / "demo" / "mailchimp-audiences.yaml"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
REDIS = ("127.0.0.1", 6379)
ADMIN = ("admin", "admin-" + secrets.token_hex(4))
POOL = "mailchimp_api"
WORKERS = ("worker1", "worker2")
WORKER_CONCURRENCY = 2
HEARTBEAT_TIMEOUT_S = 20  # a task whose worker died is noticed after this (default 300)
TERMINAL = {"success", "failed"}
LOCAL_EXECUTOR_SUFFIX = "_local"  # exports whose name ends so run on the LocalExecutor (as `make airflow`)
LOCAL_EXECUTOR_POLICY = f"""
def task_policy(task):
    if task.dag_id.endswith("{LOCAL_EXECUTOR_SUFFIX}"):
        if hasattr(task, "partial_kwargs"):  # mapped
            task.partial_kwargs["executor"] = "LocalExecutor"
        else:
            task.executor = "LocalExecutor"
"""


class ServicesError(AssertionError):
    """A service did not start or a wait ran out; the message names what and for how long."""


def wait_until(what: str, check: Callable[[], Any], seconds: float, every: float = 0.5) -> Any:
    """Call `check` until it returns something truthy; fail naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    last: Any = None
    while True:
        try:
            last = check()
        except (requests.RequestException, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise ServicesError(f"timed out after {seconds:.0f}s waiting for {what} (last: {last!r})")
        time.sleep(every)


def _pg_admin():
    import psycopg2

    conn = psycopg2.connect(connect_timeout=3, dbname="postgres", **PG)
    conn.autocommit = True
    return conn


@contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """A fresh PostgreSQL database, dropped (with its connections) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = _pg_admin()
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@contextmanager
def redis_database() -> Iterator[int]:
    """An empty Redis database number, claimed with a marker key and emptied afterwards."""
    import redis

    for number in range(15, 0, -1):
        client = redis.Redis(*REDIS, db=number)
        if client.dbsize() == 0 and client.set("mailchimp-services-tests", os.getpid(), nx=True):
            try:
                yield number
            finally:
                client.flushdb()
                client.close()
            return
        client.close()
    raise ServicesError("no empty Redis database (1-15) on 127.0.0.1:6379")


def export_definition(name: str, audience: str, **changes: Any) -> dict[str, Any]:
    """A variant of the demo export definition for one scenario."""
    raw = yaml.safe_load(DEMO_DEFINITION.read_text())
    raw.update(export=name, description=f"services test: {name}", schedule={}, retry_delay_s=1)
    raw["mailchimp"]["audience_id"] = audience
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            raw[section][field] = value
        else:
            raw[section] = value
    return raw


def max_overlap(intervals: list[tuple[str, str]]) -> int:
    """The most intervals (ISO start, end) open at one moment."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = current = 0
    for _, step in events:
        current += step
        most = max(most, current)
    return most


def plugin_entry_points(folder: Path) -> Path | None:
    """The project's `airflow.plugins` entry points that the installed (editable) metadata lacks, as a
    small distribution in `folder`, so the deployment loads the plugins as an installed provider would.
    None when the installed metadata already has them all (after `pip install -e .`)."""
    import importlib.metadata
    import tomllib

    wanted = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    wanted = wanted.get("airflow.plugins", {})
    installed = {ep.name for ep in importlib.metadata.entry_points(group="airflow.plugins")}
    missing = {name: target for name, target in wanted.items() if name not in installed}
    if not missing:
        return None
    info = folder / "mailchimp_services_plugins-0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mailchimp-services-plugins\nVersion: 0\n")
    lines = [f"{name} = {target}" for name, target in missing.items()]
    (info / "entry_points.txt").write_text("[airflow.plugins]\n" + "\n".join(lines) + "\n")
    return folder


class Service:
    """One long-running Airflow (or other) process in its own process group, logging to a file."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name, self.cmd, self.env = name, cmd, env
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start {time.strftime('%H:%M:%S')}: {' '.join(self.cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group at once, as a crashed machine or container would."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.proc = None

    def terminate(self) -> None:
        """SIGTERM the group; `stop` waits for it."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the group, SIGKILL what is left after `timeout`."""
        if self.proc is None:
            return
        self.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # children that outlived their parent
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.proc = None

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class AirflowDeployment:
    """The running deployment and what the tests ask of it (REST API v2, metadata DB, workers)."""

    def __init__(self, base: Path, metadata_db: str, warehouse_db: str, redis_db: int) -> None:
        self.base = base
        self.home = base / "airflow"
        self.logs = base / "logs"
        self.exports_dir = base / "exports"
        self.staging = base / "staging"
        for folder in (self.home, self.logs, self.exports_dir, self.staging):
            folder.mkdir(parents=True, exist_ok=True)
        self.metadata_db, self.warehouse_db, self.redis_db = metadata_db, warehouse_db, redis_db
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.emulator: EmulatorProcess | None = None
        self.services: dict[str, Service] = {}
        self._session = requests.Session()

    # ---- set-up ----------------------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        from cryptography.fernet import Fernet

        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MAILCHIMP_"))}
        passwords = self.home / "passwords.json"
        passwords.write_text(json.dumps({ADMIN[0]: ADMIN[1]}))
        settings = self.home / "config" / "airflow_local_settings.py"  # [core] executor's 2nd entry
        settings.parent.mkdir(exist_ok=True)
        settings.write_text(LOCAL_EXECUTOR_POLICY)
        pythonpath = [ROOT / "plugins", ROOT / "include", Path(__file__).parent, settings.parent]
        if shim := plugin_entry_points(self.base / "entry-points"):
            pythonpath.append(shim)
        env.update(
            {
                "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
                "PYTHONPATH": os.pathsep.join(str(p) for p in pythonpath),
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor,LocalExecutor",
                "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN[0]}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "worker_name.hostname",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_url("postgresql+psycopg2"),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS[0]}:{REDIS[1]}/{self.redis_db}",
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.metadata_url("postgresql"),
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_S),
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "MAILCHIMP_EXPORTS_DIR": str(self.exports_dir),
                "MAILCHIMP_EXPORT_BASE_PATH": str(self.staging),
                "SERVICES_WORKER_NAME": "",
            }
        )
        return env

    def metadata_url(self, scheme: str) -> str:
        return f"{scheme}://{PG['user']}@{PG['host']}:{PG['port']}/{self.metadata_db}"

    def airflow(self, *args: str, timeout: float = 180.0) -> str:
        """Run an `airflow` CLI command against the deployment's database."""
        result = subprocess.run(
            [str(BIN / "airflow"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise ServicesError(f"airflow {' '.join(args[:3])} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def start(self, exports: dict[str, dict], audiences: list[dict], warehouse_profiles: int) -> None:
        self.env = self.environment()
        for name, definition in exports.items():
            (self.exports_dir / f"{name}.yaml").write_text(yaml.safe_dump(definition))
        self.emulator = EmulatorProcess(
            self.base / "mailchimp",
            config={"audiences": audiences, "batch_pace": float(os.environ.get("SVC_PACE", "0.5"))},
        ).start()
        warehouse = f"postgresql://{PG['user']}@{PG['host']}:{PG['port']}/{self.warehouse_db}"
        seed = subprocess.Popen(  # beside the metadata migration
            [str(BIN / "seed-demo-warehouse"), "--target", warehouse, "--profiles", str(warehouse_profiles)]
            + ["--seed", "7"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            self.airflow("db", "migrate", timeout=300)
        finally:
            _, seed_errors = seed.communicate(timeout=300)
        if seed.returncode != 0:
            raise ServicesError(f"seeding the demo warehouse failed:\n{seed_errors.decode()}")
        self.airflow("pools", "set", POOL, "8", "Mailchimp connections", "--include-deferred")
        mailchimp = {
            "conn_type": "mailchimp",
            "description": "Local Mailchimp server (services test)",
            "host": self.emulator.base_url,
            "password": self.emulator.api_key,
            "extra": {"privacy_consent": True, "allowed_exports": "*"},
        }
        self.airflow("connections", "add", "mailchimp_default", "--conn-json", json.dumps(mailchimp))
        pg_conn = {
            "conn_type": "postgres",
            "host": PG["host"],
            "port": PG["port"],
            "login": PG["user"],
            "schema": self.warehouse_db,
        }
        self.airflow("connections", "add", "demo_warehouse", "--conn-json", json.dumps(pg_conn))

        airflow = str(BIN / "airflow")
        commands = {
            "api-server": [airflow, "api-server", "--workers", "1"],
            "scheduler": [airflow, "scheduler"],
            "dag-processor": [airflow, "dag-processor"],
            "triggerer": [airflow, "triggerer", "--skip-serve-logs"],
        }
        for name, cmd in commands.items():
            self.services[name] = Service(name, cmd, self.env, self.logs)
        for name in WORKERS:
            cmd = [airflow, "celery", "worker", "--celery-hostname", f"{name}@%h", "--skip-serve-logs"]
            cmd += ["--concurrency", str(WORKER_CONCURRENCY), "--without-mingle", "--without-gossip"]
            self.services[name] = Service(name, cmd, self.env | {"SERVICES_WORKER_NAME": name}, self.logs)
        for service in self.services.values():
            service.start()
        self.wait_healthy(timeout=180)
        for name in WORKERS:
            self.wait_worker_ready(name, timeout=120)
        for dag_id in [f"mailchimp_export__{name}" for name in exports] + ["demo_warehouse_refresh"]:
            wait_until(f"DAG {dag_id} parsed", lambda d=dag_id: self._get_ok(f"dags/{d}"), 120, every=1)

    def wait_healthy(self, timeout: float) -> None:
        def healthy() -> bool:
            for name, service in self.services.items():
                if not service.running:
                    raise ServicesError(f"{name} exited at start-up:\n{service.log_tail()}")
            answer = self._session.get(f"{self.base_url}/api/v2/monitor/health", timeout=5).json()
            return all(
                answer.get(part, {}).get("status") == "healthy"
                for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
            )

        wait_until("the API server, scheduler, triggerer and DAG processor to be healthy", healthy, timeout)
        self._login()

    def wait_worker_ready(self, name: str, timeout: float) -> None:
        service = self.services[name]

        def ready() -> bool:
            if not service.running:
                raise ServicesError(f"{name} exited at start-up:\n{service.log_tail()}")
            return " ready." in service.log_path.read_text(errors="replace").rpartition("===== start")[2]

        wait_until(f"Celery {name} to be ready", ready, timeout)

    def stop(self) -> None:
        for service in self.services.values():  # all at once: Celery's warm shutdown takes a while
            service.terminate()
        deadline = time.monotonic() + 30
        for service in self.services.values():
            service.stop(timeout=max(0.0, deadline - time.monotonic()))
        if self.emulator is not None:
            self.emulator.stop()
        self._session.close()

    def log_tails(self, lines: int = 80) -> str:
        parts = [
            f"----- {name} ({s.log_path}) -----\n{s.log_tail(lines)}" for name, s in self.services.items()
        ]
        if self.emulator is not None:
            parts.append(f"----- mailchimp emulator -----\n{self.emulator.log_tail(lines)}")
        return "\n".join(parts)

    # ---- REST API v2 -----------------------------------------------------------------------------------

    def _login(self) -> None:
        answer = self._session.post(
            f"{self.base_url}/auth/token", json={"username": ADMIN[0], "password": ADMIN[1]}, timeout=30
        )
        answer.raise_for_status()
        self.token = answer.json()["access_token"]
        self._session.headers["Authorization"] = f"Bearer {self.token}"

    def _get_ok(self, path: str) -> bool:
        return self.request("GET", path).status_code == 200

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """A REST API v2 call as the admin user, whatever its answer."""
        return self._session.request(method, f"{self.base_url}/api/v2/{path}", timeout=60, **kwargs)

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """A REST API v2 call that must succeed; its JSON answer."""
        answer = self.request(method, path, **kwargs)
        if answer.status_code >= 400:
            raise ServicesError(f"{method} /api/v2/{path} -> {answer.status_code}: {answer.text[:500]}")
        return answer.json() if answer.content else None

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"dags/{dag_id}", json={"is_paused": False})

    def pause(self, dag_id: str) -> None:
        self.api("PATCH", f"dags/{dag_id}", json={"is_paused": True})

    def wait_idle(self, dag_ids: list[str], timeout: float) -> None:
        """Until none of these DAGs has a queued or running run."""

        def idle() -> bool:
            return all(r["state"] in TERMINAL for dag_id in dag_ids for r in self.runs(dag_id))

        wait_until(f"no active runs of {', '.join(dag_ids)}", idle, timeout, every=1)

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        run = self.api("POST", f"dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        return str(run["dag_run_id"])

    def run(self, dag_id: str, run_id: str) -> dict:
        return self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}")

    def runs(self, dag_id: str) -> list[dict]:
        return self.api("GET", f"dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        path = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return self.api("GET", path, params={"limit": 1000})["task_instances"]

    def wait_run(
        self, dag_id: str, run_id: str, timeout: float, on_poll: Callable[[], None] | None = None
    ) -> dict:
        def finished() -> dict | None:
            if on_poll is not None:
                on_poll()
            run = self.run(dag_id, run_id)
            return run if run["state"] in TERMINAL else None

        return wait_until(f"run {run_id} of {dag_id} to finish", finished, timeout, every=1)

    def emulator_batches(self) -> dict[str, str]:
        """Every batch the local Mailchimp server has received: id -> status."""
        answer = requests.get(
            f"{self.emulator.api_url}/batches",
            params={"count": 1000},
            auth=("anystring", self.emulator.api_key),
            timeout=30,
        )
        answer.raise_for_status()
        return {batch["id"]: batch["status"] for batch in answer.json()["batches"]}

    # ---- metadata database -----------------------------------------------------------------------------

    def query(self, sql: str, *args: Any) -> list[tuple]:
        import psycopg2

        with psycopg2.connect(dbname=self.metadata_db, **PG) as conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()

    # ---- workers ---------------------------------------------------------------------------------------

    def kill_worker(self, name: str) -> None:
        self.services[name].kill()

    def restart_worker(self, name: str) -> None:
        self.services[name].start()
        self.wait_worker_ready(name, timeout=120)
