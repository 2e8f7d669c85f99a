"""Reconcile: give every profile the run touched exactly one outcome, work out what the export now owns,
and add it all up into the run report.

Answers are read by action (see ``chunk.py``). An operation missing from a results archive, or a member its
answer does not mention, is not taken for failed: it is read back from Mailchimp (bounded), and whatever
stays unknown is ``outcome_unknown``, which fails the run after the report and the state are written.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from mailchimp_provider.export.chunk import SET_PERMISSIONS, TAG_ADD, TAG_REMOVE
from mailchimp_provider.export.plan import (
    ARCHIVE,
    ARCHIVED,
    EMAIL_CHANGE,
    EMAIL_CHANGE_CONFLICT,
    EMAIL_CHANGED,
    FAILED,
    LEFT_KEPT,
    NONE,
    UNCHANGED,
    UPSERT,
)
from mailchimp_provider.export.state import DIRTY, STATE_SCHEMA
from mailchimp_provider.hooks.errors import mask_emails_in

OUTCOME_SCHEMA = pa.schema(
    [
        ("profile_id", pa.string()),
        ("email", pa.string()),
        ("subscriber_hash", pa.string()),
        ("outcome", pa.string()),
        ("error", pa.string()),
    ]
)
CREATED, UPDATED = "created", "updated"
ARCHIVED_IN_AUDIENCE = "archived_in_audience"  # the same code as the local reject reason
UNKNOWN, OUTCOME_UNKNOWN, OK = "unknown", "outcome_unknown", "ok"
MISSING = "Missing from batch results"
ARCHIVED_MESSAGE = "the member is archived in Mailchimp; exports never restore archived members"
NOT_MENTIONED = "Not mentioned in Mailchimp's answer"
MAX_READBACKS = 2_000  # members read back one by one per run; past that, outcomes stay unknown


class AccountingError(RuntimeError):
    """Profiles went missing between reading and outcomes: the run must fail loudly."""


def _error_title(response: str) -> str:
    try:
        problem = json.loads(response)
    except ValueError:
        return "Unreadable response"
    if isinstance(problem, dict):
        return str(problem.get("title") or problem.get("detail") or "Unknown error")
    return "Unknown error"


def _mask(text: str, email: str | None) -> str:
    if email:
        text = re.sub(re.escape(email), "<email>", text, flags=re.IGNORECASE)
    return mask_emails_in(text)


def _problem_text(response: str, email: str) -> str:
    """Mailchimp's title and detail of a refused call on the member ``email``, addresses masked."""
    try:
        problem = json.loads(response)
    except ValueError:
        return "Unreadable response"
    if not isinstance(problem, dict):
        return "Unknown error"
    parts = [str(problem[key]) for key in ("title", "detail") if problem.get(key)]
    return _mask(": ".join(parts) or "Unknown error", email)


def _member_error(error: dict) -> str:
    """Mailchimp's message for one member, with the address taken out so reports group by cause and
    carry no personal data."""
    return _mask(
        str(error.get("error") or error.get("error_code") or "Unknown error"), error.get("email_address")
    )


def _by_operation(results: pa.Table) -> dict[str, tuple[int, str]]:
    return {
        op: (code, response)
        for op, code, response in zip(
            results["operation_id"].to_pylist(),
            results["status_code"].to_pylist(),
            results["response"].to_pylist(),
            strict=True,
        )
    }


def _subscribe_answer(response: str) -> tuple[set[str], set[str], set[str], dict[str, str]] | str:
    try:
        answer = orjson.loads(response)  # answers of 500 members each: the bulk of reconcile's reading
        created = {m["email_address"].lower() for m in answer.get("new_members") or []}
        updated, archived = set(), set()
        for m in answer.get("updated_members") or []:
            (archived if m.get("status") == "archived" else updated).add(m["email_address"].lower())
        errors = {
            e["email_address"].lower(): _member_error(e)
            for e in answer.get("errors") or []
            if e.get("email_address")
        }
    except (ValueError, AttributeError, KeyError, TypeError):
        return "Unreadable response"
    return created, updated, archived, errors


