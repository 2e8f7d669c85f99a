"""The provider's wheel holds the provider and nothing else, and a plain Airflow installation finds it
(the clean virtual environment: see airflow_venv.py)."""

from __future__ import annotations

import configparser
import json
import subprocess
import zipfile
from pathlib import Path

import pytest
from airflow_venv import PROVIDER, ROOT, build_wheel, clean_env, venv_with

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


def test_wheel_holds_only_the_provider(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        dist_info = f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"
        assert {n.split("/")[0] for n in names} == {"mailchimp_provider", dist_info}
        assert archive.read(f"{dist_info}/top_level.txt").decode().split() == ["mailchimp_provider"]
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
        metadata = archive.read(f"{dist_info}/METADATA").decode()
    # Every module of the provider is in it (sub-packages found automatically, none forgotten) ...
    # (and any other file of the package, e.g. a UI plugin's assets: those need package-data in pyproject).
    sources = {
        p.relative_to(ROOT / "plugins").as_posix()
        for p in (ROOT / "plugins" / "mailchimp_provider").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    assert sources <= set(names)
    assert not [n for n in names if "/tests/" in n or n.endswith((".pyc", ".db", ".parquet"))]
    # ... its entry points are the provider's and its UI plugins', no console scripts of the development tools.
    groups = configparser.ConfigParser(delimiters=("=",))
    groups.read_string(entry_points)
    assert set(groups.sections()) == {"apache_airflow_provider", "airflow.plugins"}
    assert dict(groups["apache_airflow_provider"]) == {
        "provider_info": "mailchimp_provider:get_provider_info"
    }
    assert all(v.startswith("mailchimp_provider.") for v in groups["airflow.plugins"].values())
    assert "Name: airflow-provider-mailchimp-segments" in metadata
    assert "Requires-Dist: apache-airflow>=3.3.2" in metadata


def test_clean_airflow_lists_the_provider_and_loads_the_connection_type(clean_venv: Path) -> None:
    python, env = str(clean_venv / "bin" / "python"), clean_env(clean_venv)
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
    dev_wheel = build_wheel(ROOT / "include", ["mailchimp_emulator", "demo_warehouse"], tmp_path_factory)
    with zipfile.ZipFile(dev_wheel) as archive:
        assert {n.split("/")[0] for n in archive.namelist() if ".dist-info" not in n} == {
            "mailchimp_emulator",
            "demo_warehouse",
        }
    venv = venv_with(dev_wheel, tmp_path_factory)
    for command, expected in (
        ("mailchimp-emulator", "Local Mailchimp"),
        ("seed-demo-warehouse", "--profiles"),
    ):
        shown = subprocess.run(
            [str(venv / "bin" / command), "--help"],
            capture_output=True,
            text=True,
            env=clean_env(venv),
            timeout=60,
        )
        assert shown.returncode == 0 and expected in shown.stdout, shown.stderr
