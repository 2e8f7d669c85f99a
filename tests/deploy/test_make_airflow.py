"""`make airflow` (scripts/demo.py --standalone) leaves the demo ready: pool set, demo DAGs unpaused."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STATE = Path(__file__).with_name("airflow_state.py")


@pytest.mark.slow
def test_standalone_preparation_unpauses_the_demo_dags(tmp_path: Path, monkeypatch) -> None:
    spec = importlib.util.spec_from_file_location("demo_script", ROOT / "scripts" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    # Only the project's DAGs (the tests' own bundle stays out), and the deployment default "not paused":
    # the export still starts paused until the demo unpauses it.
    monkeypatch.delenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", raising=False)
    monkeypatch.delenv("MAILCHIMP_EXPORTS_DIR", raising=False)
    env = demo.airflow_environment(tmp_path, "http://127.0.0.1:9")
    demo.prepare_airflow(env)
    demo.unpause_demo_dags(env)
    shown = subprocess.run([sys.executable, str(STATE)], capture_output=True, text=True, env=env, timeout=300)
    assert shown.returncode == 0, shown.stderr
    state = json.loads(shown.stdout.strip().splitlines()[-1])
    assert state["pool"] == [8, True]
    assert state["paused"] == {demo.DEMO_DAG: False, demo.REFRESH_DAG: False}
    assert os.environ.get("AIRFLOW_HOME") != env["AIRFLOW_HOME"]