def job_outcomes(index: pa.Table, results: pa.Table) -> pa.Table:
    """Per-profile outcomes of one phase 1 job (batch subscribe, email change, archive).

    A failed operation fails all its members with Mailchimp's error title. A member whose operation is
    missing from the archive, or whom its answer does not mention, is ``unknown`` (read back later).
    A member Mailchimp answers as archived was not restored: ``archived_in_audience``.

    Batch-subscribe answers are read by Arrow's JSON reader where it reads them exactly as Python does
    (``_read_subscribe_answers``), the others once each in Python; members are matched to the answers
    by a join, not one by one.
    """
    n = index.num_rows
    ops = index["operation_id"].combine_chunks()
    actions = index["action"] if "action" in index.column_names else pa.repeat(UPSERT, n)
    pairs = (
        pa.table({"op": ops, "action": actions}).group_by(["op", "action"], use_threads=False).aggregate([])
    )
    pair_ops, pair_actions = pairs["op"].to_pylist(), pairs["action"].to_pylist()
    # the last answer of an operation counts, as in _by_operation
    answer_at = {op: i for i, op in enumerate(results["operation_id"].to_pylist())}
    codes = results["status_code"].to_pylist()
    responses = results["response"]
    fast: list[str] = []
    if len(set(pair_ops)) == len(pair_ops):  # one action an operation (always, from chunk.py)
        fast = [
            op
            for op, action in zip(pair_ops, pair_actions, strict=True)
            if action == UPSERT
            and op in answer_at
            and (code := codes[answer_at[op]]) is not None
            and code < 400
        ]
    fast_answered, unread = _read_subscribe_answers(
        fast, responses.take(pa.array([answer_at[op] for op in fast], pa.int64()))
    )
    fast_ops = set(fast) - unread
    answered: dict[str, list] = {"operation_id": [], "key": [], "outcome": [], "error": []}
    defaults: dict[str, tuple[str, str | None]] = {}  # per operation, for members its answer does not name
    for op, action in zip(pair_ops, pair_actions, strict=True):
        if op not in answer_at:
            defaults[op] = (UNKNOWN, MISSING)
        elif op in fast_ops:
            defaults[op] = (UNKNOWN, NOT_MENTIONED)
        else:
            code, response = codes[answer_at[op]], responses[answer_at[op]].as_py()
            if action != UPSERT:
                defaults[op] = _single_outcome(action, code, response)
                continue
            parsed = _error_title(response) if code >= 400 else _subscribe_answer(response)
            if isinstance(parsed, str):
                defaults[op] = (FAILED, parsed)
            else:
                defaults[op] = (UNKNOWN, NOT_MENTIONED)
                named = {key: _subscribe_outcome(parsed, key) for group in parsed for key in group}
                answered["operation_id"] += [op] * len(named)
                answered["key"] += named
                answered["outcome"] += (outcome for outcome, _ in named.values())
                answered["error"] += (error for _, error in named.values())
    matched = (
        pa.table({"row": np.arange(n), "operation_id": ops, "key": _lower(index["email"].combine_chunks())})
        .join(
            pa.concat_tables([pa.table(answered, schema=_ANSWER_SCHEMA), fast_answered]),
            ["operation_id", "key"],
            use_threads=False,
        )
        .sort_by("row")
    )
    at = pc.index_in(ops, value_set=pa.array(list(defaults), pa.string()))
    named = pc.is_valid(matched["outcome"])
    return pa.Table.from_arrays(
        [
            index["profile_id"],
            index["email"],
            index["subscriber_hash"],
            pc.if_else(
                named, matched["outcome"], pa.array([o for o, _ in defaults.values()], pa.string()).take(at)
            ),
            pc.if_else(
                named, matched["error"], pa.array([e for _, e in defaults.values()], pa.string()).take(at)
            ),
        ],
        schema=OUTCOME_SCHEMA,
    )


_ANSWER_SCHEMA = pa.schema(
    [("operation_id", pa.string()), ("key", pa.string()), ("outcome", pa.string()), ("error", pa.string())]
)


def _lower(strings: pa.Array) -> pa.Array:
    """Python's ``str.lower`` of every string: Arrow's for ASCII, Python's for the rest (they differ)."""
    odd = pc.invert(pc.string_is_ascii(strings))
    return pc.replace_with_mask(
        pc.ascii_lower(strings),
        odd,
        pa.array([e.lower() for e in strings.filter(odd).to_pylist()], pa.string()),
    )


