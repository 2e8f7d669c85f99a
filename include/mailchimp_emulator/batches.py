"""Accepting a batch: validate the operations, keep them as a file, queue the batch as `pending`.

The raw request body is stored unchanged beside the database (no re-encoding of tens of MB); the
runner (runner.py) reads it back when the batch's turn comes.
"""

from __future__ import annotations

import secrets
from typing import Any

from .archives import BatchFiles, write_atomically
from .model import Batch
from .problems import VALIDATION_DETAIL, ApiError
from .store import Store

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_MAX_REPORTED_ERRORS = 20


def operation_errors(operations: Any) -> list[dict[str, str]]:
    """Schema problems of an `operations` array, as Mailchimp's `errors` entries."""
    if not isinstance(operations, list):
        return [{"field": "operations", "message": "Schema describes array, found something else instead"}]
    errors: list[dict[str, str]] = []
    for index, op in enumerate(operations):
        where = f"operations.{index}"
        if not isinstance(op, dict):
            errors.append({"field": where, "message": "Schema describes object"})
        else:
            method, path = op.get("method"), op.get("path")
            if not isinstance(method, str) or method.upper() not in METHODS:
                errors.append(
                    {"field": f"{where}.method", "message": "Must be one of GET, POST, PUT, PATCH, DELETE"}
                )
            if not isinstance(path, str) or not path.startswith("/"):
                errors.append({"field": f"{where}.path", "message": "A path relative to /3.0 is required"})
            if op.get("params") is not None and not isinstance(op["params"], dict):
                errors.append({"field": f"{where}.params", "message": "Schema describes object"})
            if op.get("body") is not None and not isinstance(op["body"], str):
                errors.append(
                    {"field": f"{where}.body", "message": "Schema describes string (a JSON document)"}
                )
            operation_id = op.get("operation_id")
            if operation_id is not None and not isinstance(operation_id, str | int):
                errors.append({"field": f"{where}.operation_id", "message": "Schema describes string"})
        if len(errors) >= _MAX_REPORTED_ERRORS:
            break
    return errors


def accept_batch(
    store: Store, files: BatchFiles, raw_body: bytes, body: Any, now: str, max_pending: int
) -> Batch:
    """Validate and queue a batch; ApiError for a bad body or too many pending batches."""
    if not isinstance(body, dict) or "operations" not in body:
        raise ApiError(
            "InvalidResource", errors=[{"field": "operations", "message": "This value is required"}]
        )
    errors = operation_errors(body["operations"])
    if errors:
        raise ApiError("InvalidResource", VALIDATION_DETAIL, errors=errors)
    if store.pending_batch_count() >= max_pending:
        raise ApiError(
            "TooManyRequests",
            f"You have more than {max_pending} pending batches. Please wait for some to complete before "
            "adding any more batches.",
        )
    batch_id = secrets.token_hex(5)
    files.directory(batch_id).mkdir(parents=True)
    write_atomically(files.operations(batch_id), raw_body)
    total = len(body["operations"])
    try:
        store.insert_batch(batch_id, total, now)
    except BaseException:
        files.remove(batch_id)
        raise
    return Batch(batch_id, "pending", total, 0, 0, now, "", 0)
