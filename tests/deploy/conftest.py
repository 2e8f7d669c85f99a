"""Built once per test session: the provider's wheel, and a clean Airflow environment holding it."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow_venv import ROOT, build_wheel, venv_with


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(ROOT, ["plugins"], tmp_path_factory)


@pytest.fixture(scope="session")
def clean_venv(wheel: Path, tmp_path_factory) -> Path:
    return venv_with(wheel, tmp_path_factory)
