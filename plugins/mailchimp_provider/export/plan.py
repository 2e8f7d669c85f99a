"""Plan: what to send for each profile, decided against what the export owns (its state).

For every accepted profile of the run and every owned member that left one of the run's segments, one
row: the action (an upsert, an email change, an archive, tag changes only, or nothing), the tags to add and
to remove, the outcome it gets if it needs nothing from Mailchimp, and its state row before and after.
Rejected profiles are not planned: their state stays as it is (a rejected profile has not left).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mailchimp_provider.export.member_fields import split_permissions, split_permissions_column
from mailchimp_provider.export.prepare import with_tags, with_tags_column
from mailchimp_provider.export.state import DIRTY, ExportState

# Actions. Phase 1 (members): UPSERT, EMAIL_CHANGE, ARCHIVE; phase 2: tag changes of every action, and an
# upsert's marketing permissions (batch subscribe does not take them).
UPSERT, EMAIL_CHANGE, ARCHIVE, TAGS, NONE = "upsert", "email_change", "archive", "tags", "none"
# Outcomes decided here (the rest come from Mailchimp's answers in reconcile).
UNCHANGED, LEFT_KEPT, UNTAGGED, ARCHIVED = "unchanged", "left_kept", "untagged", "archived"
EMAIL_CHANGED, EMAIL_CHANGE_CONFLICT, FAILED = "email_changed", "email_change_conflict", "failed"
UPDATED = "updated"
IN_TRANSIT = "the address moves away from another profile in this run; it is sent next run"

TAGS_TYPE = pa.list_(pa.string())
PLAN_SCHEMA = pa.schema(
    [
        ("profile_id", pa.string()),
        ("email", pa.string()),  # the address the member has after this run
        ("subscriber_hash", pa.string()),
        ("old_hash", pa.string()),  # the member's hash before an email change
        ("action", pa.string()),
        ("body", pa.string()),  # phase 1 member JSON (upsert) or PATCH body (email change)
        ("permissions", pa.string()),  # phase 2 PATCH body: an upsert's marketing permissions, or null
        ("tags_add", TAGS_TYPE),
        ("tags_remove", TAGS_TYPE),
        ("outcome", pa.string()),  # final for NONE; the outcome on success for leavers
        ("detail", pa.string()),
        ("leaver", pa.bool_()),
        ("drop", pa.bool_()),  # leaves the state once done
        ("owned", pa.bool_()),
        ("prev_profile_id", pa.string()),  # the state row replaced (another profile's on an address takeover)
        ("prev_email", pa.string()),
        ("prev_hash", pa.string()),
        ("prev_fingerprint", pa.int64()),
        ("prev_tags", TAGS_TYPE),
        ("prev_segments", TAGS_TYPE),
        ("prev_created", pa.bool_()),
        ("fingerprint", pa.int64()),
        ("segments", TAGS_TYPE),
    ]
)
SENDS = (UPSERT, EMAIL_CHANGE, ARCHIVE, TAGS)


@dataclass
class PlanSettings:
    segments: Sequence[str]  # this run's segments
    segment_tags: dict[str, str]  # every segment of the definition -> its tag
    tag_segments: bool
    on_leave: str
    full_sync: bool = False


@dataclass
class PlanSummary:
    """Counts of the plan; goes to the report (and decides the removal guard)."""

    generation: int = 0
    owned: int = 0
    planned: dict[str, int] = field(default_factory=dict)  # action -> profiles
    outcomes: dict[str, int] = field(default_factory=dict)  # outcomes decided without Mailchimp
    leavers: int = 0
    removals: int = 0  # members losing a tag or archived
    segments: dict[str, dict[str, int]] = field(default_factory=dict)  # joined / left / stayed

    @property
    def to_send(self) -> int:
        return sum(self.planned.get(a, 0) for a in SENDS)

    def to_dict(self) -> dict:
        return {**vars(self), "to_send": self.to_send}


def segment_scope(settings: PlanSettings, state: ExportState) -> tuple[set[str], set[str]]:
    """The run's segments, plus segments the definition no longer has (their members leave them), and
    their tags now and when last committed (a renamed tag is removed)."""
    known = set(settings.segment_tags)
    scope = set(settings.segments) | ((set(state.segments) | set(state.segment_tags)) - known)
    tags = {settings.segment_tags[s] for s in scope if s in settings.segment_tags}
    tags |= {state.segment_tags[s] for s in scope if s in state.segment_tags}
    return scope, tags


def patch_body(data_json: str) -> str:
    """The email change's PATCH: the new address and the data, never a status."""
    data = json.loads(data_json)
    data.pop("status_if_new", None)
    data.pop("status", None)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


