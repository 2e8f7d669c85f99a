"""Staged personal data does not outlive a run that failed for good, and old run folders go on schedule.

A successful run deletes its personal data in ``reconcile``. A failed run used to keep all of it, so:

* every task of an export DAG has :func:`task_callback` as its failure and success callbacks. Airflow runs
  these in the task's own process on the worker, where the staging path is (local or object storage),
  and runs the failure callback only once a task has no retry left (``on_retry_callback`` otherwise).
  It deletes the run's personal data when the run can no longer succeed (a task failed for good) and
  no other task of the run may still read staging: none is queued, running, deferred or waiting for a
  retry, apart from the tasks downstream of this one, which will not run. So the last task of a doomed
  run to finish deletes it, whether it failed or succeeded (a mapped upload may end after its sibling
  failed).
* the DAG has :func:`dag_callback` as its failure callback: Airflow runs it in the DAG processor once
  the run has failed, when no task can read staging any more. It reaches object storage and a staging
  path shared with the workers; a local path on another machine is simply not there, and the task
  callbacks have done the work on the worker.
* every run starts with :func:`purge_expired_runs`, so run folders (reports, rejected profiles) older
  than the retention go whether or not the runs after them succeed.

What a failed run keeps until the retention is what a successful one keeps: its folder with the
audience's settings and the locally rejected profiles. To re-run it, clear the whole run, not one task.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from mailchimp_provider.export import staging
from mailchimp_provider.export.staging import RunPaths

log = logging.getLogger(__name__)
RETENTION_DAYS_ENV = "MAILCHIMP_EXPORT_RETENTION_DAYS"
FINISHED = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
FAILED = frozenset({"failed", "upstream_failed"})


def purge_run(export: str, run_id: str) -> None:
    paths = RunPaths.for_run(staging.base_path(), export, run_id)
    paths.cleanup_personal_data()
    log.info("The run failed for good: its staged personal data under %s is deleted", paths.root)


def purge_expired_runs(export: str) -> list[str]:
    """Delete this export's run folders older than ``MAILCHIMP_EXPORT_RETENTION_DAYS`` (default 30)."""
    retention = float(os.environ.get(RETENTION_DAYS_ENV, "30"))
    return staging.purge_old_runs(staging.base_path(), export, retention)


def run_is_over_and_failed(
    states: Mapping[str, str | None], me: str, my_state: str, task_of: Callable[[str], str], ignore: set[str]
) -> bool:
    """Whether a run cannot succeed and nothing in it may still read staging.

    ``states`` maps each task instance (``task_id`` or ``task_id_mapindex``, as Airflow's task-states
    API names them) to its state; ``me`` is the asking instance, whose own state ``my_state`` may not be
    recorded yet; instances of the tasks in ``ignore`` (those downstream of ``me``) will not run.
    """
    others = {key: state for key, state in states.items() if key != me}
    failed = my_state in FAILED or any(state in FAILED for state in others.values())
    busy = any(state not in FINISHED and task_of(key) not in ignore for key, state in others.items())
    return failed and not busy


def task_callback(export: str, state: str) -> Callable[[Mapping[str, Any]], None]:
    """A task's ``on_failure_callback`` (``state="failed"``) or ``on_success_callback`` (``"success"``)
    that deletes the run's personal data once the run has failed for good."""

    def purge_if_run_failed(context: Mapping[str, Any]) -> None:
        ti, task = context["ti"], context["task"]
        me = ti.task_id if ti.map_index is None or ti.map_index < 0 else f"{ti.task_id}_{ti.map_index}"
        task_ids = set(context["dag"].task_ids)
        try:
            states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
        except Exception as exc:  # outside a task runner (e.g. the DAG processor): the DAG callback acts
            log.info("Cannot read the run's task states (%s); leaving staging to the DAG callback", exc)
            return
        if run_is_over_and_failed(
            states,
            me,
            state,
            lambda key: key if key in task_ids else key.rsplit("_", 1)[0],
            task.get_flat_relative_ids(upstream=False),
        ):
            purge_run(export, ti.run_id)

    return purge_if_run_failed


def dag_callback(export: str) -> Callable[[Mapping[str, Any]], None]:
    """The DAG's failure callback: the run is over, so its personal data goes."""

    def purge_failed_run(context: Mapping[str, Any]) -> None:
        purge_run(export, context["run_id"])

    return purge_failed_run
