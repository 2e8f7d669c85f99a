"""requirements.txt: the provider and its runtime dependencies, pinned exactly as constraints.txt pins them."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def _lines(name: str) -> list[str]:
    text = (ROOT / name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


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
