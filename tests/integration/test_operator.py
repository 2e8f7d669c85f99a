"""MailchimpBatchOperator: deferral, the worker-polling path, and reconnecting instead of resubmitting."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred
from mailchimp_provider.export.staging import read_parquet
from mailchimp_provider.hooks.errors import MailchimpApiError
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


def operator(tmp_path: Path, server, cls=MailchimpBatchOperator, **kwargs) -> MailchimpBatchOperator:
    ops = write_operations(tmp_path / "ops.jsonl", server.list_id)
    return cls(
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
    assert summary["status"] == "finished" and summary["results"] == 2
    assert summary["total_operations"] == 3  # Mailchimp counts the submission marker too
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


def test_waits_past_the_timeout_for_a_batch_that_applied_every_operation(tmp_path, mailchimp_conn) -> None:
    """Operations all applied, "finished" late (Mailchimp can take hours): not a timeout, on the worker;
    the trigger does the same (tests/integration/test_trigger.py). The batch applies its operations at
    about 2 s and finishes at about 5 s, past the 4 s timeout."""
    mailchimp_conn.set_faults(stuck_in="started")
    timers = [
        threading.Timer(2.0, lambda: mailchimp_conn.set_faults(stuck_in="finalizing")),
        threading.Timer(5.0, lambda: mailchimp_conn.set_faults(stuck_in=None)),
    ]
    for timer in timers:
        timer.start()
    try:
        summary = operator(tmp_path, mailchimp_conn, deferrable=False, timeout=4.0).execute(
            {"task_state_store": StateStore()}
        )
    finally:
        for timer in timers:
            timer.cancel()
    assert summary["status"] == "finished" and summary["results"] == 2


def test_a_batch_that_never_finishes_after_its_last_operation_times_out_saying_so(
    tmp_path, mailchimp_conn
) -> None:
    mailchimp_conn.set_faults(stuck_in="finalizing")
    op = operator(tmp_path, mailchimp_conn, deferrable=False, timeout=1.0)
    with pytest.raises(
        MailchimpBatchTimeout,
        match=r"batch \w+ applied all its operations but did not finish within 1s after that "
        r"\(last status: finalizing\)",
    ):
        op.execute({"task_state_store": StateStore()})


def test_the_trigger_waits_as_long_again_once_the_operations_are_applied(tmp_path, mailchimp_conn) -> None:
    op = operator(tmp_path, mailchimp_conn, deferrable=True, timeout=30.0)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"task_state_store": StateStore()})
    assert deferred.value.trigger.grace == 30.0
    with pytest.raises(MailchimpBatchTimeout, match="applied all its operations"):
        op.execute_complete(
            {}, {"status": "timeout", "batch_id": "b1", "last_status": "finalizing", "applied": True}
        )


def load_test_dag(name: str, dag_id: str = "dag"):
    """A DAG from the tests' own bundle (dag.test() runs DAGs from bundles)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / "dags" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, dag_id)


def test_deferred_upload_runs_through_the_trigger(tmp_path, mailchimp_conn, airflow_db, caplog) -> None:
    caplog.set_level("INFO")
    ops = write_operations(tmp_path / "ops.jsonl", mailchimp_conn.list_id)
    run = load_test_dag("deferred_upload").test(
        run_conf={"operations": str(ops), "results": str(tmp_path / "r.parquet")}
    )
    assert run.state == "success"
    assert "running trigger in line" in caplog.text  # the task deferred and its trigger ran
    assert read_parquet(tmp_path / "r.parquet").num_rows == 2


@pytest.mark.parametrize("dag_id", ["test_crash_after_submit", "test_crash_after_submit_deferred"])
def test_crash_and_retry_finishes_the_same_batch(
    tmp_path, mailchimp_conn, airflow_db, monkeypatch, dag_id
) -> None:
    """The first try dies after submitting; the batch keeps running until the retry has decided to
    reconnect to it; the retry must then wait for it and stage its results."""
    from airflow.models.xcom import XComModel

    flag = tmp_path / "reconnected"
    monkeypatch.setenv("RECONNECT_FLAG", str(flag))
    mailchimp_conn.set_faults(stuck_in="started")

    def release() -> None:
        deadline = time.time() + 120
        while not flag.exists() and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # the retry is waiting for the running batch now
        mailchimp_conn.clear_faults()

    releaser = threading.Thread(target=release, daemon=True)
    releaser.start()
    ops = write_operations(tmp_path / "ops.jsonl", mailchimp_conn.list_id)
    run = load_test_dag("crash_after_submit", dag_id).test(
        run_conf={"operations": str(ops), "results": str(tmp_path / "r.parquet")}
    )
    releaser.join(10)
    assert run.state == "success"
    assert flag.read_text() in ("pending", "preprocessing", "started")  # reconnected to a running batch
    assert mailchimp_conn.stats()["batches_submitted"] == 1
    assert len(mailchimp_conn.members(mailchimp_conn.list_id)) == 6
    results = read_parquet(tmp_path / "r.parquet")
    assert sorted(results["operation_id"].to_pylist()) == ["op-0", "op-1"]
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(run_id=run.run_id, dag_ids=dag_id, task_ids="upload", key="return_value")
        (summary,) = session.scalars(query).all()
        summary = XComModel.deserialize_value(summary)
    assert summary["status"] == "finished" and summary["results"] == 2


