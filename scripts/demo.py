"""The demo: seed the embedded SQLite warehouse, start the local Mailchimp server, run the export DAG
with `airflow dags test`, print the report, stop the server. With --standalone, start Airflow's UI instead.

Everything lives under ./var (or --var): warehouse, Airflow home, staging, the server's state.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEMO_DAG = "mailchimp_export__demo_vip_and_churn"
REFRESH_DAG = "demo_warehouse_refresh"
DEMO_KEY = "0123456789abcdef0123456789abcdef-us6"
AUDIENCE_CONFIG = ROOT / "include" / "demo" / "mailchimp-audiences.yaml"
POOL = ("mailchimp_api", "8", "Mailchimp allows 10 simultaneous connections per account; 2 left as head-room")


def airflow_environment(var: Path, mailchimp_url: str) -> dict[str, str]:
    """Airflow settings and connections for the demo warehouse and the local Mailchimp server."""
    env = dict(os.environ)
    env.update(
        {
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # airflow standalone starts `airflow ...`
            "AIRFLOW_HOME": str(var / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "MAILCHIMP_EXPORT_BASE_PATH": str(var / "staging"),
            "AIRFLOW_CONN_DEMO_WAREHOUSE": json.dumps(
                {"conn_type": "sqlite", "host": str(var / "warehouse.db")}
            ),
            "AIRFLOW_CONN_MAILCHIMP_DEFAULT": json.dumps(
                {
                    "conn_type": "mailchimp",
                    "description": "Local Mailchimp server (demo)",
                    "host": mailchimp_url,
                    "password": DEMO_KEY,
                    "extra": {"privacy_consent": True, "allowed_exports": "*"},
                }
            ),
        }
    )
    return env


def run(cmd: list[str], env: dict[str, str] | None = None, quiet: bool = False) -> int:
    print("+", " ".join(cmd), flush=True)
    out = subprocess.DEVNULL if quiet else None
    return subprocess.run(cmd, env=env, stdout=out, check=False).returncode


def wait_for(url: str, seconds: float = 30.0) -> None:
    deadline = time.time() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.time() > deadline:
                raise SystemExit(f"the local Mailchimp server did not answer at {url}") from None
            time.sleep(0.2)


def start_emulator(var: Path, port: int) -> subprocess.Popen:
    log = (var / "mailchimp-emulator.log").open("ab")
    server = subprocess.Popen(
        [
            str(BIN / "mailchimp-emulator"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--state",
            str(var / "mailchimp-emulator.db"),
            "--config",
            str(AUDIENCE_CONFIG),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_for(f"http://127.0.0.1:{port}/_emulator/stats")
    print(f"Local Mailchimp server on http://127.0.0.1:{port} (log: {var / 'mailchimp-emulator.log'})")
    return server


def prepare_airflow(env: dict[str, str]) -> None:
    if run([str(BIN / "airflow"), "db", "migrate"], env, quiet=True) != 0:
        raise SystemExit("airflow db migrate failed")
    run([str(BIN / "airflow"), "pools", "set", *POOL, "--include-deferred"], env, quiet=True)


def unpause_demo_dags(env: dict[str, str]) -> None:
    """New DAGs start paused (export DAGs always do, until someone has reviewed them); the demo's are
    reviewed: parse them into Airflow's database now, then unpause them, so triggered runs start."""
    airflow = str(BIN / "airflow")
    if run([airflow, "dags", "reserialize"], env, quiet=True) != 0:
        raise SystemExit("airflow dags reserialize failed")
    for dag_id in (DEMO_DAG, REFRESH_DAG):
        if run([airflow, "dags", "unpause", dag_id], env, quiet=True) != 0:
            raise SystemExit(f"airflow dags unpause {dag_id} failed")


def store_connections(env: dict[str, str]) -> dict[str, str]:
    """For the UI: keep the demo connections in Airflow's database, where they are listed and editable,
    instead of in environment variables, which the UI cannot show."""
    airflow = str(BIN / "airflow")
    env = dict(env)
    for name in ("MAILCHIMP_DEFAULT", "DEMO_WAREHOUSE"):
        conn_id, value = name.lower(), env.pop(f"AIRFLOW_CONN_{name}")
        run([airflow, "connections", "delete", conn_id], env, quiet=True)
        run([airflow, "connections", "add", conn_id, "--conn-json", value], env, quiet=True)
    return env


def latest_report(var: Path) -> Path | None:
    reports = sorted((var / "staging").glob("*/runs/*/report.txt"), key=lambda p: p.stat().st_mtime)
    return reports[-1] if reports else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--var", type=Path, default=ROOT / "var", help="where all demo state lives")
    parser.add_argument("--profiles", type=int, default=100_000, help="demo warehouse size when seeding")
    parser.add_argument("--port", type=int, default=8025, help="port of the local Mailchimp server")
    parser.add_argument("--reseed", action="store_true", help="rebuild the demo warehouse")
    parser.add_argument("--standalone", action="store_true", help="start `airflow standalone` (UI) instead")
    args = parser.parse_args(argv)
    var = args.var.resolve()
    var.mkdir(parents=True, exist_ok=True)

    warehouse = var / "warehouse.db"
    if args.reseed or not warehouse.exists():
        seed = [
            str(BIN / "seed-demo-warehouse"),
            "--target",
            f"sqlite:///{warehouse}",
            "--profiles",
            str(args.profiles),
            "--drop",
        ]
        if run(seed) != 0:
            return 1
    env = airflow_environment(var, f"http://127.0.0.1:{args.port}")
    prepare_airflow(env)
    server = start_emulator(var, args.port)
    try:
        if args.standalone:
            print("Airflow UI: http://127.0.0.1:8080 (login details are printed by airflow standalone)")
            env = store_connections(env) | {"AIRFLOW__CORE__TEST_CONNECTION": "Enabled"}  # the Test button
            unpause_demo_dags(env)
            return run([str(BIN / "airflow"), "standalone"], env)
        code = run([str(BIN / "airflow"), "dags", "test", DEMO_DAG], env)
        report = latest_report(var)
        if report:
            print(f"\n{report.read_text()}Full report: {report.with_suffix('.json')}")
        with urllib.request.urlopen(f"http://127.0.0.1:{args.port}/_emulator/stats") as answer:
            print("Local Mailchimp server:", answer.read().decode())
        print("Export", "succeeded" if code == 0 else "FAILED", f"(exit code {code})")
        return code
    except KeyboardInterrupt:
        return 130
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