_MEMBER = pa.struct([("email_address", pa.string()), ("status", pa.string())])
_ERROR = pa.struct([("email_address", pa.string()), ("error", pa.string()), ("error_code", pa.string())])
_SUBSCRIBE_ANSWER = pa.schema(
    [
        ("new_members", pa.list_(_MEMBER)),
        ("updated_members", pa.list_(_MEMBER)),
        ("errors", pa.list_(_ERROR)),
    ]
)
# Arrow's reader takes NaN, Inf and Infinity where orjson does not: answers with them are read by Python.
# (An answer with a line break is split into lines Arrow refuses or that add rows: Python reads the job.)
_NOT_FOR_ARROW = (b"NaN", b"Inf")
CREATED_RANK, UPDATED_RANK, ARCHIVED_RANK, ERROR_RANK = range(4)  # _subscribe_outcome's order


def _answer_bytes(texts: pa.Array) -> list[memoryview]:
    """Each answer's UTF-8 bytes, viewed in place (a null answer is empty)."""
    width = np.int64 if pa.types.is_large_string(texts.type) else np.int32
    _, offsets, data = texts.buffers()
    at = np.frombuffer(offsets, width)[texts.offset : texts.offset + len(texts) + 1].tolist()
    view = memoryview(data if data is not None else b"")
    return [view[at[i] : at[i + 1]] for i in range(len(texts))]


def _contains_any(data: bytes, needles: Iterable[bytes]) -> bool:
    """Whether ``data`` contains any of ``needles``: the candidates for each needle's first byte, then
    the bytes after them, checked with numpy (about three times faster than ``in`` on tens of MB)."""
    view = np.frombuffer(data, np.uint8)
    for needle in needles:
        at = np.flatnonzero(view[: len(view) - len(needle) + 1] == needle[0])
        for offset in range(1, len(needle)):
            at = at[view[at + offset] == needle[offset]]
        if len(at):
            return True
    return False


