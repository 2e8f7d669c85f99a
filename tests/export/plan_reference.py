"""The planner that ``plan.Planner`` replaced, kept only as the oracle its output is compared with
(test_plan_differential.py): Arrow's ``index_in`` per part, new members' bodies and every owned member
but the unchanged ones planned row by row in Python."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pyarrow as pa
import pyarrow.compute as pc
from mailchimp_provider.export.member_fields import split_permissions
from mailchimp_provider.export.plan import (
    ARCHIVE,
    ARCHIVED,
    EMAIL_CHANGE,
    EMAIL_CHANGE_CONFLICT,
    FAILED,
    IN_TRANSIT,
    LEFT_KEPT,
    NONE,
    PLAN_SCHEMA,
    TAGS,
    TAGS_TYPE,
    UNCHANGED,
    UNTAGGED,
    UPDATED,
    UPSERT,
    PlanSettings,
    PlanSummary,
    patch_body,
    segment_scope,
)
from mailchimp_provider.export.prepare import with_tags
from mailchimp_provider.export.state import DIRTY, ExportState


class ReferencePlanner:
    """Plans one run; call :meth:`run` once (the planner before its common paths went column-wise)."""

    def __init__(self, settings: PlanSettings, state: ExportState, write: Callable[[int, pa.Table], None]):
        self.settings = settings
        self.state = state
        self.write = write
        self.summary = PlanSummary(generation=state.generation, owned=state.owned)
        self.scope, self.scope_tags = segment_scope(settings, state)
        self.members = state.members.combine_chunks()
        self.ids = self.members["profile_id"]
        self.hashes = self.members["subscriber_hash"]
        self.segment_counts = {s: {"joined": 0, "left": 0, "stayed": 0} for s in settings.segments}
        self.accepted_owner: list[bool] = []
        self.consumed: dict[int, str] = {}  # state rows taken over by a new profile with their address

    def run(
        self, member_parts: Iterable[pa.Table], accepted_ids: pa.Array, read_ids: pa.Array
    ) -> PlanSummary:
        """``accepted_ids``: profiles with a member this run; ``read_ids``: every profile read (accepted
        and rejected), so rejected owned profiles are not taken for leavers."""
        self.accepted_owner = pc.is_in(self.ids, value_set=accepted_ids).to_pylist()
        index = -1
        for index, part in enumerate(member_parts):
            self.write(index, self._plan_part(part))
        self.write(index + 1, self._plan_leavers(read_ids))
        self.summary.segments = self.segment_counts
        return self.summary

    def _count(self, key: str, bucket: dict[str, int]) -> None:
        bucket[key] = bucket.get(key, 0) + 1

    def _plan_part(self, part: pa.Table) -> pa.Table:
        by_id = pc.index_in(part["profile_id"], value_set=self.ids)
        by_hash = pc.index_in(part["subscriber_hash"], value_set=self.hashes)
        prev = self.members.take(by_id)  # the owned row by profile id (null when not owned)
        # The two common cases are planned column-wise: members nobody owns yet, and owned members
        # with the same address, data, tags and segments as last time. The rest goes row by row.
        new = pc.and_(pc.is_null(by_id), pc.is_null(by_hash))
        same = pc.fill_null(
            pc.and_(
                pc.and_(
                    pc.equal(prev["subscriber_hash"], part["subscriber_hash"]),
                    pc.equal(prev["fingerprint"], part["fingerprint"]),
                ),
                pc.and_(
                    pc.equal(_joined(prev["tags"]), _joined(part["tags"])),
                    pc.equal(_joined(prev["segments"]), _joined(part["segments"])),
                ),
            ),
            False,
        )
        same = pc.and_(same, pa.scalar(not self.settings.full_sync))
        same = pc.and_(same, pc.fill_null(pc.not_equal(prev["fingerprint"], DIRTY), False))
        rest = pc.invert(pc.or_(new, same))
        return pa.concat_tables(
            [
                self._plan_new(part.filter(new)),
                self._plan_unchanged(part.filter(same), prev.filter(same)),
                self._plan_rows(part.filter(rest), by_id.filter(rest), by_hash.filter(rest)),
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
        bodies, permissions = [], []
        for data, tags in zip(part["data_json"].to_pylist(), part["tags"].to_pylist(), strict=True):
            member, patch = split_permissions(data)
            bodies.append(with_tags(member, tags))
            permissions.append(patch)
        return _plan_table(
            part,
            n,
            action=UPSERT,
            body=pa.array(bodies, pa.string()),
            permissions=pa.array(permissions, pa.string()),
            tags_add=part["tags"],
            owned=False,
            segments=part["segments"],
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
            prev_profile_id=prev["profile_id"],
            prev_email=prev["email"],
            prev_hash=prev["subscriber_hash"],
            prev_fingerprint=prev["fingerprint"],
            prev_tags=prev["tags"],
            prev_segments=prev["segments"],
            prev_created=prev["created"],
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
        unread = pc.invert(pc.is_in(self.ids, value_set=read_ids))
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
            arrays.append(pa.array([[]] * n, TAGS_TYPE))
        elif value is None and column.name in ("leaver", "drop"):
            arrays.append(pa.array([False] * n, pa.bool_()))
        else:
            arrays.append(pa.array([value] * n, column.type))
    return pa.Table.from_arrays(arrays, schema=PLAN_SCHEMA)
