"""Exports in a real Airflow deployment: scheduler, DAG processor, triggerer, two Celery workers.

Everything goes through the REST API (v2), as a user or another system would.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from deployment import POOL, WORKERS, AirflowDeployment, max_overlap, wait_until
from mailchimp_provider.export.staging import safe_name

pytestmark = pytest.mark.services


def _report(deployment: AirflowDeployment, export: str, run_id: str) -> dict:
    return json.loads((deployment.staging / export / "runs" / safe_name(run_id) / "report.json").read_text())


def test_manual_run_with_params(airflow_services: AirflowDeployment) -> None:
    dag_id = "mailchimp_export__svc_manual"
    airflow_services.unpause(dag_id)
    run_id = airflow_services.trigger(dag_id, {"segments": ["vip_customers"]})

    run = airflow_services.wait_run(dag_id, run_id, timeout=180)

    assert run["state"] == "success"
    report = _report(airflow_services, "svc_manual", run_id)
    members = airflow_services.emulator.members("svc0manual")
    assert report["created"] == len(members) > 0
    assert {tag for member in members for tag in member["tags"]} == {"vip_customers"}
    assert report["profiles_read"] == (
        report["totals"]["rejected_locally"]
        + report["created"]
        + report["updated"]
        + report["totals"]["failed_at_mailchimp"]
        + report.get("unchanged", 0)
    )


def _uploads(deployment: AirflowDeployment, dag_id: str, run_id: str) -> list[dict]:
    return [ti for ti in deployment.task_instances(dag_id, run_id) if ti["task_id"] == "upload_and_poll"]


def _new_batches(deployment: AirflowDeployment, before: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in deployment.emulator_batches().items() if k not in before}


def test_warehouse_refresh_triggers_the_export_through_the_asset(airflow_services: AirflowDeployment) -> None:
    export_dag, refresh_dag = "mailchimp_export__svc_asset", "demo_warehouse_refresh"
    airflow_services.unpause(export_dag)
    airflow_services.unpause(refresh_dag)  # may also start today's scheduled refresh
    refresh = airflow_services.trigger(refresh_dag)
    assert airflow_services.wait_run(refresh_dag, refresh, timeout=180)["state"] == "success"

    def asset_runs() -> list[dict]:
        return [r for r in airflow_services.runs(export_dag) if r["run_type"] == "asset_triggered"]

    wait_until("an asset-triggered export run", asset_runs, 60)
    airflow_services.wait_idle([refresh_dag, export_dag], timeout=300)
    airflow_services.pause(refresh_dag)  # nothing else runs while the next scenarios count batches
    airflow_services.pause(export_dag)

    runs = asset_runs()
    assert runs and {r["state"] for r in runs} == {"success"}
    created = sum(_report(airflow_services, "svc_asset", r["dag_run_id"])["created"] for r in runs)
    assert created == len(airflow_services.emulator.members("svc0asset")) > 0


def test_uploads_run_at_once_on_both_workers_within_the_pool(airflow_services: AirflowDeployment) -> None:
    """Several upload tasks: they overlap, both Celery workers take some, the pool bounds them (deferred
    ones included), and each waits in the triggerer (state `deferred`, a MailchimpBatchTrigger row).
    Before them, four validate_and_map tasks prepare the export's four partitions on both workers."""
    dag_id, slots = "mailchimp_export__svc_wide", 4
    airflow_services.api(
        "PATCH", f"pools/{POOL}", json={"pool": POOL, "slots": slots, "include_deferred": True}
    )
    airflow_services.unpause(dag_id)
    before = airflow_services.emulator_batches()
    run_id = airflow_services.trigger(dag_id)
    seen: dict[str, Any] = {"occupied": 0, "deferred": set(), "running_hosts": set(), "triggers": set()}

    def sample() -> None:
        pool = airflow_services.api("GET", f"pools/{POOL}")
        seen["occupied"] = max(seen["occupied"], pool["occupied_slots"])
        uploads = _uploads(airflow_services, dag_id, run_id)
        seen["deferred"] |= {ti["map_index"] for ti in uploads if ti["state"] == "deferred"}
        running = {ti["hostname"] for ti in uploads if ti["state"] == "running"}
        if len(running) > 1:
            seen["running_hosts"] |= running
        seen["triggers"] |= set(
            airflow_services.query(
                "SELECT t.id, j.job_type FROM trigger t JOIN job j ON j.id = t.triggerer_id "
                "WHERE t.classpath LIKE %s",
                "%MailchimpBatchTrigger",
            )
        )

    run = airflow_services.wait_run(dag_id, run_id, timeout=240, on_poll=sample)

    assert run["state"] == "success"
    partitions = [
        ti for ti in airflow_services.task_instances(dag_id, run_id) if ti["task_id"] == "validate_and_map"
    ]
    assert sorted((ti["map_index"], ti["rendered_map_index"], ti["state"]) for ti in partitions) == [
        (k, f"partition {k + 1} of 4", "success") for k in range(4)
    ]
    assert {ti["hostname"] for ti in partitions} == set(WORKERS)
    uploads = _uploads(airflow_services, dag_id, run_id)
    assert len(uploads) >= 5
    assert {ti["state"] for ti in uploads} == {"success"}
    assert {ti["hostname"] for ti in uploads} == set(WORKERS)
    assert seen["running_hosts"] == set(WORKERS), "no moment with uploads running on both workers"
    intervals = [(ti["start_date"], ti["end_date"]) for ti in uploads]
    assert max_overlap(intervals) >= 2
    assert 2 <= seen["occupied"] <= slots
    assert seen["deferred"], "no upload was seen deferred"
    assert seen["triggers"] and {job for _, job in seen["triggers"]} == {"TriggererJob"}
    mismatches = airflow_services.api(
        "GET", "eventLogs", params={"dag_id": dag_id, "run_id": run_id, "event": "state mismatch"}
    )["event_logs"]
    assert not mismatches, [e["extra"] for e in mismatches]
    assert [ti["try_number"] for ti in uploads] == [1] * len(uploads), "an upload was retried"
    batches = _new_batches(airflow_services, before)
    assert list(batches.values()) == ["finished"] * len(uploads), "not exactly one batch per upload task"
    assert airflow_services.emulator.stats()["peak_concurrency"] <= 10


