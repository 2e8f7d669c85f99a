"""MailchimpBatchOperator: deferral, the worker-polling path, and reconnecting instead of resubmitting."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from airflow.sdk.exceptions import TaskDeferred
from mailchimp_provider.export.staging import read_parquet
from mailchimp_provider.operators.batch import MailchimpBatchOperator, MailchimpBatchTimeout
from mailchimp_provider.triggers.batch import MailchimpBatchTrigger


class StateStore(dict):
    """The task_state_store's get/set, in memory (the dag.test() test below uses the real one)."""

    def set(self, key, value, **_):
        self[key] = value


def write_operations(path: Path, list_id: str, count: int = 2) -> Path:
    lines = []
    for op in range(count):
        body = json.dumps(
            {
                "members": [
                    {"email_address": f"op{op}-user{i}@gmail.com", "status_if_new": "subscribed"}
                    for i in range(3)
                ],
                "update_existing": True,
            }
        )
        lines.append(
            json.dumps(
                {"method": "POST", "path": f"/lists/{list_id}", "operation_id": f"op-{op}", "body": body}
            )
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def operator(tmp_path: Path, server, **kwargs) -> MailchimpBatchOperator:
    ops = write_operations(tmp_path / "ops.jsonl", server.list_id)
    return MailchimpBatchOperator(
        task_id="upload",
        operations_path=str(ops),
        results_path=str(tmp_path / "results.parquet"),
        poll_interval=0.1,
        **kwargs,
    )


def test_defers_to_the_trigger_then_collects_results(tmp_path, mailchimp_conn) -> None:
    import asyncio

    store = StateStore()
    op = operator(tmp_path, mailchimp_conn, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"task_state_store": store})
    trigger = deferred.value.trigger
    assert isinstance(trigger, MailchimpBatchTrigger)
    assert (
        trigger.batch_id == store["mailchimp_batch_id"] and deferred.value.method_name == "execute_complete"
    )

    async def first():
        async for event in trigger.run():
            return event.payload

    summary = op.execute_complete({"task_state_store": store}, asyncio.run(first()))
    assert summary["status"] == "finished" and summary["results"] == 2
    results = read_parquet(tmp_path / "results.parquet")
    assert sorted(results["operation_id"].to_pylist()) == ["op-0", "op-1"]
    assert set(results["status_code"].to_pylist()) == {200}


def test_polls_in_the_worker_when_not_deferrable(tmp_path, mailchimp_conn) -> None:
    summary = operator(tmp_path, mailchimp_conn, deferrable=False).execute({"task_state_store": StateStore()})
    assert summary["status"] == "finished" and summary["total_operations"] == 2
    assert len(mailchimp_conn.members(mailchimp_conn.list_id)) == 6


def test_a_retry_reconnects_to_the_stored_batch(tmp_path, mailchimp_conn) -> None:
    store = StateStore()
    first = operator(tmp_path, mailchimp_conn, deferrable=False)
    store["mailchimp_batch_id"] = first.submit_job({})
    submitted = mailchimp_conn.stats()["batches_submitted"]
    operator(tmp_path, mailchimp_conn, deferrable=False).execute({"task_state_store": store})
    assert mailchimp_conn.stats()["batches_submitted"] == submitted == 1


def test_times_out_naming_the_batch(tmp_path, mailchimp_conn) -> None:
    mailchimp_conn.set_faults(stuck_in="started")
    op = operator(tmp_path, mailchimp_conn, deferrable=False, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(
        MailchimpBatchTimeout, match=r"batch \w+ did not finish within 1s \(last status: started\)"
    ):
        op.execute({"task_state_store": StateStore()})
    assert time.monotonic() - started < 15


def load_test_dag(name: str):
    """A DAG from the tests' own bundle (dag.test() runs DAGs from bundles)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / "dags" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def test_deferred_upload_runs_through_the_trigger(tmp_path, mailchimp_conn, airflow_db, caplog) -> None:
    caplog.set_level("INFO")
    ops = write_operations(tmp_path / "ops.jsonl", mailchimp_conn.list_id)
    run = load_test_dag("deferred_upload").test(
        run_conf={"operations": str(ops), "results": str(tmp_path / "r.parquet")}
    )
    assert run.state == "success"
    assert "running trigger in line" in caplog.text  # the task deferred and its trigger ran
    assert read_parquet(tmp_path / "r.parquet").num_rows == 2


def test_crash_and_retry_finishes_the_same_batch(tmp_path, mailchimp_conn, airflow_db) -> None:
    ops = write_operations(tmp_path / "ops.jsonl", mailchimp_conn.list_id)
    run = load_test_dag("crash_after_submit").test(
        run_conf={"operations": str(ops), "results": str(tmp_path / "r.parquet")}
    )
    assert run.state == "success"
    assert mailchimp_conn.stats()["batches_submitted"] == 1
    assert len(mailchimp_conn.members(mailchimp_conn.list_id)) == 6
