"""Mailchimp batch operations: the status lifecycle and the results archive format."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

RESULT_SCHEMA = pa.schema(
    [("operation_id", pa.string()), ("status_code", pa.int32()), ("response", pa.string())]
)


class BatchStatus(StrEnum):
    PENDING = "pending"
    PREPROCESSING = "preprocessing"
    STARTED = "started"
    FINALIZING = "finalizing"
    FINISHED = "finished"

    def is_terminal(self) -> bool:
        """``finished`` is the only end state; it includes errored operations, which are per-result."""
        return self is BatchStatus.FINISHED

    def is_withdrawable(self) -> bool:
        """Only a ``pending`` batch has changed nothing yet. Deleting a later one would throw away the
        results of the operations it already applied, so their outcomes would be unknown."""
        return self is BatchStatus.PENDING


def all_applied(batch: dict) -> bool:
    """Mailchimp counts every operation done (errored ones too) but has not said ``finished``: it is
    writing the results, which its users report can take hours after the last operation."""
    total = batch.get("total_operations") or 0
    return (
        total > 0
        and (batch.get("finished_operations") or 0) >= total
        and batch.get("status") != BatchStatus.FINISHED
    )


@dataclass
class Patience:
    """When a poller gives up on a batch. It has until ``deadline`` (epoch seconds) to apply its
    operations; once it has applied them all, it has ``grace`` seconds more from that moment to finish.
    The members are in by then and only the results are late, so a slow Mailchimp does not fail a
    healthy run; a batch that never finishes still ends the wait."""

    deadline: float
    grace: float
    applied_at: float | None = None

    def saw(self, batch: dict, now: float) -> bool:
        """Note a poll's answer; True the first time it shows every operation applied."""
        if self.applied_at is None and all_applied(batch):
            self.applied_at = now
            return True
        return False

    @property
    def until(self) -> float:
        if self.applied_at is None:
            return self.deadline
        return max(self.deadline, self.applied_at + self.grace)


FIRST_POLL_DELAY_S = 1.0


def poll_delays(poll_interval: float) -> Iterator[float]:
    """Waits between polls of a batch: 1 s, doubling up to ``poll_interval``. A small batch (a churn run's
    few hundred changes) is seen finished within seconds instead of a whole interval; a large one costs
    a handful of extra polls before the interval settles."""
    delay = min(FIRST_POLL_DELAY_S, poll_interval)
    while True:
        yield delay
        delay = min(delay * 2, poll_interval)


MARKER_PREFIX = "submission-marker-"


def new_marker() -> str:
    """A unique operation id that tells one submission's batch apart from every other batch."""
    return MARKER_PREFIX + uuid.uuid4().hex


def marker_operation(marker: str) -> str:
    """A harmless ``GET /ping`` carrying the marker: Mailchimp lists batches without their operations,
    so a batch whose submission lost its answer is recognised by this id in its results archive."""
    return json.dumps({"method": "GET", "path": "/ping", "operation_id": marker})


def operation_lines(operations_jsonl: str) -> list[str]:
    """Lines end at ``\\n`` only: names may hold U+0085 or U+2028, which ``str.splitlines`` would split on."""
    return [line for line in operations_jsonl.split("\n") if line]


def batch_request_body(operations_jsonl: str, marker: str) -> bytes:
    """The ``POST /batches`` body from JSON lines of operations (spliced without parsing them again),
    plus the submission's marker operation.

    Spliced as UTF-8, where a job's tens of MB are a quarter of the text's size when a name holds an
    emoji (one such character makes Python keep the whole text at four bytes a character); a byte
    ``\n`` in UTF-8 is only ever the character."""
    data = operations_jsonl.encode("utf-8").strip(b"\n")
    if b"\n\n" in data:  # blank lines between operations are left out
        data = b"\n".join(line for line in data.split(b"\n") if line)
    joined = data.replace(b"\n", b",") + b"," if data else b""
    return b"".join((b'{"operations":[', joined, marker_operation(marker).encode("utf-8"), b"]}"))


# A digit as "0", a byte a number can follow (":", ",", "[", "-", whitespace) as "!", any other as " ": "!"
# and 19 zeros then mark an integer orjson may read differently from json (past 64 bits: a float there).
# Digits inside strings (hashes, ids) rarely follow those bytes, so they seldom send a body to json.
_NUMBER_MARKS = bytes(48 if 48 <= b <= 57 else 33 if b in b":,[- \t\n\r" else 32 for b in range(256))
_LONG_NUMBER = b"0" * 19


def _may_hold_long_integer(data: bytes) -> bool:
    marks = data.translate(_NUMBER_MARKS)
    return marks.startswith(_LONG_NUMBER) or b"!" + _LONG_NUMBER in marks


def _load_json(content: bytes) -> Any:
    """``json.loads``, by orjson where it reads the same (several times faster over an archive's
    hundreds of megabytes); what orjson refuses, or a long run of digits, is read by json."""
    if not _may_hold_long_integer(content):
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            pass
    return json.loads(content)


class CorruptArchive(ValueError):
    """A results archive that cannot be read; downloading it again usually helps."""


def parse_results_archive(data: bytes) -> pa.Table:
    """Every ``{status_code, operation_id, response}`` in a gzipped tar of JSON files, as a table.

    Empty files and directories are skipped, as Mailchimp's archives contain them.
    """
    ids: list[str] = []
    codes: list[int] = []
    responses: list[str] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for member in archive:
                if not member.isfile() or member.size == 0:
                    continue
                handle = archive.extractfile(member)
                if handle is None:
                    continue
                content = handle.read().strip()
                if not content:
                    continue
                for result in _load_json(content):
                    ids.append(str(result.get("operation_id")))
                    codes.append(int(result["status_code"]))
                    response = result.get("response")
                    responses.append(response if isinstance(response, str) else json.dumps(response))
    except (
        tarfile.TarError,
        EOFError,
        OSError,
        zlib.error,
        gzip.BadGzipFile,
        ValueError,
        KeyError,
        TypeError,
    ) as exc:
        raise CorruptArchive(f"results archive is unreadable: {type(exc).__name__}") from None
    return pa.Table.from_arrays(
        [pa.array(ids, pa.string()), pa.array(codes, pa.int32()), pa.array(responses, pa.string())],
        schema=RESULT_SCHEMA,
    )


def split_markers(results: pa.Table) -> tuple[pa.Table, set[str]]:
    """The job's own results, and the submission markers found among them."""
    is_marker = pc.starts_with(results["operation_id"], MARKER_PREFIX)
    markers = set(results["operation_id"].filter(is_marker).to_pylist())
    own = pc.invert(is_marker)
    if own.null_count == 0:
        rows = np.flatnonzero(own.to_numpy(zero_copy_only=False))
        if len(rows) and rows[-1] - rows[0] + 1 == len(rows):  # one run (the marker comes last)
            return results.slice(int(rows[0]), len(rows)), markers  # no copy of tens of MB of answers
    return results.filter(own), markers