def _read_subscribe_answers(ops: list[str], responses: pa.ChunkedArray) -> tuple[pa.Table, set[str]]:
    """The members named in the batch-subscribe answers of ``ops`` (successful calls), as answer rows
    (operation_id, key, outcome, error), with what ``_subscribe_answer`` and ``_subscribe_outcome``
    give, read in C++ rather than as a Python object per member (the bulk of reconcile's time).

    Returns the rows and the operations left to Python: answers Arrow does not read as orjson would
    (see _NOT_FOR_ARROW), those with an entry or address Python could not read (they are "Unreadable
    response" there), and all of them when Arrow refuses any (not JSON, or another shape). One known
    difference is left: an answer nested deeper than 1,024 levels, which orjson refuses, is read here
    (Mailchimp's answers are four levels deep)."""
    empty = _ANSWER_SCHEMA.empty_table()
    if not ops:
        return empty, set()
    answers = _answer_bytes(responses.combine_chunks())
    fits = [len(a) > 1 and a[0] == 0x7B and a[-1] == 0x7D for a in answers]  # {...}
    kept = [i for i, ok in enumerate(fits) if ok]
    lines = b"\n".join(answers[i] for i in kept)  # one answer a line
    if _contains_any(lines, _NOT_FOR_ARROW):  # rare: find the answers
        kept = [i for i in kept if not any(p in bytes(answers[i]) for p in _NOT_FOR_ARROW)]
        lines = b"\n".join(answers[i] for i in kept)
    unread = set(ops) - {ops[i] for i in kept}
    if not kept:
        return empty, unread
    try:
        table = pa_json.read_json(
            pa.py_buffer(lines),
            read_options=pa_json.ReadOptions(block_size=max(4 << 20, 2 * max(len(answers[i]) for i in kept))),
            parse_options=pa_json.ParseOptions(
                explicit_schema=_SUBSCRIBE_ANSWER, unexpected_field_behavior="ignore"
            ),
        )
    except pa.ArrowInvalid:
        return empty, set(ops)
    if table.num_rows != len(kept):
        return empty, set(ops)
    kept_ops = [ops[i] for i in kept]
    parts, broken = [], np.zeros(len(kept), bool)
    for column in ("new_members", "updated_members", "errors"):
        lists = table[column].combine_chunks()
        owner = pc.list_parent_indices(lists).to_numpy()
        items = pc.list_flatten(lists)
        email = pc.struct_field(items, "email_address")
        position = np.arange(len(items))
        if column == "errors":
            broken[owner[items.is_null().to_numpy(zero_copy_only=False)]] = True  # not an object
            named = pc.and_(pc.is_valid(email), pc.not_equal(email, "")).fill_null(False).to_numpy(False)
            error = pc.struct_field(items, "error").to_pylist()
            code = pc.struct_field(items, "error_code").to_pylist()
            shown = email.to_pylist()
            messages = [
                _member_error({"email_address": shown[i], "error": error[i], "error_code": code[i]})
                for i in np.flatnonzero(named)
            ]
            rank, text = np.full(len(messages), ERROR_RANK), pa.array(messages, pa.string())
            position = -position  # the last error of an address counts, as in a dict
        else:
            broken[owner[pc.or_(items.is_null(), pc.is_null(email)).to_numpy(zero_copy_only=False)]] = True
            named = np.ones(len(items), bool)
            if column == "new_members":
                rank = np.full(len(items), CREATED_RANK)
            else:
                archived = pc.equal(pc.struct_field(items, "status"), "archived").fill_null(False)
                rank = np.where(archived.to_numpy(zero_copy_only=False), ARCHIVED_RANK, UPDATED_RANK)
            text = pa.nulls(len(items), pa.string())
        parts.append(
            pa.table(
                {
                    "answer": owner[named],
                    "key": email.filter(pa.array(named)),
                    "rank": rank,
                    "position": position[named],
                    "error": text,
                }
            )
        )
    rows = pa.concat_tables(parts)
    rows = rows.filter(pa.array(~broken[rows["answer"].to_numpy()]))
    rows = rows.set_column(1, "key", _lower(rows["key"].combine_chunks())).sort_by(
        [("answer", "ascending"), ("key", "ascending"), ("rank", "ascending"), ("position", "ascending")]
    )
    # the first (best ranked) row of each member of an answer
    answer, key = rows["answer"].to_numpy(), rows["key"].combine_chunks()
    first = np.ones(rows.num_rows, bool)
    if rows.num_rows > 1:
        same = pc.equal(key[1:], key[:-1]).to_numpy(zero_copy_only=False) & (answer[1:] == answer[:-1])
        first[1:] = ~same
    rows = rows.filter(pa.array(first))
    outcomes = pa.array([CREATED, UPDATED, ARCHIVED_IN_AUDIENCE, FAILED], pa.string())
    rank = rows["rank"].combine_chunks()
    answered = pa.table(
        {
            "operation_id": pa.array(kept_ops, pa.string()).take(rows["answer"]),
            "key": rows["key"],
            "outcome": outcomes.take(rank),
            "error": pc.if_else(
                pc.equal(rank, ARCHIVED_RANK), pa.scalar(ARCHIVED_MESSAGE), rows["error"].combine_chunks()
            ),
        },
        schema=_ANSWER_SCHEMA,
    )
    return answered, unread | {op for op, bad in zip(kept_ops, broken, strict=True) if bad}


def _subscribe_outcome(result: object, key: str) -> tuple[str, str | None]:
    if isinstance(result, str):
        return FAILED, result
    created, updated, archived, errors = result  # type: ignore[misc]
    if key in created:
        return CREATED, None
    if key in updated:
        return UPDATED, None
    if key in archived:
        return ARCHIVED_IN_AUDIENCE, ARCHIVED_MESSAGE
    if key in errors:
        return FAILED, errors[key]
    return UNKNOWN, NOT_MENTIONED


def _single_outcome(action: str, code: int, response: str) -> tuple[str, str | None]:
    if action == EMAIL_CHANGE:
        if code < 400:
            return EMAIL_CHANGED, None
        if code == 400 and _address_taken(response):
            return EMAIL_CHANGE_CONFLICT, "the new address is already a member of the audience"
        return FAILED, _error_title(response)
    if code < 400 or code == 404:  # 404: the member is already gone
        return ARCHIVED, None
    return FAILED, _error_title(response)