class Reconnecting(MailchimpBatchOperator):
    """Tells the test when ResumableJobMixin has decided to reconnect, and to a batch in which state."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.reconnected = threading.Event()
        self.status_at_reconnect: str | None = None

    def is_job_active(self, status: str) -> bool:
        active = super().is_job_active(status)
        if active:
            self.status_at_reconnect = status
            self.reconnected.set()
        return active


def release_after(event: threading.Event, server, pause: float = 0.5) -> threading.Thread:
    """Un-stick the server's batches once ``event`` is set and the retry has been waiting a little."""

    def release() -> None:
        if event.wait(60):
            time.sleep(pause)
        server.clear_faults()  # also when the event never came: the test then fails on its asserts

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    return thread


def stuck_batch(tmp_path: Path, server) -> StateStore:
    """A task state store holding the id of a batch that is submitted and stuck in ``started``."""
    server.set_faults(stuck_in="started")
    store = StateStore()
    store["mailchimp_batch_id"] = operator(tmp_path, server).submit_job({})
    return store


def test_a_retry_reconnecting_to_a_running_batch_waits_and_collects_its_results(
    tmp_path, mailchimp_conn
) -> None:
    """Issue 10 item 1: in worker mode the reconnect path returned None and never wrote the results."""
    store = stuck_batch(tmp_path, mailchimp_conn)
    retry = operator(tmp_path, mailchimp_conn, cls=Reconnecting, deferrable=False)
    releaser = release_after(retry.reconnected, mailchimp_conn)
    summary = retry.execute({"task_state_store": store})
    releaser.join(10)
    assert retry.status_at_reconnect in ("pending", "preprocessing", "started")  # still running then
    assert summary is not None and summary["status"] == "finished" and summary["results"] == 2
    results = read_parquet(tmp_path / "results.parquet")
    assert sorted(results["operation_id"].to_pylist()) == ["op-0", "op-1"]
    assert mailchimp_conn.stats()["batches_submitted"] == 1
    assert len(mailchimp_conn.members(mailchimp_conn.list_id)) == 6


