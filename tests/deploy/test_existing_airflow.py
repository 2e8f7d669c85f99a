"""README's "Add it to an existing Airflow", followed step by step in an Airflow that has only the
provider's wheel (see airflow_venv.py): the DAG file copied alone, the connections in README's forms (the
warehouse as Airflow's three-slash SQLite URI), the pool, unpausing; then the demo export runs against the
local Mailchimp server. `airflow dags test` runs the tasks in one process (no scheduler or triggerer: the
real-services tests cover those)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from airflow_venv import ROOT, clean_env
from mailchimp_emulator.testing import EmulatorProcess

EXPORT = "mailchimp_export__demo_vip_and_churn"


@pytest.mark.slow
def test_follow_the_readme_into_a_clean_airflow(clean_venv: Path, tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.db"
    seed = [str(Path(sys.executable).parent / "seed-demo-warehouse"), "--target", f"sqlite:///{warehouse}"]
    subprocess.run([*seed, "--profiles", "2000"], check=True, capture_output=True, timeout=300)
    # 2. The DAG file alone in the DAGs folder, the definitions where MAILCHIMP_EXPORTS_DIR says.
    (tmp_path / "dags").mkdir()
    shutil.copy(ROOT / "dags" / "mailchimp_exports.py", tmp_path / "dags")
    shutil.copytree(ROOT / "include" / "exports", tmp_path / "exports")
    env = clean_env(tmp_path) | {
        "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "dags"),
        "MAILCHIMP_EXPORTS_DIR": str(tmp_path / "exports"),
        "MAILCHIMP_EXPORT_BASE_PATH": str(tmp_path / "staging"),
        "AIRFLOW_CONN_DEMO_WAREHOUSE": f"sqlite://{warehouse}",  # sqlite:/// + the path without its first /
    }

    def airflow(*args: str) -> str:
        done = subprocess.run(
            [str(clean_venv / "bin" / "python"), "-m", "airflow", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=600,
        )
        assert done.returncode == 0, (
            f"airflow {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
        return done.stdout

    config = yaml.safe_load((ROOT / "include" / "demo" / "mailchimp-audiences.yaml").read_text())
    with EmulatorProcess(tmp_path / "mailchimp", config=config) as server:
        airflow("db", "migrate")  # 3.
        mailchimp = {
            "conn_type": "mailchimp",
            "host": server.base_url,
            "password": server.api_key,
            "extra": {"privacy_consent": True, "allowed_exports": "demo_vip_and_churn"},
        }
        airflow("connections", "add", "mailchimp_default", "--conn-json", json.dumps(mailchimp))  # 4.
        airflow("pools", "set", "mailchimp_api", "8", "Mailchimp connections", "--include-deferred")  # 5.
        airflow("dags", "reserialize")
        listed = json.loads(airflow("dags", "list", "--output", "json").strip().splitlines()[-1])
        assert [(d["dag_id"], d["is_paused"]) for d in listed] == [(EXPORT, "True")], "starts paused"
        airflow("dags", "unpause", EXPORT)  # 7.
        # `airflow dags test` runs the deferred uploads' trigger in-line, where Airflow 3.3 reads connections
        # only from the environment (a real triggerer reads the metadata DB too, see tests/services): so
        # this step also gets the Mailchimp connection in its JSON form.
        env["AIRFLOW_CONN_MAILCHIMP_DEFAULT"] = json.dumps(mailchimp)
        airflow("dags", "test", EXPORT)
        members = server.members()
    reports = list((tmp_path / "staging").glob("*/runs/*/report.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    assert report["created"] > 100, report  # of 2,000 profiles, those in the two segments, checked
    assert len(members) >= report["created"]
