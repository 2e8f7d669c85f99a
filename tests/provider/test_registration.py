"""The package registers as an Airflow provider with a Mailchimp connection type and labelled fields."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import airflow
import jsonschema
from importlib_metadata import entry_points
from mailchimp_provider import get_provider_info

BIN = Path(sys.executable).parent


def test_provider_info_is_valid_against_airflows_schema() -> None:
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)
    (entry,) = [
        e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("mailchimp_provider")
    ]
    assert entry.load()() == get_provider_info()


def test_airflow_providers_list_shows_it() -> None:
    out = subprocess.run(
        [str(BIN / "airflow"), "providers", "list", "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ,
    ).stdout
    packages = {p["package_name"]: p for p in json.loads(out[out.index("[") :])}
    assert "airflow-provider-mailchimp-segments" in packages


def test_connection_type_and_form_fields() -> None:
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    manager = ProvidersManager()
    hook = ProvidersManagerTaskRuntime().hooks["mailchimp"]
    assert hook is not None and hook.hook_name == "Mailchimp"
    assert hook.hook_class_name == "mailchimp_provider.hooks.mailchimp.MailchimpHook"
    widgets = manager.connection_form_widgets
    labels = {
        name: w.field["schema"]["title"]
        for name, w in widgets.items()
        if name.startswith("extra__mailchimp__")
    }
    assert labels == {
        "extra__mailchimp__oauth_token": "OAuth access token",
        "extra__mailchimp__data_center": "Data center",
        "extra__mailchimp__oauth_metadata_url": "OAuth metadata URL",
        "extra__mailchimp__privacy_consent": "I agree: data privacy",
        "extra__mailchimp__allowed_exports": "Who may use this connection",
    }
    assert widgets["extra__mailchimp__oauth_token"].is_sensitive
    behaviour = manager.field_behaviours["mailchimp"]
    assert behaviour["relabeling"] == {"password": "API key", "host": "Base URL (optional)"}
    assert set(behaviour["hidden_fields"]) == {"schema", "login", "port"}
