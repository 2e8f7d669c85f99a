"""Background batch processing: pending -> preprocessing -> started -> finalizing -> finished.

Worker threads run batches (one, as Mailchimp's spec says, unless the pace sets `parallel_batches`); a
finalizer thread builds the result archives, so compressing one batch overlaps with running the next. Each
thread has its own SQLite connection, so the event loop never waits on batch work. The optional pace
(pace.py) spaces operations out and holds a batch in `finalizing` after its last operation.

Exactly-once across restarts: operations run in chunks; a chunk's member changes, its result file
and the batch's progress counters are committed together (the result file is renamed into place
just before the commit, and files past the committed progress are dropped on resume).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import Any
from urllib.parse import parse_qsl

from .api import Api, ApiRequest
from .archives import BatchFiles, build_archive, encode_results, write_atomically
from .config import Settings
from .faults import FaultState
from .model import Batch, now_iso
from .store import Database, Store

log = logging.getLogger("mailchimp_emulator.batches")

CHUNK_SECONDS = 0.2
CHUNK_MAX_OPERATIONS = 250
CHUNK_MAX_BYTES = 16 * 1024 * 1024


class BatchGone(Exception):
    """The batch was deleted (DELETE /batches/{id} or a reset) while it was being worked on."""


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_query_value(v) for v in value)
    return str(value)


def operation_request(op: dict[str, Any], base_url: str) -> ApiRequest:
    """Turn a batch operation into the same request object the HTTP layer builds."""
    path, _, inline_query = op["path"].partition("?")
    query = dict(parse_qsl(inline_query, keep_blank_values=True))
    query.update({k: _query_value(v) for k, v in (op.get("params") or {}).items()})
    body = op.get("body")
    return ApiRequest(
        method=op["method"].upper(),
        path=path,
        query=query,
        body=(body or "").encode("utf-8"),
        base_url=base_url,
        in_batch=True,
    )


class BatchRunner:
    """Owns the batch threads; `notify()` after a submission, `stop()` at shutdown."""

    def __init__(
        self, settings: Settings, db: Database, files: BatchFiles, api: Api, faults: FaultState
    ) -> None:
        self.settings, self.db, self.files, self.api, self.faults = settings, db, files, api, faults
        self.pace = settings.pace
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._finalize: queue.Queue[tuple[str, float]] = queue.Queue()  # (batch id, monotonic ready time)
        self._threads: list[threading.Thread] = []
        self._parsed: dict[str, list[dict[str, Any]]] = {}
        self._parsed_lock = threading.Lock()
        self._claimed: set[str] = set()  # batches a worker is running (guarded by _parsed_lock)

    def start(self) -> None:
        store = self.db.connect()
        try:
            for batch in store.unfinished_batches():
                self.files.drop_parts_from(batch.id, batch.parts_done)
                if batch.status == "finalizing":
                    self._queue_finalize(batch.id)
        finally:
            store.close()
        targets = [(self._work, f"batch-runner-{n}") for n in range(self.pace.parallel_batches)]
        for target, name in [*targets, (self._finalize_loop, "batch-finalizer")]:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _queue_finalize(self, batch_id: str) -> None:
        self._finalize.put((batch_id, time.monotonic() + self.pace.finish_delay))

    def submitted(self, batch_id: str, operations: list[dict[str, Any]]) -> None:
        """A batch was accepted: keep its parsed operations (saves re-reading the file) and wake up."""
        with self._parsed_lock:
            self._parsed[batch_id] = operations
        self._wake.set()

    def _operations(self, batch_id: str) -> list[dict[str, Any]]:
        with self._parsed_lock:
            operations = self._parsed.pop(batch_id, None)
        if operations is None:  # after a restart
            operations = json.loads(self.files.operations(batch_id).read_bytes())["operations"]
        return operations

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        self._finalize.put(("", 0.0))
        for thread in self._threads:
            thread.join(timeout)

    # ---- shared ------------------------------------------------------------------------------------

    def _advance(self, store: Store, batch_id: str, leaving: str, entering: str) -> None:
        """Wait out a `stuck_in` fault and the pace, then persist the next state."""
        self.faults.wait_while_stuck(leaving, self._stop)
        if self._stop.wait(self.settings.batch_pace) or self._stop.is_set():
            raise InterruptedError
        if not store.set_batch_status(batch_id, entering, now_iso() if entering == "finished" else ""):
            raise BatchGone

    def _guarded(self, store: Store, batch_id: str, work: Any) -> bool:
        """Run one step of a batch; False when it failed unexpectedly and should be retried."""
        try:
            work()
        except InterruptedError:
            pass
        except BatchGone:
            self.files.remove(batch_id)
        except Exception:
            if store.batch(batch_id) is None:
                self.files.remove(batch_id)
            else:
                log.exception("batch %s failed; retrying shortly", batch_id)
                self._stop.wait(1.0)
                return False
        return True

    # ---- worker: pending .. started ------------------------------------------------------------------

    def _work(self) -> None:
        store = self.db.connect()
        try:
            while not self._stop.is_set():
                unfinished = store.unfinished_batches()
                with self._parsed_lock:  # forget operations of batches deleted before their turn
                    for gone in set(self._parsed) - {b.id for b in unfinished}:
                        if store.batch(gone) is None:
                            del self._parsed[gone]
                    batch = next(
                        (b for b in unfinished if b.status != "finalizing" and b.id not in self._claimed),
                        None,
                    )
                    if batch is not None:
                        self._claimed.add(batch.id)
                if batch is None:
                    self._wake.wait(1.0)
                    self._wake.clear()
                    continue
                try:
                    self._guarded(store, batch.id, lambda b=batch: self._run(store, b))
                finally:
                    with self._parsed_lock:
                        self._claimed.discard(batch.id)
                    self._wake.set()  # another worker may be waiting for work
        finally:
            store.close()

    def _run(self, store: Store, batch: Batch) -> None:
        if batch.status == "pending":
            self._advance(store, batch.id, "pending", "preprocessing")
        if batch.status in ("pending", "preprocessing"):
            self._advance(store, batch.id, "preprocessing", "started")
        self.faults.wait_while_stuck("started", self._stop)
        if self._stop.is_set():
            return
        self._run_operations(store, batch)
        self._advance(store, batch.id, "started", "finalizing")
        self._queue_finalize(batch.id)

    def _run_operations(self, store: Store, batch: Batch) -> None:
        operations = self._operations(batch.id)
        done, errored, part = batch.finished_operations, batch.errored_operations, batch.parts_done
        base_url = self.settings.base_url
        spacing, paced_from, paced_start = self.pace.seconds_per_operation, done, time.monotonic()
        while done < len(operations):
            if self._stop.is_set():
                raise InterruptedError
            limit = CHUNK_MAX_OPERATIONS
            if spacing:  # only the operations that are due by now, never sleeping inside a transaction
                due = int((time.monotonic() - paced_start) / spacing) + 1 - (done - paced_from)
                if due <= 0:
                    wait = paced_start + (done - paced_from) * spacing - time.monotonic()
                    if self._stop.wait(max(wait, 0.001)):
                        raise InterruptedError
                    continue
                limit = min(limit, due)
            results: list[dict[str, Any]] = []
            size, deadline = 0, time.monotonic() + CHUNK_SECONDS
            with store.transaction():
                while done < len(operations) and len(results) < limit and size < CHUNK_MAX_BYTES:
                    op = operations[done]
                    response = self.api.handle(store, operation_request(op, base_url))
                    text = response.json_text()
                    operation_id = op.get("operation_id")
                    results.append(
                        {
                            "status_code": response.status,
                            "operation_id": None if operation_id is None else str(operation_id),
                            "response": text,
                        }
                    )
                    errored += response.status >= 400
                    size += len(text)
                    done += 1
                    if time.monotonic() > deadline:
                        break
                write_atomically(self.files.part(batch.id, part), encode_results(results))
                if not store.record_batch_progress(batch.id, done, errored, part + 1):
                    raise BatchGone
            part += 1

    # ---- finalizer: finalizing .. finished -----------------------------------------------------------

    def _finalize_loop(self) -> None:
        store = self.db.connect()
        try:
            while not self._stop.is_set():
                batch_id, ready_at = self._finalize.get()
                if not batch_id or self._stop.wait(max(ready_at - time.monotonic(), 0.0)):
                    continue
                if not self._guarded(store, batch_id, lambda b=batch_id: self._finish(store, b)):
                    self._finalize.put((batch_id, 0.0))
        finally:
            store.close()

    def _finish(self, store: Store, batch_id: str) -> None:
        batch = store.batch(batch_id)
        if batch is None:
            raise BatchGone
        self.faults.wait_while_stuck("finalizing", self._stop)
        if self._stop.is_set():
            return
        build_archive(self.files, batch_id, batch.parts_done)
        self._advance(store, batch_id, "finalizing", "finished")
