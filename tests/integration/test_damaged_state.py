"""A sync state file that cannot be read stops the run with a message naming the file and the way
forward, and that way works (issue 10, item 2): no wedge, no hand-editing of staging."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mailchimp_exports import build_export_dag
from support import DEMO_DEFINITION, run_export, write_definition


@pytest.mark.slow
def test_a_torn_state_file_names_itself_and_full_sync_repairs_it(
    warehouse, mailchimp_conn, airflow_db, tmp_path, monkeypatch, capfd
) -> None:
    definition = write_definition(monkeypatch, tmp_path / "exports", export="torn", retries=0)
    first = run_export(definition)
    [state] = Path(os.environ["MAILCHIMP_EXPORT_BASE_PATH"]).glob("torn/state/*/fingerprints.parquet")
    state.write_bytes(state.read_bytes()[: 32_768 // 64])  # what a full disk used to leave behind

    run = build_export_dag(definition, DEMO_DEFINITION).test()
    assert run.state == "failed"
    out = capfd.readouterr().out
    assert f"cannot read file://{state}" in out and "trigger a run with full_sync" in out

    repaired = run_export(definition, full_sync=True)
    assert repaired["created"] == 0 and repaired["updated"] == first["created"]
    assert run_export(definition)["unchanged"] == first["created"] + first["unchanged"]
