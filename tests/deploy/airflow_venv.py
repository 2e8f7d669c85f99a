"""The provider's wheel and a clean Airflow environment with only that wheel of this project.

The clean virtual environment: a new venv whose site-packages links every distribution of the development
venv *except this project's own* (the editable provider, and the development distribution with the local
Mailchimp server and the demo warehouse), then the built wheel installed into it with pip. So Airflow and
the dependencies are exactly the pinned versions (constraints.txt) a user installs, while the provider can
only come from the wheel. Installing Airflow's ~190 pinned distributions afresh would take minutes of CI's
two cores on every run and would test pip, not our wheel; `pip check` still proves the wheel's declared
dependencies are met by the pinned set.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROVIDER = "airflow-provider-mailchimp-segments"
DEV_DISTRIBUTION = "mailchimp-segments-dev"


def _ours() -> set[str]:
    """Top-level site-packages entries that belong to this project's installed distributions."""
    entries: set[str] = set()
    for dist in importlib.metadata.distributions():
        if dist.metadata["Name"] in (PROVIDER, DEV_DISTRIBUTION):
            entries.add(Path(str(dist._path)).name)  # the .dist-info folder
            entries.update(f.parts[0] for f in dist.files or () if f.parts[0] != "..")
    return entries


def clean_env(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }


def build_wheel(project: Path, folders: list[str], tmp_path_factory) -> Path:
    """Built from a copy of the sources, so no stale build/ folder in the work tree can leak into it."""
    src = tmp_path_factory.mktemp("src")
    shutil.copy(project / "pyproject.toml", src)
    for folder in folders:
        shutil.copytree(
            project / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
        )
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(src),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
        ],
        check=True,
        timeout=300,
    )
    (built,) = out.glob("*.whl")
    return built


def venv_with(wheel: Path, tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run(
        [sys.executable, "-m", "venv", "--clear", "--without-pip", str(venv)], check=True, timeout=120
    )
    (site,) = (venv / "lib").glob("python3*/site-packages")
    shared, ours = Path(sysconfig.get_paths()["purelib"]), _ours()
    assert any(name.endswith(".dist-info") for name in ours), "the project is not installed in this venv"
    for entry in shared.iterdir():
        if entry.name not in ours and entry.name != "__pycache__":
            (site / entry.name).symlink_to(entry)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    env = clean_env(venv)
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True, env=env, timeout=300
    )
    check = subprocess.run([*pip, "check"], capture_output=True, text=True, env=env, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    return venv
