"""Test-wide settings: an isolated Airflow home, so tests never touch a user's Airflow."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_HOME = Path(tempfile.mkdtemp(prefix="mailchimp-tests-airflow-"))
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)

os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
# dag.test() runs DAGs from bundles: the project's dags/ and the tests' own test DAGs.
os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
    [
        {
            "name": "dags-folder",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(ROOT / "dags")},
        },
        {
            "name": "test-dags",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(ROOT / "tests" / "integration" / "dags")},
        },
    ]
)
os.environ.setdefault("MAILCHIMP_EXPORT_BASE_PATH", str(_HOME / "staging"))


@pytest.fixture(autouse=True)
def _resume_deferred_uploads_at_once(request, monkeypatch) -> None:
    """Deferred uploads wait RESUME_NOT_BEFORE_S before their first poll, so that a real scheduler has
    seen the deferring attempt end (apache/airflow#72716). Under dag.test() worker, scheduler and
    triggerer are one process and that race cannot happen, so tests run without the wait; tests marked
    ``resume_settle`` keep it, and tests/services (real Airflow processes) are not touched by this."""
    if request.node.get_closest_marker("resume_settle") is None:
        from mailchimp_provider.operators import batch

        monkeypatch.setattr(batch, "RESUME_NOT_BEFORE_S", 0.0)