def _address_taken(response: str) -> bool:
    """Mailchimp refuses an address change to an address the audience has: "Member Exists", or
    "Invalid Resource" with "... is already in this list ..." on the email_address field."""
    try:
        problem = json.loads(response)
    except ValueError:
        return False
    if not isinstance(problem, dict):
        return False
    texts = [str(problem.get("detail") or "")]
    texts += [str(e.get("message") or "") for e in problem.get("errors") or [] if isinstance(e, dict)]
    return problem.get("title") == "Member Exists" or any("already" in t.lower() for t in texts)


def tag_outcomes(index: pa.Table, results: pa.Table) -> list[tuple[str, str, str, str, str | None]]:
    """Per (profile, tag) of one phase 2 job: (profile_id, action, tag, ok/failed/unknown, error); a
    permissions PATCH is one entry with no tag."""
    by_operation = _by_operation(results)
    failed_in: dict[str, dict[str, str] | str] = {}
    out = []
    rows = zip(
        index["operation_id"].to_pylist(),
        index["profile_id"].to_pylist(),
        index["email"].to_pylist(),
        index["action"].to_pylist(),
        index["tag"].to_pylist(),
        strict=True,
    )
    for op, pid, email, action, tag in rows:
        if op not in by_operation:
            out.append((pid, action, tag, UNKNOWN, MISSING))
            continue
        if action == SET_PERMISSIONS:
            code, response = by_operation[op]
            out.append(
                (pid, action, tag, OK, None)
                if code < 400
                else (pid, action, tag, FAILED, _problem_text(response, email))
            )
            continue
        if op not in failed_in:
            code, response = by_operation[op]
            failed_in[op] = _error_title(response) if code >= 400 else _segment_errors(response)
        failures = failed_in[op]
        if isinstance(failures, str):
            out.append((pid, action, tag, FAILED, failures))
        elif email.lower() in failures and action == TAG_ADD:
            out.append((pid, action, tag, FAILED, failures[email.lower()]))
        else:  # a removal Mailchimp refuses per address: not (or no longer) a member, so no tag to remove
            out.append((pid, action, tag, OK, None))
    return out


def _segment_errors(response: str) -> dict[str, str] | str:
    """Addresses a segment update refused; addresses not in the audience are ignored by Mailchimp."""
    try:
        answer = json.loads(response)
        refused: dict[str, str] = {}
        for error in answer.get("errors") or []:
            addresses = error.get("email_addresses") or [error.get("email_address")]
            for address in filter(None, addresses):
                refused[address.lower()] = _mask(str(error.get("error") or "Unknown error"), address)
    except (ValueError, AttributeError, TypeError):
        return "Unreadable response"
    return refused


ReadBack = Callable[[str], dict | None]  # subscriber hash -> the member (status, tags) or None if absent


@dataclass
class ProfileResult:
    """What happened to one planned profile's phase 1 operation and its tag changes."""

    phase1: tuple[str, str | None] | None = None
    tags: list[tuple[str, str, str, str | None]] = field(default_factory=list)  # action, tag, status, error


