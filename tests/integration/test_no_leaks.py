"""A full export with a known key and token, then every log line, XCom value, rendered field, metadata
row and staged file is searched for them: none may be found. Emails must only appear masked in logs."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest
from mailchimp_provider.export.definition import load_definition
from support import DEMO_DEFINITION, run_export


def _metadata_db_text() -> str:
    """Every text-ish value of every table in the Airflow metadata DB."""
    conn = sqlite3.connect(Path(os.environ["AIRFLOW_HOME"]) / "airflow.db")
    chunks = []
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        for row in conn.execute(f'SELECT * FROM "{table}"'):
            for value in row:
                if isinstance(value, bytes):
                    value = value.decode("utf-8", errors="replace")
                chunks.append(str(value))
    return "\n".join(chunks)


@pytest.mark.parametrize("auth", ["api_key", "oauth_token"])
def test_no_secret_or_address_leaks(
    warehouse, emulator, monkeypatch, airflow_db, capfd, tmp_path, auth
) -> None:
    """With an API key alone the calls use Basic auth with the key; with a token, Bearer (the key is
    then unused but still a secret). Either way nothing that reveals them may be found."""
    token = emulator.oauth_token
    extra = {"privacy_consent": True, "allowed_exports": "*"}
    if auth == "oauth_token":
        extra["oauth_token"] = token
    monkeypatch.setenv(
        "AIRFLOW_CONN_MAILCHIMP_DEFAULT",
        json.dumps(
            {
                "conn_type": "mailchimp",
                "host": emulator.base_url,
                "password": emulator.api_key,
                "extra": extra,
            }
        ),
    )
    report = run_export(load_definition(DEMO_DEFINITION))
    assert report["created"] > 0
    from mailchimp_provider.hooks.mailchimp import MailchimpHook

    scheme = MailchimpHook().config.authorization.partition(" ")[0]
    assert scheme == {"api_key": "Basic", "oauth_token": "Bearer"}[auth]  # the path under test was used

    secrets = [emulator.api_key, token, base64.b64encode(f"airflow:{emulator.api_key}".encode()).decode()]
    logs = capfd.readouterr()
    log_text = (
        logs.out
        + logs.err
        + "".join(p.read_text(errors="replace") for p in Path(os.environ["AIRFLOW_HOME"]).rglob("*.log"))
    )
    staging = Path(os.environ["MAILCHIMP_EXPORT_BASE_PATH"])
    staged_text = "".join(
        p.read_bytes().decode("utf-8", errors="replace") for p in staging.rglob("*") if p.is_file()
    )
    metadata = _metadata_db_text()
    for secret in secrets:
        assert secret not in log_text
        assert secret not in metadata  # XCom, rendered fields, trigger kwargs, task state store, ...
        assert secret not in staged_text

    # addresses in logs are masked: none of the exported addresses appears whole
    members = emulator.members(emulator.list_id)
    assert members
    leaked = [m["email_address"] for m in members if m["email_address"] in log_text]
    assert leaked == []

    # what staging keeps after a successful run is private and free of staged batches
    for path in staging.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
    assert not list(staging.rglob("jobs")) and not list(staging.rglob("extract"))
