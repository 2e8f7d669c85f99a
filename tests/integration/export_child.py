"""The demo export in a process of its own, for test_worker_crash.py, which SIGKILLs it mid-upload.

`start`: a new run with dag.test(). `resume RUN_ID`: carry on with that run the way the scheduler does
after a worker died: the dead task instance goes up for retry, and the run's remaining tasks are run
one by one (the loop of dag.test(), without its "start afresh": it would delete the run and the task
state store with it).

With ``EXPORT_CHILD_WAIT_ON_WORKER=1`` the uploads wait on the worker (``deferrable=False``, as
``MailchimpBatchOperator`` used on its own by default) instead of in the triggerer, as the DAG factory has
them. With ``EXPORT_CHILD_DIE_AFTER_SUBMIT=1`` the first try of an upload kills its own process (SIGKILL)
right after its batch id was stored, before it waits: the moment a deferrable upload would defer.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from mailchimp_exports import build_export_dag
from mailchimp_provider.export.definition import load_definition
from support import DEMO_DEFINITION


def start(dag) -> int:
    return 0 if dag.test().state == "success" else 1


def resume(dag, run_id: str) -> int:
    from airflow import settings
    from airflow.models.dagrun import DagRun
    from airflow.sdk.definitions.dag import _run_task
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils.state import DagRunState, TaskInstanceState
    from airflow.utils.timezone import utcnow
    from sqlalchemy import select

    session = settings.Session()
    run = session.scalar(select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.run_id == run_id))
    run.dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    deferred = []
    for ti in run.get_task_instances(session=session):
        if ti.state == TaskInstanceState.RUNNING:  # its heartbeat stopped: the scheduler retries it
            ti.state = TaskInstanceState.UP_FOR_RETRY
            ti.end_date = utcnow()
        elif ti.trigger_id is not None and ti.state in (TaskInstanceState.DEFERRED, TaskInstanceState.QUEUED):
            deferred.append(ti)  # its trigger goes to a live triggerer (dag.test() shows it queued meanwhile)
    session.commit()
    for ti in deferred:
        _fire_trigger(ti, session)
    deadline = time.monotonic() + 600
    while run.state == DagRunState.RUNNING:
        if time.monotonic() > deadline:
            print("the resumed run did not end within 600 s", file=sys.stderr)
            return 1
        session.expire_all()
        schedulable, _ = run.update_state(session=session)
        for ti in schedulable:
            ti.try_number += 1
            ti.state = TaskInstanceState.SCHEDULED
        session.commit()
        scheduled = [
            ti for ti in run.get_task_instances(session=session) if ti.state == TaskInstanceState.SCHEDULED
        ]
        if not scheduled:
            time.sleep(1)
        for ti in scheduled:
            _run_task(ti=ti, task=dag.task_dict[ti.task_id], run_triggerer=True)
    return 0 if run.state == DagRunState.SUCCESS else 1


def _fire_trigger(ti, session) -> None:
    """What a live triggerer does with the trigger of a task deferred by a process that died (in
    ``dag.test()`` worker and triggerer are one process): run it, then schedule the task to resume."""
    from uuid import UUID

    from airflow.models.trigger import Trigger
    from airflow.sdk._shared.module_loading import import_string
    from airflow.sdk.api.datamodels._generated import TaskInstance as TaskInstanceSDK
    from airflow.sdk.definitions.dag import _run_inline_trigger
    from airflow.sdk.serde import serialize
    from airflow.utils.state import TaskInstanceState

    row = session.get(Trigger, ti.trigger_id)
    trigger = import_string(row.classpath)(**row.kwargs)
    sdk_ti = TaskInstanceSDK(
        id=UUID(str(ti.id)),
        task_id=ti.task_id,
        dag_id=ti.dag_id,
        run_id=ti.run_id,
        try_number=ti.try_number,
        map_index=ti.map_index,
        dag_version_id=UUID(str(ti.dag_version_id)),
    )
    print(f"firing the trigger of deferred {ti.task_id}[{ti.map_index}]", flush=True)
    event = _run_inline_trigger(trigger, sdk_ti)
    ti.next_kwargs = {"event": serialize(event.payload)}
    ti.trigger_id = None
    ti.state = TaskInstanceState.SCHEDULED
    session.commit()


def die_after_submit() -> None:
    import os
    import signal

    from mailchimp_provider.operators.batch import MailchimpBatchOperator

    wait = MailchimpBatchOperator.poll_until_complete

    def poll_until_complete(self, external_id, context):
        if context["ti"].try_number == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return wait(self, external_id, context)

    MailchimpBatchOperator.poll_until_complete = poll_until_complete


if __name__ == "__main__":
    import os

    if os.environ.get("EXPORT_CHILD_DIE_AFTER_SUBMIT") == "1":
        die_after_submit()
    folder = os.environ.get("MAILCHIMP_EXPORTS_DIR")  # a test's variant of the demo export, if any
    source = Path(folder) / DEMO_DEFINITION.name if folder else DEMO_DEFINITION
    export_dag = build_export_dag(load_definition(source), source)
    if os.environ.get("EXPORT_CHILD_WAIT_ON_WORKER") == "1":
        for task_id in ("upload_and_poll", "update_tags"):
            export_dag.task_dict[task_id].partial_kwargs["deferrable"] = False
    sys.exit(start(export_dag) if sys.argv[1] == "start" else resume(export_dag, sys.argv[2]))