def test_killed_worker_mid_upload_then_restarted(airflow_services: AirflowDeployment) -> None:
    """SIGKILL (the whole worker, its pool and task processes) while an upload runs on it, after its
    batch was submitted: the scheduler notices the lost heartbeat, the retry reconnects to the batch."""
    dag_id = "mailchimp_export__svc_crash"
    airflow_services.emulator.set_faults(latency_ms=2500)  # every Mailchimp call takes a while
    airflow_services.unpause(dag_id)
    before = airflow_services.emulator_batches()
    run_id = airflow_services.trigger(dag_id)

    def submitted_upload() -> dict | None:
        stored = {
            row[0]
            for row in airflow_services.query(
                "SELECT map_index FROM task_state_store WHERE run_id = %s AND key = 'mailchimp_batch_id'",
                run_id,
            )
        }
        for ti in _uploads(airflow_services, dag_id, run_id):
            if ti["state"] == "running" and ti["map_index"] in stored and ti["hostname"] in WORKERS:
                return ti
        return None

    victim = wait_until("an upload running with its batch submitted", submitted_upload, 180, every=0.2)
    airflow_services.kill_worker(victim["hostname"])
    airflow_services.emulator.clear_faults()
    time.sleep(5)  # down for a while, as a crashed machine would be
    airflow_services.restart_worker(victim["hostname"])

    run = airflow_services.wait_run(dag_id, run_id, timeout=240)

    assert run["state"] == "success"
    uploads = _uploads(airflow_services, dag_id, run_id)
    retried = next(ti for ti in uploads if ti["map_index"] == victim["map_index"])
    assert retried["try_number"] >= 2, "the killed upload was not retried"
    batches = _new_batches(airflow_services, before)
    assert list(batches.values()) == ["finished"] * len(uploads), "not exactly one batch per upload task"
    report = _report(airflow_services, "svc_crash", run_id)
    assert report["created"] == len(airflow_services.emulator.members("svc0crash")) > 0


def test_deferred_uploads_resume_without_a_spurious_retry(airflow_services: AirflowDeployment) -> None:
    """Deferred uploads whose batches finish at once, on the LocalExecutor (what `make airflow` runs):
    no upload may be failed by a stale "finished" report of its own deferral (apache/airflow#72716)."""
    dag_id = "mailchimp_export__svc_wide_local"
    airflow_services.unpause(dag_id)
    before = airflow_services.emulator_batches()
    run_id = airflow_services.trigger(dag_id)

    run = airflow_services.wait_run(dag_id, run_id, timeout=240)

    mismatches = airflow_services.api(
        "GET", "eventLogs", params={"dag_id": dag_id, "run_id": run_id, "event": "state mismatch"}
    )["event_logs"]
    assert not mismatches, [e["extra"] for e in mismatches]
    uploads = _uploads(airflow_services, dag_id, run_id)
    assert run["state"] == "success"
    assert [ti["try_number"] for ti in uploads] == [1] * len(uploads), "an upload was retried"
    batches = _new_batches(airflow_services, before)
    assert list(batches.values()) == ["finished"] * len(uploads), "not exactly one batch per upload task"