class Planner:
    """Plans one run; call :meth:`run` once."""

    def __init__(self, settings: PlanSettings, state: ExportState, write: Callable[[int, pa.Table], None]):
        self.settings = settings
        self.state = state
        self.write = write
        self.summary = PlanSummary(generation=state.generation, owned=state.owned)
        self.scope, self.scope_tags = segment_scope(settings, state)
        self.members = state.members.combine_chunks()
        self.ids = self.members["profile_id"]
        self.by_id, self.by_hash = Lookup(self.ids), Lookup(self.members["subscriber_hash"])
        self.segment_counts = {s: {"joined": 0, "left": 0, "stayed": 0} for s in settings.segments}
        self.accepted_ids = pa.array([], pa.string())
        self.consumed: dict[int, str] = {}  # state rows taken over by a new profile with their address

    def run(
        self, member_parts: Iterable[pa.Table], accepted_ids: pa.Array, read_ids: pa.Array
    ) -> PlanSummary:
        """``accepted_ids``: profiles with a member this run; ``read_ids``: every profile read (accepted
        and rejected), so rejected owned profiles are not taken for leavers."""
        self.accepted_ids = accepted_ids
        index = -1
        for index, part in enumerate(member_parts):
            self.write(index, self._plan_part(part))
        self.write(index + 1, self._plan_leavers(read_ids))
        self.summary.segments = self.segment_counts
        return self.summary

    @functools.cached_property
    def accepted_owner(self) -> np.ndarray:
        """Whether each owned member's profile has a member this run (the few rows planned one by one
        ask, so it is found only if asked)."""
        return pc.is_in(self.ids, value_set=self.accepted_ids).to_numpy(zero_copy_only=False)

    def _count(self, key: str, bucket: dict[str, int]) -> None:
        bucket[key] = bucket.get(key, 0) + 1

    def _plan_part(self, part: pa.Table) -> pa.Table:
        hashes = part["subscriber_hash"].combine_chunks()
        by_id = self.by_id.index_in(part["profile_id"].combine_chunks())
        prev = self.members.take(by_id)  # the owned row by profile id (null when not owned)
        # the owned row by address, looked up only where it is not the profile's own
        moved = pc.fill_null(pc.not_equal(prev["subscriber_hash"], hashes), True).combine_chunks()
        by_hash = pc.replace_with_mask(
            pa.nulls(len(hashes), pa.int32()), moved, self.by_hash.index_in(hashes.filter(moved))
        )
        # The common cases are planned column-wise: members nobody owns yet, and owned members with
        # the same address, tags and segments as last time, their data the same or changed. The rest
        # goes row by row.
        new = pc.and_(pc.is_null(by_id), pc.is_null(by_hash))
        kept = pc.fill_null(
            pc.and_(
                pc.and_(
                    pc.equal(prev["subscriber_hash"], part["subscriber_hash"]),
                    pc.not_equal(prev["fingerprint"], DIRTY),
                ),
                pc.and_(
                    pc.equal(_joined(prev["tags"]), _joined(part["tags"])),
                    pc.equal(_joined(prev["segments"]), _joined(part["segments"])),
                ),
            ),
            False,
        )
        kept = pc.and_(kept, pa.scalar(not self.settings.full_sync))
        data_same = pc.fill_null(pc.equal(prev["fingerprint"], part["fingerprint"]), False)
        same = pc.and_(kept, data_same)
        changed = pc.and_(kept, pc.invert(data_same))
        rest = pc.invert(pc.or_(pc.or_(new, same), changed))
        # changed and row-by-row rows keep their order among themselves, as one group
        order = np.argsort(
            np.concatenate([np.flatnonzero(changed.to_numpy()), np.flatnonzero(rest.to_numpy())])
        )
        return pa.concat_tables(
            [
                self._plan_new(part.filter(new)),
                self._plan_unchanged(part.filter(same), prev.filter(same)),
                pa.concat_tables(
                    [
                        self._plan_changed(part.filter(changed), prev.filter(changed)),
                        self._plan_rows(part.filter(rest), by_id.filter(rest), by_hash.filter(rest)),
                    ]
                ).take(order),
            ]
        )

    def _count_column(self, segments: pa.ChunkedArray, key: str) -> None:
        flat = pc.list_flatten(segments)
        if len(flat):
            for item in pc.value_counts(flat).to_pylist():
                if item["values"] in self.segment_counts:
                    self.segment_counts[item["values"]][key] += item["counts"]

    def _plan_new(self, part: pa.Table) -> pa.Table:
        n = part.num_rows
        self.summary.planned[UPSERT] = self.summary.planned.get(UPSERT, 0) + n
        self._count_column(part["segments"], "joined")
        member, permissions = split_permissions_column(part["data_json"])
        return _plan_table(
            part,
            n,
            action=UPSERT,
            body=with_tags_column(member, part["tags"]),
            permissions=permissions,
            tags_add=part["tags"],
            owned=False,
            segments=part["segments"],
        )

    def _plan_changed(self, part: pa.Table, prev: pa.Table) -> pa.Table:
        """Owned members whose data changed, with the same address, tags and segments: sent again with
        no tags to add or remove."""
        n = part.num_rows
        self.summary.planned[UPSERT] = self.summary.planned.get(UPSERT, 0) + n
        self._count_column(part["segments"], "stayed")
        member, permissions = split_permissions_column(part["data_json"])
        return _plan_table(
            part,
            n,
            action=UPSERT,
            body=member,
            permissions=permissions,
            owned=True,
            segments=part["segments"],
            **_prev_columns(prev),
        )

    def _plan_unchanged(self, part: pa.Table, prev: pa.Table) -> pa.Table:
        n = part.num_rows
        self.summary.planned[NONE] = self.summary.planned.get(NONE, 0) + n
        self.summary.outcomes[UNCHANGED] = self.summary.outcomes.get(UNCHANGED, 0) + n
        self._count_column(part["segments"], "stayed")
        return _plan_table(
            part,
            n,
            action=NONE,
            outcome=UNCHANGED,
            owned=True,
            segments=part["segments"],
            **_prev_columns(prev),
        )

    def _plan_rows(self, part: pa.Table, by_id: pa.Array, by_hash: pa.Array) -> pa.Table:
        # previous state rows, looked up in bulk: by profile id, else by address
        prev_by_id = self.members.take(by_id).to_pylist()
        prev_by_hash = self.members.take(by_hash).to_pylist()
        rows = []
        columns = ("profile_id", "email", "subscriber_hash", "fingerprint", "data_json", "tags", "segments")
        values = [part[c].to_pylist() for c in columns]
        for member, i_id, i_hash, p_id, p_hash in zip(
            zip(*values, strict=True),
            by_id.to_pylist(),
            by_hash.to_pylist(),
            prev_by_id,
            prev_by_hash,
            strict=True,
        ):
            prev = p_id if i_id is not None else None
            rows.append(self._plan_member(*member, prev, i_hash, p_hash))
        return pa.Table.from_pylist(rows, schema=PLAN_SCHEMA)

    def _plan_member(self, pid, email, mhash, fp, data, tags, segs, prev, i_hash, hash_owner) -> dict:
        s = self.settings
        row = {"profile_id": pid, "email": email, "subscriber_hash": mhash, "fingerprint": fp}
        row.update(leaver=False, drop=False)
        if prev is None and i_hash is not None:
            if self.accepted_owner[i_hash]:
                # the address's owner moves to another address in this same run and the batch order is
                # undefined: this profile waits for the next run
                return self._local(row, None, FAILED, IN_TRANSIT, segs)
            prev = hash_owner  # a new profile took over an owned member's address
            self.consumed[i_hash] = pid
        self._count_segments(prev, segs)
        if prev is None:
            return self._send(row, None, UPSERT, data, add=tags, remove=[], segs=segs)
        prev_tags = prev["tags"] or []
        dirty = s.full_sync or prev["fingerprint"] == DIRTY
        add = sorted(set(tags) if dirty else set(tags) - set(prev_tags))
        remove = sorted((set(prev_tags) & self.scope_tags) - set(tags))
        if prev["subscriber_hash"] != mhash:
            if i_hash is not None and hash_owner["profile_id"] != pid and self.accepted_owner[i_hash]:
                return self._local(row, prev, FAILED, IN_TRANSIT, segs)
            if i_hash is not None and hash_owner["profile_id"] != pid:
                return self._local(
                    row,
                    prev,
                    EMAIL_CHANGE_CONFLICT,
                    "the new address belongs to another exported profile",
                    segs,
                )
            return self._send(row, prev, EMAIL_CHANGE, data, add=add, remove=remove, segs=segs)
        if dirty or fp != prev["fingerprint"] or add:
            return self._send(row, prev, UPSERT, data, add=add, remove=remove, segs=segs)
        if remove:
            return self._send(row, prev, TAGS, None, add=[], remove=remove, segs=segs, outcome=UPDATED)
        return self._local(row, prev, UNCHANGED, None, segs)

    def _count_segments(self, prev: dict | None, segs: list[str]) -> None:
        before = set(prev["segments"] or []) if prev else set()
        for segment in self.settings.segments:
            counts = self.segment_counts[segment]
            if segment in segs:
                counts["stayed" if segment in before else "joined"] += 1
            elif segment in before:
                counts["left"] += 1

    def _with_prev(self, row: dict, prev: dict | None, segs: list[str]) -> dict:
        row["owned"] = prev is not None
        if prev is not None:
            row.update(
                prev_profile_id=prev["profile_id"],
                prev_email=prev["email"],
                prev_hash=prev["subscriber_hash"],
                prev_fingerprint=prev["fingerprint"],
                prev_tags=prev["tags"] or [],
                prev_segments=prev["segments"] or [],
                prev_created=prev["created"],
            )
            kept = [x for x in prev["segments"] or [] if x not in self.scope]
            row["segments"] = sorted(set(kept) | set(segs))
        else:
            row["segments"] = sorted(segs)
        return row

    def _local(self, row: dict, prev: dict | None, outcome: str, detail: str | None, segs: list[str]) -> dict:
        row.update(action=NONE, tags_add=[], tags_remove=[], outcome=outcome, detail=detail)
        self._count(NONE, self.summary.planned)
        self._count(outcome, self.summary.outcomes)
        return self._with_prev(row, prev, segs)

    def _send(self, row, prev, action, data, *, add, remove, segs, outcome=None) -> dict:
        body = None
        if action == UPSERT:
            member, row["permissions"] = split_permissions(data)
            body = with_tags(member, add)
        elif action == EMAIL_CHANGE:  # a PATCH takes the permissions itself, on the member it moves
            body = patch_body(data)
            row["old_hash"] = prev["subscriber_hash"]
        row.update(action=action, body=body, tags_add=add, tags_remove=remove, outcome=outcome)
        self._count(action, self.summary.planned)
        if remove:
            self.summary.removals += 1
        return self._with_prev(row, prev, segs)

    def _plan_leavers(self, read_ids: pa.Array) -> pa.Table:
        # by sorted keys: Arrow's is_in would build a hash table of every profile read (0.7 GB for
        # 10,000,000), even when the export owns no one yet
        unread = pc.is_null(Lookup(read_ids).index_in(self.by_id.column))
        positions = pc.indices_nonzero(unread)
        rows = []
        for i, prev in zip(positions.to_pylist(), self.members.take(positions).to_pylist(), strict=True):
            if i in self.consumed:
                rows.append(self._taken_over(prev, self.consumed[i]))
                continue
            left = set(prev["segments"] or []) & self.scope
            if left:
                rows.append(self._plan_leaver(prev, left))
        return pa.Table.from_pylist(rows, schema=PLAN_SCHEMA)

    def _leaver_row(self, prev: dict) -> dict:
        return {
            "profile_id": prev["profile_id"],
            "email": prev["email"],
            "subscriber_hash": prev["subscriber_hash"],
            "fingerprint": prev["fingerprint"],
            "leaver": True,
        }

    def _taken_over(self, prev: dict, by: str) -> dict:
        """An owned profile gone from the warehouse whose address a new profile now has: the member
        stays and is the new profile's; nothing is removed for the old one."""
        self.summary.leavers += 1
        row = self._leaver_row(prev)
        row["drop"] = True
        return self._local(row, None, LEFT_KEPT, f"address taken over by profile {by}", [])

    def _plan_leaver(self, prev: dict, left: set[str]) -> dict:
        self.summary.leavers += 1
        for segment in left & set(self.settings.segments):
            self.segment_counts[segment]["left"] += 1
        row = self._leaver_row(prev)
        prev_tags = set(prev["tags"] or [])
        remaining = set(prev["segments"] or []) - self.scope
        if remaining:  # still in segments outside this run: lose only this run's tags
            remove, row["drop"] = sorted(prev_tags & self.scope_tags), False
        else:
            remove, row["drop"] = sorted(prev_tags), True
            if self.settings.on_leave == "keep":
                return self._local(row, prev, LEFT_KEPT, None, [])
            if self.settings.on_leave == "archive" and prev["created"]:
                self.summary.removals += 1
                self._count(ARCHIVE, self.summary.planned)
                row.update(action=ARCHIVE, tags_add=[], tags_remove=[], outcome=ARCHIVED)
                return self._with_prev(row, prev, [])
        if not remove:
            return self._local(row, prev, LEFT_KEPT, "no tags of the export to remove", [])
        return self._send(row, prev, TAGS, None, add=[], remove=remove, segs=[], outcome=UNTAGGED)