def resolve_unknown(
    plan_row: dict, result: ProfileResult, read_back: ReadBack, budget: list[int]
) -> ProfileResult:
    """Replace unknown answers by what reading the member back shows; leave them unknown past the budget."""
    unknown = (result.phase1 and result.phase1[0] == UNKNOWN) or any(t[2] == UNKNOWN for t in result.tags)
    if not unknown or budget[0] <= 0:
        return result
    budget[0] -= 1
    member = read_back(plan_row["subscriber_hash"])
    tags = {t["name"] if isinstance(t, dict) else t for t in (member or {}).get("tags") or []}
    if result.phase1 and result.phase1[0] == UNKNOWN:
        action = plan_row["action"]
        if action == ARCHIVE:
            ok = member is None or member.get("status") == "archived"
            result.phase1 = (ARCHIVED, None) if ok else (FAILED, "not archived (read back)")
        elif member is None:
            result.phase1 = (FAILED, "not applied (read back: no such member)")
        elif action == EMAIL_CHANGE:
            result.phase1 = (EMAIL_CHANGED, None)
        elif member.get("status") == "archived":
            result.phase1 = (ARCHIVED_IN_AUDIENCE, "the member is archived in Mailchimp")
        elif set(plan_row["tags_add"] or []) <= tags:
            result.phase1 = (UPDATED, None)  # created or updated: Mailchimp does not say which
        else:
            result.phase1 = (FAILED, "tags not applied (read back)")
    resolved = []
    for action, tag, status, error in result.tags:
        if status == UNKNOWN and action == SET_PERMISSIONS:
            done = member is not None and _permissions_set(plan_row["permissions"], member)
            status, error = (OK, None) if done else (FAILED, "marketing permissions not applied (read back)")
        elif status == UNKNOWN:
            done = member is None or ((tag in tags) == (action == TAG_ADD))
            status, error = (OK, None) if done else (FAILED, "tag change not applied (read back)")
        resolved.append((action, tag, status, error))
    result.tags = resolved
    return result


def _permissions_set(patch: str, member: dict) -> bool:
    """Whether the member read back has the permissions the PATCH set."""
    have = {
        p.get("marketing_permission_id"): p.get("enabled") for p in member.get("marketing_permissions") or []
    }
    wanted = json.loads(patch)["marketing_permissions"]
    return all(have.get(p["marketing_permission_id"]) == p["enabled"] for p in wanted)


def settle(plan_row: dict, result: ProfileResult) -> tuple[str, str | None, dict | None]:
    """The profile's one outcome, and its state row afterwards (None: not owned any more)."""
    action = plan_row["action"]
    prev = _prev_row(plan_row)
    tags_failed = [t for t in result.tags if t[2] == FAILED]
    tags_unknown = [t for t in result.tags if t[2] == UNKNOWN]
    removed = {t[1] for t in result.tags if t[0] == TAG_REMOVE and t[2] == OK}
    added = {t[1] for t in result.tags if t[0] == TAG_ADD and t[2] == OK}
    if action == NONE:
        outcome = plan_row["outcome"]
        if plan_row["drop"]:
            return outcome, plan_row["detail"], None
        if outcome in (UNCHANGED, LEFT_KEPT):
            return outcome, None, _next_row(plan_row, plan_row["prev_tags"] or [], plan_row["prev_created"])
        return outcome, plan_row["detail"], prev  # refused here: what the export owned stays as it was
    outcome, error = result.phase1 if result.phase1 else (plan_row["outcome"], None)
    if outcome in (FAILED, EMAIL_CHANGE_CONFLICT, ARCHIVED_IN_AUDIENCE, UNKNOWN):
        row = _minus(prev, removed)
        if outcome == UNKNOWN:
            return (
                OUTCOME_UNKNOWN,
                error,
                _dirty(prev or _next_row(plan_row, [], False), plan_row["tags_add"]),
            )
        return outcome, error, row
    if action == ARCHIVE:
        return ARCHIVED, None, None
    prev_tags = set(plan_row["prev_tags"] or [])
    owned = (prev_tags | set(plan_row["tags_add"] if action == UPSERT else added)) - removed
    created = bool(plan_row["prev_created"]) or outcome == CREATED
    row = _next_row(plan_row, sorted(owned), created)
    if plan_row["drop"] and not tags_failed and not tags_unknown:
        row = None
    if tags_unknown:
        return OUTCOME_UNKNOWN, tags_unknown[0][3], _dirty(row or prev, [t[1] for t in tags_unknown if t[1]])
    if tags_failed:
        row = row if row is not None else prev
        if row is not None and any(t[0] == SET_PERMISSIONS for t in tags_failed):
            row = {**row, "fingerprint": DIRTY}  # the permissions are sent again next run
        return FAILED, tags_failed[0][3], row
    return outcome, error, row


def _prev_row(plan_row: dict) -> dict | None:
    if not plan_row["owned"]:
        return None
    return {
        "profile_id": plan_row["prev_profile_id"],
        "subscriber_hash": plan_row["prev_hash"],
        "email": plan_row["prev_email"],
        "fingerprint": plan_row["prev_fingerprint"],
        "tags": plan_row["prev_tags"] or [],
        "segments": plan_row["prev_segments"] or [],
        "created": bool(plan_row["prev_created"]),
    }


