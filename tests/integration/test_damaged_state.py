"""A state file that cannot be read stops the run with a message naming the file and the way
forward, and that way works (issue 10, item 2): no wedge, no hand-editing of staging."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from mailchimp_exports import build_export_dag
from support import DEMO_DEFINITION, run_export, write_definition


@pytest.mark.slow
def test_a_torn_state_file_names_itself_and_the_way_forward_works(
    warehouse, mailchimp_conn, airflow_db, tmp_path, monkeypatch, capfd
) -> None:
    definition = write_definition(monkeypatch, tmp_path / "exports", export="torn", retries=0)
    first = run_export(definition)
    [state] = Path(os.environ["MAILCHIMP_EXPORT_BASE_PATH"]).glob("torn/state/*/members-*.parquet")
    state.write_bytes(state.read_bytes()[: 32_768 // 64])  # what a full disk used to leave behind

    run = build_export_dag(definition, DEMO_DEFINITION).test()
    assert run.state == "failed"
    out = capfd.readouterr().out
    assert f"state file file://{state} cannot be read" in out and "delete the folder" in out
    assert "Nothing was sent" in out

    shutil.rmtree(state.parent)  # the way forward the message names
    again = run_export(definition)
    assert again["created"] == 0 and again["updated"] == first["created"]
    assert run_export(definition)["unchanged"] == first["created"] + first["unchanged"]