# A polynomial hash of a string's bytes mod 2**64, with an odd base so it has an inverse: the sum over a
# string of (byte + 1) * Q**position, times P**end, weighs each byte by P**(distance to the end), so
# every string of a column is hashed at once from prefix sums. Keys only narrow the search: a match is
# confirmed on the strings themselves.
_P = 0x100000001B3
_Q = pow(_P, -1, 2**64)
_KEY_BATCH = 16_384  # strings hashed at once (bounds the temporary arrays: 8 bytes a byte of text)


def _powers(base: int, count: int) -> np.ndarray:
    powers = np.full(count, base, np.uint64)
    powers[:1] = 1
    return np.cumprod(powers, out=powers)  # wraps around mod 2**64, as meant


def _string_keys(strings: pa.Array) -> np.ndarray:
    """A 64-bit key of each string (a null hashes as the empty string)."""
    _, offsets, data = strings.buffers()
    ends = np.frombuffer(offsets, np.int64 if pa.types.is_large_string(strings.type) else np.int32)
    ends = ends[strings.offset : strings.offset + len(strings) + 1].astype(np.int64)
    text = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    starts = np.arange(0, len(strings), _KEY_BATCH)
    longest = int(np.max(ends[np.minimum(starts + _KEY_BATCH, len(strings))] - ends[starts], initial=0))
    p, q = _powers(_P, longest + 1), _powers(_Q, longest)
    keys = np.empty(len(strings), np.uint64)
    for start in starts.tolist():
        batch = ends[start : start + _KEY_BATCH + 1]
        size = batch[-1] - batch[0]
        sums = np.zeros(size + 1, np.uint64)
        np.cumsum((text[batch[0] : batch[-1]] + np.uint64(1)) * q[:size], out=sums[1:])
        local = batch - batch[0]
        keys[start : start + len(batch) - 1] = p[local[1:]] * (sums[local[1:]] - sums[local[:-1]])
    return keys