def test_a_deferred_retry_reconnecting_to_a_running_batch_collects_its_results(
    tmp_path, mailchimp_conn
) -> None:
    import asyncio

    store = stuck_batch(tmp_path, mailchimp_conn)
    retry = operator(tmp_path, mailchimp_conn, cls=Reconnecting, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        retry.execute({"task_state_store": store})
    assert retry.status_at_reconnect in ("pending", "preprocessing", "started")
    assert deferred.value.trigger.batch_id == store["mailchimp_batch_id"]
    releaser = release_after(retry.reconnected, mailchimp_conn)

    async def events():
        return [e.payload async for e in deferred.value.trigger.run()]

    (event,) = asyncio.run(events())  # exactly one terminal event
    releaser.join(10)
    summary = operator(tmp_path, mailchimp_conn).execute_complete({"task_state_store": store}, event)
    assert summary["status"] == "finished" and summary["results"] == 2
    assert read_parquet(tmp_path / "results.parquet").num_rows == 2
    assert mailchimp_conn.stats()["batches_submitted"] == 1


def test_a_retry_after_a_timeout_waits_again_and_finishes(tmp_path, mailchimp_conn) -> None:
    """Issue 10 item 7: the deadline counted from submission, so the retry timed out at once."""
    mailchimp_conn.set_faults(stuck_in="started")
    store = StateStore()
    with pytest.raises(MailchimpBatchTimeout, match="a retry of this task reconnects"):
        operator(tmp_path, mailchimp_conn, deferrable=False, timeout=2.0).execute({"task_state_store": store})
    assert not (tmp_path / "results.parquet").exists()
    retry = operator(tmp_path, mailchimp_conn, cls=Reconnecting, deferrable=False, timeout=2.0)
    releaser = release_after(retry.reconnected, mailchimp_conn, pause=0.3)
    summary = retry.execute({"task_state_store": store})
    releaser.join(10)
    assert summary["status"] == "finished" and summary["results"] == 2
    assert mailchimp_conn.stats()["batches_submitted"] == 1


def test_a_deferred_retry_gets_a_fresh_deadline(tmp_path, mailchimp_conn) -> None:
    store = stuck_batch(tmp_path, mailchimp_conn)
    time.sleep(2.5)  # most of the timeout has passed since submission
    started = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        operator(tmp_path, mailchimp_conn, deferrable=True, timeout=3.0).execute({"task_state_store": store})
    assert deferred.value.trigger.deadline >= started + 3.0


@pytest.mark.parametrize("deferrable", [False, True])
def test_a_refused_key_fails_the_upload_without_retries(tmp_path, emulator, monkeypatch, deferrable) -> None:
    """Issue 10 item 9: a 401 during upload is final, as in check_audience."""
    from support import mailchimp_connection

    conn = json.loads(mailchimp_connection(emulator))
    conn["password"] = "ffffffffffffffffffffffffffffffff-us6"
    monkeypatch.setenv("AIRFLOW_CONN_MAILCHIMP_DEFAULT", json.dumps(conn))
    op = operator(tmp_path, emulator, deferrable=deferrable)
    with pytest.raises(AirflowFailException, match="401 API Key Invalid"):
        op.execute({"task_state_store": StateStore()})
    assert emulator.stats()["requests_by_status"] == {"401": 1}  # no retry inside the hook either


def test_a_trigger_error_with_a_refused_key_fails_without_retries(tmp_path, mailchimp_conn) -> None:
    event = {"status": "error", "batch_id": "b1", "message": "Mailchimp answered 401", "http_status": 401}
    with pytest.raises(AirflowFailException, match="401"):
        operator(tmp_path, mailchimp_conn).execute_complete({}, event)
    for status in (0, 404, 503):  # no answer, a vanished batch, Mailchimp down: a retry may help
        with pytest.raises(MailchimpApiError):
            operator(tmp_path, mailchimp_conn).execute_complete({}, {**event, "http_status": status})


def test_on_kill_withdraws_a_pending_batch_and_leaves_a_running_one(tmp_path, mailchimp_conn) -> None:
    mailchimp_conn.set_faults(stuck_in="pending")
    op = operator(tmp_path, mailchimp_conn, deferrable=False)
    op._batch_id = op.submit_job({})
    op.on_kill()
    with pytest.raises(MailchimpApiError, match="404"):
        op.hook.get_batch(op._batch_id)

    mailchimp_conn.set_faults(stuck_in="started")
    op = operator(tmp_path, mailchimp_conn, deferrable=False)
    op._batch_id = op.submit_job({})
    deadline = time.time() + 30
    while op.hook.get_batch(op._batch_id)["status"] != "started":
        assert time.time() < deadline, "the batch never started"
        time.sleep(0.1)
    op.on_kill()
    assert op.hook.get_batch(op._batch_id)["status"] == "started"


def test_a_retry_finds_the_batch_an_earlier_try_submitted_before_it_died(tmp_path, mailchimp_conn) -> None:
    """The try died between POST /batches and storing the batch id (ResumableJobMixin's known gap):
    the submission's marker, stored before the POST, lets the retry find the batch."""
    from mailchimp_provider.batches import new_marker
    from mailchimp_provider.operators.batch import SUBMISSION_KEY

    op = operator(tmp_path, mailchimp_conn, deferrable=False)
    marker = new_marker()
    store = StateStore({SUBMISSION_KEY: {"marker": marker, "since": time.time()}})
    first = op.hook.submit_batch((tmp_path / "ops.jsonl").read_text(), marker)  # then the worker died
    summary = operator(tmp_path, mailchimp_conn, deferrable=False).execute({"task_state_store": store})
    assert summary["id"] == first["id"] == store["mailchimp_batch_id"]
    assert mailchimp_conn.stats()["batches_submitted"] == 1
    assert read_parquet(tmp_path / "results.parquet").num_rows == 2


def test_concurrent_uploads_hold_one_connection_each(tmp_path, mailchimp_conn, airflow_db) -> None:
    """As many uploads as the mailchimp_api pool lets run at once, really at once (threads, not
    dag.test()'s one-by-one): each holds one connection, so the server never sees more than the pool
    size, which is within Mailchimp's 10."""
    import os
    import sqlite3

    with sqlite3.connect(Path(os.environ["AIRFLOW_HOME"]) / "airflow.db") as db:
        slots, include_deferred = db.execute(
            "SELECT slots, include_deferred FROM slot_pool WHERE pool = 'mailchimp_api'"
        ).fetchone()
    assert 1 < slots <= 10 and include_deferred  # deferred uploads hold their slot too
    mailchimp_conn.set_faults(latency_ms=200)  # every call takes a while, so the uploads' calls overlap
    uploads = []
    for n in range(slots):
        folder = tmp_path / f"job{n}"
        folder.mkdir()
        ops = folder / "ops.jsonl"
        ops.write_text(write_operations(ops, mailchimp_conn.list_id).read_text().replace("op0-", f"j{n}-"))
        uploads.append(
            MailchimpBatchOperator(
                task_id=f"upload{n}",
                operations_path=str(ops),
                results_path=str(folder / "results.parquet"),
                poll_interval=0.1,
                deferrable=False,
            )
        )
    summaries: dict[int, dict] = {}
    threads = [
        threading.Thread(
            target=lambda n=n, op=op: summaries.update({n: op.execute({"task_state_store": StateStore()})})
        )
        for n, op in enumerate(uploads)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(summaries) == slots and all(s["status"] == "finished" for s in summaries.values())
    stats = mailchimp_conn.stats()
    assert 1 < stats["peak_concurrency"] <= slots  # really concurrent, never more than one each
    assert stats["too_many_requests"] == 0 and stats["batches_submitted"] == slots
