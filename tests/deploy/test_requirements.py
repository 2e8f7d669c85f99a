"""requirements.txt: the provider and its runtime dependencies, pinned exactly as constraints.txt pins them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from airflow_venv import ROOT, clean_env
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def _lines(name: str) -> list[str]:
    text = (ROOT / name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _pins() -> dict[str, str]:
    return {
        canonicalize_name(Requirement(line).name): line.split("==")[1] for line in _lines("constraints.txt")
    }


def test_requirements_are_the_provider_and_its_pinned_runtime_dependencies() -> None:
    provider, *dependencies = _lines("requirements.txt")
    assert provider == ".", "the provider from this repository comes first"
    pins = {
        canonicalize_name(Requirement(line).name): line.split("==")[1] for line in _lines("constraints.txt")
    }
    runtime = [
        Requirement(r)
        for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    ]
    pinned = [Requirement(line) for line in dependencies]
    # Exactly the provider's runtime dependencies; Airflow itself comes with the image.
    assert {canonicalize_name(r.name) for r in pinned} == {
        canonicalize_name(r.name) for r in runtime if r.name != "apache-airflow"
    }
    for requirement in pinned:
        name, (spec,) = canonicalize_name(requirement.name), requirement.specifier
        assert spec.operator == "==" and spec.version == pins[name], (
            f"{requirement} differs from constraints.txt"
        )
        declared = next(r for r in runtime if canonicalize_name(r.name) == name)
        assert declared.specifier.contains(spec.version), (
            f"{requirement} does not satisfy pyproject's {declared}"
        )
    airflow = next(r for r in runtime if r.name == "apache-airflow")
    assert airflow.specifier.contains(pins["apache-airflow"])


def test_development_tools_stay_out_of_the_deployment() -> None:
    names = {canonicalize_name(Requirement(line).name) for line in _lines("requirements.txt")[1:]}
    assert not names & {"mailchimp-segments-dev", "mailchimp-marketing", "pytest", "hypothesis", "ruff"}


@pytest.mark.slow
def test_requirements_install_beside_the_pinned_airflow(clean_venv: Path, tmp_path: Path) -> None:
    """README's install command, resolved offline in a clean Airflow: nothing to change but the provider."""
    for name in ("requirements.txt", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path)
    shutil.copytree(ROOT / "plugins", tmp_path / "plugins", ignore=shutil.ignore_patterns("__pycache__"))
    airflow = f"apache-airflow=={_pins()['apache-airflow']}"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(clean_venv / "bin" / "python"), "install", "--dry-run"]
        + ["--no-index", "--no-build-isolation", "--report", "-", "-q", airflow, "-r", "requirements.txt"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env(clean_venv),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    would_install = [item["metadata"]["name"] for item in json.loads(done.stdout)["install"]]
    assert would_install == ["airflow-provider-mailchimp-segments"]
