"""Every DAG in dags/ loads; broken export definitions give clear import errors without hiding the others."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "include" / "exports" / "demo_vip_and_churn.yaml"


def load(monkeypatch, exports: Path | None = None) -> DagBag:
    if exports is not None:
        monkeypatch.setenv("MAILCHIMP_EXPORTS_DIR", str(exports))
    return DagBag(dag_folder=str(ROOT / "dags"))


def test_all_dags_load_without_errors(monkeypatch) -> None:
    bag = load(monkeypatch)
    assert bag.import_errors == {}
    assert {"mailchimp_export__demo_vip_and_churn", "demo_warehouse_refresh"} <= set(bag.dag_ids)
    dag = bag.dags["mailchimp_export__demo_vip_and_churn"]
    assert [t.task_id for t in dag.topological_sort()] == [
        "check_audience",
        "extract",
        "validate_and_map",
        "plan",
        "chunk",
        "upload_and_poll",
        "tag_jobs",
        "update_tags",
        "reconcile",
        "announce",
    ]
    assert dag.params["dry_run"] is False and dag.params["allow_removals"] is False
    assert dag.max_active_runs == 1
    assert dag.get_task("upload_and_poll").pool == dag.get_task("update_tags").pool == "mailchimp_api"
    assert dag.get_task("update_tags").upstream_task_ids == {"tag_jobs", "upload_and_poll"}
    assert [o.uri for o in dag.get_task("announce").outlets] == ["mailchimp://demo0audience/"]
    assert dag.get_task("upload_and_poll").map_index_template == "{{ task.job_label }}"


BROKEN = {
    "bad_yaml.yaml": ("export: bad_yaml\nmailchimp: [unclosed\n", "not valid YAML"),
    "missing_email.yaml": (
        "export: missing_email\nmailchimp: {conn_id: m, audience_id: a1}\nwarehouse: {conn_id: w, table: t}\n"
        "segments: [s]\ncolumns: {id: id}\n",
        "field 'columns.email': Field required",
    ),
    "injection.yaml": (
        "export: injection\nmailchimp: {conn_id: m, audience_id: a1}\n"
        "warehouse: {conn_id: w, table: 't; DROP TABLE x'}\nsegments: [s]\ncolumns: {id: id, email: e}\n",
        "field 'warehouse.table': not an allowed name",
    ),
    "bad_tag.yaml": (
        "export: bad_tag\nmailchimp: {conn_id: m, audience_id: a1}\nwarehouse: {conn_id: w, table: t}\n"
        "segments: [s]\ncolumns: {id: id, email: e}\nmerge_fields: {TOOLONGMERGETAG: c}\n",
        "field 'merge_fields.TOOLONGMERGETAG",
    ),
    "both_sources.yaml": (
        "export: both_sources\nmailchimp: {conn_id: m, audience_id: a1}\n"
        "warehouse: {conn_id: w, table: t, query: 'select 1'}\nsegments: [s]\ncolumns: {id: id, email: e}\n",
        "exactly one of 'table' or 'query'",
    ),
    "typo.yaml": (
        "export: typo\nmailchimp: {conn_id: m, audience_id: a1}\nwarehouse: {conn_id: w, table: t}\n"
        "segments: [s]\ncolumns: {id: id, email: e}\nmax_profile: 5\n",
        "field 'max_profile': unknown field",
    ),
    "wrong_name.yaml": (DEMO.read_text(), "must match the file name"),
    "too_many_jobs.yaml": (
        "export: too_many_jobs\nmailchimp: {conn_id: m, audience_id: a1}\nwarehouse: {conn_id: w, table: t}\n"
        "segments: [s]\ncolumns: {id: id, email: e}\nmax_profiles: 1000000\njob_size: 500\n",
        "allows 2000 batch jobs",
    ),
    "huge.yaml": ("export: huge\n# " + "x" * 300_000 + "\n", "larger than"),
    "many_partitions.yaml": (
        "export: many_partitions\nmailchimp: {conn_id: m, audience_id: a1}\nwarehouse: {conn_id: w, table: t}\n"
        "segments: [s]\ncolumns: {id: id, email: e}\nprepare_partitions: 33\n",
        "field 'prepare_partitions': Value error, expected a number from 1 to 32 or 'auto', got 33",
    ),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_definition_is_an_import_error_naming_file_and_field(tmp_path, monkeypatch, name) -> None:
    shutil.copy(DEMO, tmp_path / DEMO.name)
    text, expected = BROKEN[name]
    (tmp_path / name).write_text(text)
    bag = load(monkeypatch, tmp_path)
    assert "mailchimp_export__demo_vip_and_churn" in bag.dag_ids  # the valid export still loads
    (message,) = bag.import_errors.values()
    assert name in message and expected in message
    assert "Traceback" not in message


@pytest.mark.parametrize("alerts", [None, {"notify": [{"type": "email", "to": ["ops@company.test"]}]}])
def test_every_dag_failure_callback_is_callable(tmp_path, monkeypatch, alerts) -> None:
    """Without alerts there is no failure alert to send; a None in the list made Airflow log
    "Callback failed ... 'NoneType' object is not callable" for every failed run."""
    from mailchimp_exports import build_export_dag
    from support import write_definition

    definition = write_definition(monkeypatch, tmp_path, alerts=alerts)
    callbacks = build_export_dag(definition, DEMO).on_failure_callback
    assert len(callbacks) == (1 if alerts is None else 2) and all(callable(c) for c in callbacks)
