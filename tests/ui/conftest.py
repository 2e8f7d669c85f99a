"""Real parts for the exports page: exports run with dag.test() against the local Mailchimp server (one
real run, one dry run, one that fails), then an `airflow api-server` process with the page's plugin, on a
free port, with two users: `editor` (role User: edit access to the export DAGs) and `viewer` (role Viewer)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from mailchimp_emulator.testing import EmulatorProcess, free_port
from support import DEMO_DEFINITION, mailchimp_connection, write_definition

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEMO_AUDIENCES = ROOT / "include" / "demo" / "mailchimp-audiences.yaml"
UI_DAGS = Path(__file__).resolve().parent / "dags"
LOCAL_BUNDLE = "airflow.dag_processing.bundles.local.LocalDagBundle"
PASSWORDS = {"editor": "editor-pass-1", "viewer": "viewer-pass-1"}
# Mailchimp refuses placeholder domains; a formula-like value must reach a CSV cell disarmed.
REFUSED_BY_MAILCHIMP = [f"someone{i}@example.com" for i in range(5)]
FORMULA_EMAIL = "=HYPERLINK(evil)"
PLUGIN_SHIM = "from mailchimp_provider.ui.plugin import MailchimpExportsPlugin  # noqa: F401\n"


@dataclass
class ExportRuns:
    dag_id: str
    export: str
    real: str  # run ids
    dry: str
    failed: str
    staging: Path
    refused_emails: tuple[str, ...] = tuple(REFUSED_BY_MAILCHIMP)
    formula_email: str = FORMULA_EMAIL

    def report(self, run_id: str) -> dict:
        from mailchimp_provider.export.staging import safe_name

        return json.loads(
            (self.staging / self.export / "runs" / safe_name(run_id) / "report.json").read_text()
        )


def _airflow(*args: str) -> None:
    subprocess.run([str(BIN / "airflow"), *args], check=True, capture_output=True, env=os.environ)


def add_awkward_profiles(warehouse: Path) -> None:
    conn = sqlite3.connect(warehouse)
    for i, email in enumerate([*REFUSED_BY_MAILCHIMP, FORMULA_EMAIL]):
        conn.execute(
            "INSERT INTO customer_profiles (customer_id, email, country, loyalty_tier, signup_date, updated_at) "
            "VALUES (?, ?, 'DE', 'gold', '2024-01-01', '2024-01-01')",
            (f"Z{i:07d}", email),
        )
        conn.execute("INSERT INTO segment_memberships VALUES ('vip_customers', ?)", (f"Z{i:07d}",))
    conn.commit()
    conn.close()


@pytest.fixture(scope="package")
def export_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExportRuns]:
    """Three runs of one export, in this order: real, dry, failed (the warehouse is gone)."""
    from mailchimp_exports import build_export_dag

    tmp = tmp_path_factory.mktemp("exports-page")
    warehouse = tmp / "warehouse.db"
    subprocess.run(
        [str(BIN / "seed-demo-warehouse"), "--target", f"sqlite:///{warehouse}", "--profiles", "2000"]
        + ["--seed", "7"],
        check=True,
        capture_output=True,
    )
    add_awkward_profiles(warehouse)
    _airflow("db", "migrate")
    _airflow("pools", "set", "mailchimp_api", "8", "Mailchimp connections", "--include-deferred")
    config = yaml.safe_load(DEMO_AUDIENCES.read_text())
    with EmulatorProcess(tmp / "mailchimp", config=config) as server, pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_CONN_MAILCHIMP_DEFAULT", mailchimp_connection(server))
        mp.setenv("AIRFLOW_CONN_DEMO_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(warehouse)}))
        mp.setenv("MAILCHIMP_EXPORT_BASE_PATH", str(tmp / "staging"))
        # the asset test's downstream DAG: stored and unpaused before the export updates the audience
        bundles = json.loads(os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"])
        bundles.append({"name": "ui-dags", "classpath": LOCAL_BUNDLE, "kwargs": {"path": str(UI_DAGS)}})
        mp.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
        _airflow("dags", "reserialize", "--bundle-name", "ui-dags")
        _airflow("dags", "unpause", "mailchimp_audience_listener")
        definition = write_definition(
            mp,
            tmp / "exports",
            export="exports_page_test",  # runs of its own: the metadata DB is shared with other tests
            segments=["newsletter_opt_in", "vip_customers"],
            job_size=1000,
            max_profiles=100000,
            retries=0,
        )
        dag = build_export_dag(definition, DEMO_DEFINITION)
        real = dag.test()
        dry = dag.test(run_conf={"dry_run": True})
        assert (real.state, dry.state) == ("success", "success")
        mp.setenv("AIRFLOW_CONN_DEMO_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(tmp)}))
        failed = dag.test()
        assert failed.state == "failed"
        yield ExportRuns(
            definition.dag_id, definition.export, real.run_id, dry.run_id, failed.run_id, tmp / "staging"
        )


@dataclass
class ApiServer:
    url: str
    env: dict[str, str]  # what the server runs with: other processes of the deployment need the same
    passwords: dict[str, str]

    def token(self, user: str) -> str:
        request = urllib.request.Request(
            f"{self.url}/auth/token",
            data=json.dumps({"username": user, "password": self.passwords[user]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())["access_token"]

    def get(self, path: str, user: str | None = None) -> tuple[int, bytes, dict[str, str]]:
        headers = {"Authorization": f"Bearer {self.token(user)}"} if user else {}
        request = urllib.request.Request(f"{self.url}{path}", headers=headers)
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(request, timeout=60) as answer:
                return answer.status, answer.read(), dict(answer.headers)
        except urllib.error.HTTPError as refused:
            return refused.code, refused.read(), dict(refused.headers)

    def json(self, path: str, user: str) -> dict:
        status, body, _ = self.get(path, user)
        assert status == 200, (status, body[:500])
        return json.loads(body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture(scope="package")
def api_server(export_runs: ExportRuns, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """`airflow api-server` with the plugin loaded from a plugins folder, as without the package installed."""
    tmp = tmp_path_factory.mktemp("api-server")
    (tmp / "plugins").mkdir()
    (tmp / "plugins" / "mailchimp_exports_plugin.py").write_text(PLUGIN_SHIM)
    (tmp / "passwords.json").write_text(json.dumps(PASSWORDS))
    port = free_port()
    env = {
        **os.environ,
        "MAILCHIMP_EXPORT_BASE_PATH": str(export_runs.staging),
        "MAILCHIMP_EXPORTS_DIR": str(export_runs.staging.parent / "exports"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(tmp / "plugins"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "editor:user,viewer:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(tmp / "passwords.json"),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API_AUTH__JWT_SECRET": "exports-page-tests-secret",
        "AIRFLOW__API__SECRET_KEY": "exports-page-tests-secret",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "plugins"), os.environ.get("PYTHONPATH")) if p),
    }
    log = (tmp / "api-server.log").open("wb")
    process = subprocess.Popen(
        [str(BIN / "airflow"), "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"api-server exited: {(tmp / 'api-server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("api-server did not answer within 120 s") from None
                time.sleep(1)
        yield ApiServer(url, env, PASSWORDS)
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(timeout=30)
        log.close()
        shutil.copy(tmp / "api-server.log", tmp_path_factory.getbasetemp() / "api-server.log")