class Lookup:
    """``pc.index_in(values, value_set=column)`` for many parts' values against one large column, its
    index built once: Arrow builds a hash table of the value set on every call, 0.3 s a part against
    1,000,000 owned members. Keys are sorted once and searched; each match is checked on the strings,
    and the rare value whose key matched another string (a collision) is looked up by Arrow. ``last``:
    a value's last row in the column, not its first (without a reversed copy of the column)."""

    def __init__(self, column: pa.Array | pa.ChunkedArray, last: bool = False) -> None:
        self.column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        self.last = last

    @functools.cached_property
    def _sorted(self) -> tuple[np.ndarray, np.ndarray]:
        """The column's rows by key (equal keys: the first row first, or the last with ``last``) and
        their keys; built when first asked."""
        keys = _string_keys(self.column)
        if self.column.null_count:
            valid = np.flatnonzero(self.column.is_valid().to_numpy(zero_copy_only=False))
            valid = valid[::-1] if self.last else valid
            rows = valid[np.argsort(keys[valid], kind="stable")]
        elif self.last:  # without a copy of the row numbers: 10,000,000 of them are 80 MB
            rows = np.argsort(keys[::-1], kind="stable")
            np.subtract(len(keys) - 1, rows, out=rows)
        else:
            rows = np.argsort(keys, kind="stable")
        return rows, keys[rows]

    def _index_in(self, values: pa.Array) -> pa.Array:
        """Arrow's ``index_in``, of the last row with ``last``."""
        if not self.last:
            return pc.index_in(values, value_set=self.column).cast(pa.int64())
        backwards = pa.array(np.arange(len(self.column) - 1, -1, -1, dtype=np.int64))
        return backwards.take(pc.index_in(values, value_set=self.column.take(backwards)))

    def index_in(self, values: pa.Array) -> pa.Array:
        if not len(values):
            return pa.array([], pa.int32())
        if not len(self.column):
            return pa.nulls(len(values), pa.int32())
        rows, sorted_keys = self._sorted
        if not len(rows):  # nothing but nulls
            return self._index_in(values).cast(pa.int32())
        keys = _string_keys(values)
        at = np.minimum(np.searchsorted(sorted_keys, keys), len(rows) - 1)
        candidate = pa.array(rows[at], mask=sorted_keys[at] != keys)
        confirmed = pc.fill_null(pc.equal(self.column.take(candidate), values), False)
        found = pc.if_else(confirmed, candidate, pa.scalar(None, pa.int64()))
        null = pc.is_null(values)
        collided = pc.and_(pc.and_(pc.is_valid(candidate), pc.invert(confirmed)), pc.invert(null))
        if pc.any(collided).as_py():
            found = pc.replace_with_mask(found, collided, self._index_in(values.filter(collided)))
        if values.null_count:  # a null is found where the column has its first (or last) null
            nulls = np.flatnonzero(pc.is_null(self.column).to_numpy(zero_copy_only=False))
            at_null = (int(nulls[-1]) if self.last else int(nulls[0])) if len(nulls) else None
            found = pc.if_else(null, pa.scalar(at_null, pa.int64()), found)
        return found.cast(pa.int32())


