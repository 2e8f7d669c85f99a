"""Test-wide settings: an isolated Airflow home, so tests never touch a user's Airflow."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_HOME = Path(tempfile.mkdtemp(prefix="mailchimp-tests-airflow-"))
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)

os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ.setdefault("MAILCHIMP_EXPORT_BASE_PATH", str(_HOME / "staging"))
