"""The exports page registers once: through the package's `airflow.plugins` entry point, and never a
second time from the project's plugins folder (docker-compose and `make demo` point Airflow at it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from airflow.api_fastapi.app import RESERVED_URL_PREFIXES
from mailchimp_provider.ui.plugin import MailchimpExportsPlugin

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def plugins_seen_by_airflow(plugins_folder: Path) -> list[dict]:
    env = {**os.environ, "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins_folder)}
    out = subprocess.run(
        [str(BIN / "airflow"), "plugins", "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=120,
    ).stdout
    return json.loads(out[out.index("[") :]) if "[" in out else []


def test_the_package_entry_point_names_the_plugin() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    entry = pyproject["project"]["entry-points"]["airflow.plugins"]["mailchimp_exports"]
    assert entry == f"{MailchimpExportsPlugin.__module__}:{MailchimpExportsPlugin.__name__}"


def test_the_plugin_mounts_an_app_and_a_nav_entry() -> None:
    (app,) = MailchimpExportsPlugin.fastapi_apps
    assert not any(app["url_prefix"].startswith(p) for p in RESERVED_URL_PREFIXES)
    (view,) = MailchimpExportsPlugin.external_views
    assert view["href"] == f"{app['url_prefix']}/" and view["url_route"] and view["destination"] == "nav"


def test_a_plugins_folder_importing_it_loads_it_once(tmp_path) -> None:
    (tmp_path / "mailchimp.py").write_text(
        "from mailchimp_provider.ui.plugin import MailchimpExportsPlugin\n"
    )
    names = [p["name"] for p in plugins_seen_by_airflow(tmp_path)]
    assert names.count("mailchimp_exports") == 1


def test_the_project_plugins_folder_does_not_load_it_again() -> None:
    # The installed package's entry point registers it; were the folder to register it too, Airflow
    # would list it twice (or an "already registered" plugin import error).
    seen = [p for p in plugins_seen_by_airflow(ROOT / "plugins") if p["name"] == "mailchimp_exports"]
    assert len(seen) == 1
    assert "EntryPoint(name='mailchimp_exports'" in seen[0]["source"]