def _next_row(plan_row: dict, tags: list[str], created: bool) -> dict:
    return {
        "profile_id": plan_row["profile_id"],
        "subscriber_hash": plan_row["subscriber_hash"],
        "email": plan_row["email"],
        "fingerprint": plan_row["fingerprint"],
        "tags": tags,
        "segments": plan_row["segments"] or [],
        "created": created,
    }


def _minus(row: dict | None, removed: set[str]) -> dict | None:
    return None if row is None else {**row, "tags": sorted(set(row["tags"]) - removed)}


def _dirty(row: dict, tags: Iterable[str]) -> dict:
    """Not known what Mailchimp holds: send it all again next run, and keep every tag that may be ours."""
    return {**row, "fingerprint": DIRTY, "tags": sorted(set(row["tags"]) | set(tags or []))}


def settle_all(
    plan_rows: Iterable[dict],
    phase1: dict[str, tuple[str, str | None]],
    tags: dict[tuple[str, str], list[tuple[str, str, str, str | None]]],
    read_back: ReadBack,
    budget: list[int] | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Outcomes (OUTCOME_SCHEMA) and state rows (STATE_SCHEMA) for every planned profile. ``tags``: phase 2
    results by (profile id, address). ``budget``: members still to be read back, spent here (default: a
    run's, MAX_READBACKS)."""
    budget = [MAX_READBACKS] if budget is None else budget
    outcomes: dict[str, list] = {name: [] for name in OUTCOME_SCHEMA.names}
    rows: list[dict] = []
    for plan_row in plan_rows:
        pid = plan_row["profile_id"]
        result = ProfileResult(phase1.get(pid), tags.get((pid, plan_row["email"]), []))
        if result.phase1 is None and plan_row["action"] in (UPSERT, EMAIL_CHANGE, ARCHIVE):
            result.phase1 = (UNKNOWN, MISSING)  # no job answered for it: treat it like a lost answer
        result = resolve_unknown(plan_row, result, read_back, budget)
        outcome, error, row = settle(plan_row, result)
        for name, value in zip(
            OUTCOME_SCHEMA.names,
            (pid, plan_row["email"], plan_row["subscriber_hash"], outcome, error),
            strict=True,
        ):
            outcomes[name].append(value)
        if row is not None:
            rows.append(row)
    return pa.Table.from_pydict(outcomes, schema=OUTCOME_SCHEMA), pa.Table.from_pylist(
        rows, schema=STATE_SCHEMA
    )


OUTCOME_FIELDS = (
    CREATED,
    UPDATED,
    UNCHANGED,
    EMAIL_CHANGED,
    EMAIL_CHANGE_CONFLICT,
    ARCHIVED_IN_AUDIENCE,
    "untagged",
    ARCHIVED,
    LEFT_KEPT,
    OUTCOME_UNKNOWN,
)


@dataclass
class RunReport:
    """What happened to every profile of one run; ``check`` enforces that nothing was lost."""

    export: str
    run_id: str
    audience_id: str
    dry_run: bool
    rows_read: int = 0
    profiles_read: int = 0
    rejected_locally: dict[str, int] = field(default_factory=dict)
    dropped_values: dict[str, int] = field(default_factory=dict)
    unchanged: int = 0
    planned: int = 0
    created: int = 0
    updated: int = 0
    email_changed: int = 0
    email_change_conflict: int = 0
    archived_in_audience: int = 0
    untagged: int = 0
    archived: int = 0
    left_kept: int = 0
    outcome_unknown: int = 0
    leavers: int = 0  # owned members not read this run that left the run's segments
    failed_at_mailchimp: dict[str, int] = field(default_factory=dict)
    segments: dict[str, dict[str, int]] = field(default_factory=dict)  # joined / left / stayed / rows
    warnings: list[str] = field(default_factory=list)
    removal_guard: dict = field(default_factory=dict)
    plan: dict[str, int] = field(default_factory=dict)  # profiles per action
    full_sync_reason: str | None = None
    state: dict = field(default_factory=dict)
    batches: list[dict] = field(default_factory=list)
    durations_s: dict[str, float] = field(default_factory=dict)

    def add_outcomes(self, outcomes: pa.Table) -> None:
        """Count the outcomes in Arrow: a run's outcomes as Python strings would take 64 bytes each."""
        counts = Counter(
            {item["values"]: item["counts"] for item in pc.value_counts(outcomes["outcome"]).to_pylist()}
        )
        for name in OUTCOME_FIELDS:
            setattr(self, name, getattr(self, name) + counts[name])
        self.outcome_unknown += counts[UNKNOWN]
        failed = outcomes.filter(pc.fill_null(pc.equal(outcomes["outcome"], FAILED), False))
        for error in failed["error"].to_pylist():
            self.failed_at_mailchimp[error] = self.failed_at_mailchimp.get(error, 0) + 1

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected_locally.values())

    @property
    def failed_total(self) -> int:
        return sum(self.failed_at_mailchimp.values())

    def accounted(self) -> int:
        settled = sum(getattr(self, name) for name in OUTCOME_FIELDS) + self.failed_total
        return self.rejected_total + settled + (self.planned if self.dry_run else 0)

    def check(self) -> None:
        touched = self.profiles_read + self.leavers
        if self.accounted() != touched:
            parts = [f"{name} ({getattr(self, name)})" for name in OUTCOME_FIELDS if getattr(self, name)]
            if self.dry_run:
                parts.append(f"planned ({self.planned})")
            raise AccountingError(
                f"profiles read ({self.profiles_read}) + owned members that left ({self.leavers}) != "
                f"rejected ({self.rejected_total}) + failed at Mailchimp ({self.failed_total}) + "
                + " + ".join(parts or ["0"])
                + f" = {self.accounted()}; see the run's staging folder"
            )

    def to_json(self) -> str:
        data = dict(vars(self))
        data["totals"] = {"rejected_locally": self.rejected_total, "failed_at_mailchimp": self.failed_total}
        return json.dumps(data, indent=2, sort_keys=True)

    def summary(self) -> str:
        """The readable block printed in the task log."""
        lines = [
            f"Mailchimp export '{self.export}' -> audience {self.audience_id}"
            + (" (DRY RUN: nothing uploaded)" if self.dry_run else ""),
            *(f"  WARNING: {warning}" for warning in self.warnings),
            f"  rows read            {self.rows_read:>10,}",
            f"  profiles read        {self.profiles_read:>10,}",
            f"  owned members left   {self.leavers:>10,}",
            f"  rejected locally     {self.rejected_total:>10,}",
            *(f"    {reason:<20} {count:>8,}" for reason, count in sorted(self.rejected_locally.items())),
            f"  unchanged (skipped)  {self.unchanged:>10,}",
        ]
        if self.dry_run:
            lines.append(f"  would send           {self.planned:>10,}")
            lines += [f"    {action:<20} {count:>8,}" for action, count in sorted(self.plan.items())]
        lines += [
            f"  {name.replace('_', ' '):<20} {getattr(self, name):>10,}"
            for name in OUTCOME_FIELDS
            if name != UNCHANGED and (getattr(self, name) or name in (CREATED, UPDATED))
        ]
        if not self.dry_run:
            lines += [
                f"  failed at Mailchimp  {self.failed_total:>10,}",
                *(
                    f"    {error[:40]:<40} {count:>8,}"
                    for error, count in sorted(self.failed_at_mailchimp.items())
                ),
            ]
        if self.segments:
            lines.append("  segments (joined / left / stayed):")
            lines += [
                f"    {name[:30]:<30} {c.get('joined', 0):>8,} {c.get('left', 0):>8,} {c.get('stayed', 0):>8,}"
                for name, c in sorted(self.segments.items())
            ]
        if self.full_sync_reason:
            lines.append(f"  full sync: {self.full_sync_reason}")
        if self.dropped_values:
            lines.append("  values left out (field:reason):")
            lines += [f"    {key:<40} {count:>8,}" for key, count in sorted(self.dropped_values.items())]
        if self.durations_s:
            lines.append("  durations: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.durations_s.items()))
        return "\n".join(lines)
