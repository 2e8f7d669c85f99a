"""The provider's wheel holds the provider and nothing else, and a plain Airflow installation finds it.

The clean virtual environment: a new venv whose site-packages links every distribution of the shared
development venv *except this project's own* (the editable provider and the development distribution with
the local Mailchimp server and the demo warehouse), then the built wheel installed into it with pip. So
Airflow and the dependencies are exactly the pinned versions (constraints.txt) a user installs, while the
provider can only come from the wheel. Installing Airflow's ~190 pinned distributions afresh would take
minutes of CI's two cores on every run and would test pip, not our wheel; `pip check` still proves the
wheel's declared dependencies are met by the pinned set.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROVIDER = "airflow-provider-mailchimp-segments"
DEV_DISTRIBUTION = "mailchimp-segments-dev"

pytestmark = pytest.mark.slow

# Runs inside the clean venv: what Airflow's providers manager makes of the installed wheel.
PROBE = """
import importlib, importlib.util, json, sys
from airflow.providers_manager import ProvidersManager
from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

hook = ProvidersManagerTaskRuntime().hooks["mailchimp"]
module, _, name = hook.hook_class_name.rpartition(".")
hook_class = getattr(importlib.import_module(module), name)
manager = ProvidersManager()
print(json.dumps({
    "hook_class": hook.hook_class_name,
    "hook_package": hook.package_name,
    "hook_file": sys.modules[hook_class.__module__].__file__,
    "testable": hook.connection_testable,
    "form_fields": sorted(k for k in manager.connection_form_widgets if "mailchimp" in k),
    "hidden_fields": manager.field_behaviours["mailchimp"]["hidden_fields"],
    "dev_modules": [m for m in ("mailchimp_emulator", "demo_warehouse") if importlib.util.find_spec(m)],
}))
"""


def _ours() -> set[str]:
    """Top-level site-packages entries that belong to this project's installed distributions."""
    entries: set[str] = set()
    for dist in importlib.metadata.distributions():
        if dist.metadata["Name"] in (PROVIDER, DEV_DISTRIBUTION):
            entries.add(Path(str(dist._path)).name)  # the .dist-info folder
            entries.update(f.parts[0] for f in dist.files or () if f.parts[0] != "..")
    return entries


def _clean_env(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }


def _build_wheel(project: Path, folders: list[str], tmp_path_factory) -> Path:
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


def _venv_with(wheel: Path, tmp_path_factory) -> Path:
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
    env = _clean_env(venv)
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True, env=env, timeout=300
    )
    check = subprocess.run([*pip, "check"], capture_output=True, text=True, env=env, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    return venv


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return _build_wheel(ROOT, ["plugins"], tmp_path_factory)


@pytest.fixture(scope="module")
def clean_venv(wheel: Path, tmp_path_factory) -> Path:
    return _venv_with(wheel, tmp_path_factory)


def test_wheel_holds_only_the_provider(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        dist_info = f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"
        assert {n.split("/")[0] for n in names} == {"mailchimp_provider", dist_info}
        assert archive.read(f"{dist_info}/top_level.txt").decode().split() == ["mailchimp_provider"]
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
        metadata = archive.read(f"{dist_info}/METADATA").decode()
    # Every module of the provider is in it (sub-packages found automatically, none forgotten) ...
    sources = {
        p.relative_to(ROOT / "plugins").as_posix()
        for p in (ROOT / "plugins" / "mailchimp_provider").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert sources <= set(names)
    assert not [n for n in names if "/tests/" in n or n.endswith((".pyc", ".db", ".parquet"))]
    # ... its only entry point is the provider's, no console scripts of the development tools.
    assert entry_points.split() == [
        "[apache_airflow_provider]",
        "provider_info",
        "=",
        "mailchimp_provider:get_provider_info",
    ]
    assert "Name: airflow-provider-mailchimp-segments" in metadata
    assert "Requires-Dist: apache-airflow>=3.3.2" in metadata


def test_clean_airflow_lists_the_provider_and_loads_the_connection_type(clean_venv: Path) -> None:
    python, env = str(clean_venv / "bin" / "python"), _clean_env(clean_venv)
    listed = subprocess.run(
        [python, "-m", "airflow", "providers", "list", "--output", "json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=clean_venv,
        timeout=300,
    )
    assert listed.returncode == 0, listed.stderr
    providers = json.loads(listed.stdout[listed.stdout.index("[") :])
    assert [p["version"] for p in providers if p["package_name"] == PROVIDER] == ["0.1.0"]

    probe = subprocess.run(
        [python, "-c", PROBE], capture_output=True, text=True, env=env, cwd=clean_venv, timeout=300
    )
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    assert found["hook_class"] == "mailchimp_provider.hooks.mailchimp.MailchimpHook"
    assert found["hook_package"] == PROVIDER and found["testable"] is True
    assert found["hook_file"].startswith(str(clean_venv)), "the hook must come from the installed wheel"
    assert {"extra__mailchimp__privacy_consent", "extra__mailchimp__allowed_exports"} <= set(
        found["form_fields"]
    )
    assert found["hidden_fields"] == ["schema", "login", "port"]
    assert found["dev_modules"] == [], "the local Mailchimp server or the demo warehouse came along"


def test_development_distribution_keeps_the_console_scripts(tmp_path_factory) -> None:
    """The local Mailchimp server and the demo warehouse: their own distribution, their commands intact."""
    dev_wheel = _build_wheel(ROOT / "include", ["mailchimp_emulator", "demo_warehouse"], tmp_path_factory)
    with zipfile.ZipFile(dev_wheel) as archive:
        assert {n.split("/")[0] for n in archive.namelist() if ".dist-info" not in n} == {
            "mailchimp_emulator",
            "demo_warehouse",
        }
    venv = _venv_with(dev_wheel, tmp_path_factory)
    for command, expected in (
        ("mailchimp-emulator", "Local Mailchimp"),
        ("seed-demo-warehouse", "--profiles"),
    ):
        shown = subprocess.run(
            [str(venv / "bin" / command), "--help"],
            capture_output=True,
            text=True,
            env=_clean_env(venv),
            timeout=60,
        )
        assert shown.returncode == 0 and expected in shown.stdout, shown.stderr