def _prev_columns(prev: pa.Table) -> dict[str, pa.ChunkedArray]:
    """The plan's columns of the state rows replaced."""
    return {
        "prev_profile_id": prev["profile_id"],
        "prev_email": prev["email"],
        "prev_hash": prev["subscriber_hash"],
        "prev_fingerprint": prev["fingerprint"],
        "prev_tags": prev["tags"],
        "prev_segments": prev["segments"],
        "prev_created": prev["created"],
    }


def _joined(lists: pa.ChunkedArray) -> pa.ChunkedArray:
    """A list of names as one comparable string (lists are sorted on both sides)."""
    return pc.binary_join(lists, "\x1f")


_MEMBER_COLUMNS = ("profile_id", "email", "subscriber_hash", "fingerprint")


def _plan_table(part: pa.Table, n: int, **columns: object) -> pa.Table:
    """Plan rows for a whole part at once; columns not given are empty (lists) or null."""
    arrays = []
    for column in PLAN_SCHEMA:
        value = columns.get(column.name, part[column.name] if column.name in _MEMBER_COLUMNS else None)
        if isinstance(value, pa.Array | pa.ChunkedArray):
            arrays.append(value)
        elif value is None and column.type == TAGS_TYPE:
            empty = pa.array(np.zeros(n + 1, np.int32))
            arrays.append(pa.ListArray.from_arrays(empty, pa.array([], pa.string()), type=TAGS_TYPE))
        elif value is None and column.name in ("leaver", "drop"):
            arrays.append(pa.repeat(pa.scalar(False), n))
        else:  # one value repeated by Arrow, not a Python list of n values converted
            arrays.append(pa.repeat(pa.scalar(value, column.type), n))
    return pa.Table.from_arrays(arrays, schema=PLAN_SCHEMA)


def check_removals(summary: PlanSummary, share: float, count: int | None) -> str | None:
    """Why the plan must stop (a message), or None when its removals are within the limits."""
    owned, removals = summary.owned, summary.removals
    limit_share = share * owned
    if removals > limit_share:
        limit = f"max_removals.share={share:g} of {owned:,} owned members = {limit_share:,.0f}"
    elif count is not None and removals > count:
        limit = f"max_removals.count={count:,}"
    else:
        return None
    return (
        f"the run would remove tags from or archive {removals:,} of the {owned:,} members the export owns, "
        f"more than {limit}. Nothing was sent. If the segments really shrank, run the export manually with "
        "the param allow_removals=true, or raise max_removals in the export definition; if a segment came "
        "back empty by mistake, fix the warehouse and let the next run go."
    )
