"""Validate and map: turn extracted rows into Mailchimp members and locally rejected profiles.

The output contract (``MEMBER_SCHEMA``): per accepted profile its address, subscriber hash, the member
object without tags as JSON (``data_json``: what :func:`member_json` writes), a ``fingerprint`` of that
JSON, the Mailchimp ``tags`` of the run's segments it is in (none when segments are not tagged) and those
``segments`` by name (both sorted). Deciding what to send is not prepare's job: it depends on what the
export already gave Mailchimp.

Rows arrive ordered by address (see ``extract.build_query``), so all rows of one address are adjacent
and are merged into one member while streaming: memory grows with the chunk, plus one small integer per
accepted address for the cross-chunk duplicate check.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mailchimp_provider.export.mapping import FieldPlan, json_strings, map_columns, map_values
from mailchimp_provider.export.member_fields import MemberFieldPlan
from mailchimp_provider.export.validate import Reason, normalise_email, normalise_emails

MEMBER_SCHEMA = pa.schema(
    [
        ("profile_id", pa.string()),
        ("email", pa.string()),
        ("subscriber_hash", pa.string()),
        ("fingerprint", pa.int64()),
        ("data_json", pa.string()),
        ("tags", pa.list_(pa.string())),
        ("segments", pa.list_(pa.string())),
    ]
)
REJECT_SCHEMA = pa.schema(
    [("profile_id", pa.string()), ("email", pa.string()), ("reason", pa.string()), ("detail", pa.string())]
)


@dataclass(frozen=True)
class PrepareSettings:
    id_column: str
    email_column: str
    segment_column: str
    fields: list[FieldPlan]
    status_if_new: str
    tag_segments: bool
    archived_hashes: frozenset[str] = frozenset()
    segment_tags: Mapping[str, str] = field(default_factory=dict)  # segment -> tag when not its name
    member_fields: MemberFieldPlan | None = None  # interests, language, VIP, marketing permissions
    # Prepare only the addresses of one subscriber-hash partition (addresses that fail the check go
    # to partition 0): all rows of an address land in one partition, so partitions prepared apart
    # (several workers, each reading every extracted part) add up to the whole, exactly.
    partition: int = 0
    partitions: int = 1

    def tag_of(self, segment: str) -> str:
        return self.segment_tags.get(segment, segment)


@dataclass
class PrepareResult:
    rows_read: int = 0
    profiles_read: int = 0
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    dropped_values: dict[str, int] = field(default_factory=dict)
    parts: int = 0


_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_STRING = json.encoder.encode_basestring  # the C encoder json.dumps itself uses


def member_json(email: str, status_if_new: str, merge_fields: dict, more: str = "") -> str:
    """The batch-subscribe member object without tags as compact JSON, written directly: the same text
    ``json.dumps(..., ensure_ascii=False, separators=(",", ":"))`` gives, in a fraction of the time.
    ``more``: further keys as JSON text, from :meth:`MemberFieldPlan.fragment`."""
    fields = ",".join(
        f"{_STRING(tag)}:{_STRING(value) if isinstance(value, str) else _ENCODE(value)}"
        for tag, value in merge_fields.items()
    )
    return (
        f'{{"email_address":{_STRING(email)},"status_if_new":{_STRING(status_if_new)},'
        f'"merge_fields":{{{fields}}}{more}}}'
    )


def with_tags(data_json: str, tags: list[str]) -> str:
    """The member object to send: ``data_json`` with the tags to add spliced in (none: unchanged)."""
    if not tags:
        return data_json
    return data_json[:-1] + ',"tags":[' + ",".join(map(_STRING, tags)) + "]}"


def with_tags_column(data_json: pa.Array, tags: pa.Array) -> pa.Array:
    """:func:`with_tags` over columns; each distinct tag is written as JSON once."""
    tags = tags.combine_chunks() if isinstance(tags, pa.ChunkedArray) else tags
    names = pc.list_flatten(tags).dictionary_encode()
    quoted = pa.array(map(_STRING, names.dictionary.to_pylist()), pa.string()).take(names.indices)
    owner = pc.list_parent_indices(tags).to_numpy()
    joined = pc.binary_join(_list_column(owner, quoted, len(tags)), ",")
    spliced = pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(data_json, 0, -1), ',"tags":[', joined, "]}", ""
    )
    return pc.if_else(pc.fill_null(pc.greater(pc.list_value_length(tags), 0), False), spliced, data_json)


def fingerprint(data_json: str) -> int:
    """A signed 64-bit digest of a member's data (tags are tracked apart, in the export's state)."""
    return int.from_bytes(hashlib.blake2b(data_json.encode(), digest_size=8).digest(), "big", signed=True)


@dataclass
class _Rejects:
    """Rejected profiles of one part, kept in the order the row-by-row rules would give them: by
    address group, and within it by the profile's first row (``order``), a group's lead last when the
    member itself is refused after its duplicates were."""

    group: list[int] = field(default_factory=list)
    order: list[int] = field(default_factory=list)
    rows: list[tuple[str | None, str | None, str, str]] = field(default_factory=list)

    def add(
        self, group: int, order: int, profile_id: str | None, email: str | None, reason: Reason, detail: str
    ) -> None:
        self.group.append(group)
        self.order.append(order)
        self.rows.append((profile_id, email, reason.value, detail))

    def table(self) -> pa.Table:
        ranked = sorted(range(len(self.rows)), key=lambda i: (self.group[i], self.order[i]))
        columns = list(zip(*(self.rows[i] for i in ranked), strict=True)) or [()] * len(REJECT_SCHEMA)
        return pa.Table.from_arrays(
            [pa.array(c, t.type) for c, t in zip(columns, REJECT_SCHEMA, strict=True)], schema=REJECT_SCHEMA
        )


def _views(strings: pa.Array) -> tuple[memoryview, list[int]]:
    """Arrow's UTF-8 data of a string column and each string's end in it, so strings are hashed from
    Arrow's buffers with no Python string made per row."""
    _, offsets, data = strings.buffers()
    ends = np.frombuffer(offsets, np.int32)[strings.offset : strings.offset + len(strings) + 1].tolist()
    return memoryview(data if data is not None else b""), ends


def _md5s(strings: pa.Array) -> bytes:
    """The MD5 digest of each string (Mailchimp's subscriber hash), concatenated. The hash is called
    in the comprehension itself: a helper function per row cost a tenth of the hashing."""
    view, ends, md5 = *_views(strings), hashlib.md5
    return b"".join([md5(view[a:b]).digest() for a, b in itertools.pairwise(ends)])  # noqa: S324


def _blake8s(strings: pa.Array) -> bytes:
    """The 8-byte BLAKE2b digest of each string (the member fingerprint), concatenated."""
    view, ends, blake2b = *_views(strings), hashlib.blake2b
    return b"".join([blake2b(view[a:b], digest_size=8).digest() for a, b in itertools.pairwise(ends)])


def _hex(digests: bytes, size: int) -> pa.Array:
    """Digests of ``size`` bytes each as lower-case hex strings."""
    count = len(digests) // size
    offsets = pa.py_buffer(np.arange(0, (count + 1) * 2 * size, 2 * size, dtype=np.int32).tobytes())
    return pa.StringArray.from_buffers(count, offsets, pa.py_buffer(digests.hex().encode()))


def _list_column(owner: np.ndarray, values: pa.Array, count: int) -> pa.Array:
    """A list per owner 0..count-1 from values ordered by owner."""
    offsets = np.zeros(count + 1, np.int32)
    np.cumsum(np.bincount(owner, minlength=count), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def _group_starts(keys: pa.Array) -> np.ndarray:
    """First row of each run of equal keys (missing addresses form runs too, as in ``==`` on None)."""
    if len(keys) == 0:
        return np.zeros(0, np.int64)
    before, after = keys.slice(0, len(keys) - 1), keys.slice(1)
    same = pc.or_(
        pc.fill_null(pc.equal(before, after), False), pc.and_(pc.is_null(before), pc.is_null(after))
    )
    return np.concatenate([[0], np.flatnonzero(~same.to_numpy(zero_copy_only=False)) + 1])


class Preparer:
    """Streams extracted parts through validation and mapping; one instance per run.

    Whole columns go through Arrow compute: the email check's common path, the group of each address,
    merge-field conversion and the member JSON. Python handles only the rows that need it (missing,
    padded, non-ASCII or malformed addresses, odd merge-field values, the profiles of a shared
    address). The output is exactly what applying the rules row by row gives (tests/export hold that
    reference and compare).
    """

    def __init__(
        self,
        settings: PrepareSettings,
        write_members: Callable[[int, pa.Table], None],
        write_rejects: Callable[[int, pa.Table], None],
    ) -> None:
        self.settings = settings
        self.write_members = write_members
        self.write_rejects = write_rejects
        self.result = PrepareResult()
        self._seen: set[int] = set()
        self._archived = pa.array(sorted(settings.archived_hashes), pa.string())
        self._status = _STRING(settings.status_if_new)

    def run(self, parts: Iterable[pa.Table]) -> PrepareResult:
        carry: pa.Table | None = None
        for index, part in enumerate(parts):
            self.result.rows_read += part.num_rows
            table = part.cast(pa.schema([(name, pa.string()) for name in part.column_names]))
            if carry is not None:
                table = pa.concat_tables([carry, table])
            table = table.combine_chunks()
            emails, starts = self._groups(table)
            # The last address may continue in the next part, so its rows are carried over.
            last = int(starts[-1]) if len(starts) else table.num_rows
            if last:
                self._write(index, self._prepare(table.slice(0, last), emails.slice(0, last), starts[:-1]))
            carry = table.slice(last)
            self.result.parts = index + 1
        if carry is not None and carry.num_rows:
            emails, starts = self._groups(carry)
            members, rejects = self._prepare(carry, emails, starts)
        else:
            members, rejects = MEMBER_SCHEMA.empty_table(), REJECT_SCHEMA.empty_table()
        self._write(self.result.parts, (members, rejects), always=True)
        return self.result

    def _write(self, index: int, tables: tuple[pa.Table, pa.Table], *, always: bool = False) -> None:
        members, rejects = tables
        if always or members.num_rows or rejects.num_rows:
            self.write_members(index, members)
            self.write_rejects(index, rejects)

    def _groups(self, table: pa.Table) -> tuple[pa.Array, np.ndarray]:
        """Each row's address normalised where its common path applies (null elsewhere), and the first
        row of each address group; the group key is the trimmed, lower-cased raw address."""
        raw = table[self.settings.email_column].chunk(0) if table.num_rows else pa.array([], pa.string())
        emails = normalise_emails(raw)
        rare = pc.is_null(emails)
        keys = pc.replace_with_mask(
            pc.ascii_lower(raw),
            rare,
            pa.array([v.strip().lower() if v else None for v in raw.filter(rare).to_pylist()], pa.string()),
        )
        return emails, _group_starts(keys)

    def _first_seen(self, keys: np.ndarray) -> np.ndarray:
        """Whether each key is met for the first time in the run (earlier parts, then earlier in this
        one), the set of keys seen updated: by whole arrays, not a set lookup per row in Python."""
        _, firsts = np.unique(keys, return_index=True)
        fresh = np.zeros(len(keys), bool)
        fresh[firsts] = True
        distinct = keys[firsts].tolist()
        if earlier := self._seen.intersection(distinct):
            fresh &= ~np.isin(keys, np.array(list(earlier), keys.dtype))
        self._seen.update(distinct)
        return fresh

    def _prepare(self, table: pa.Table, emails: pa.Array, starts: np.ndarray) -> tuple[pa.Table, pa.Table]:
        """Complete address groups (``starts``: each group's first row): at most one member per
        address, every other profile rejected with its reason."""
        s = self.settings
        n, groups = table.num_rows, len(starts)
        ids, raw = table[s.id_column].chunk(0), table[s.email_column].chunk(0)
        single = groups == n  # the common case: one row per address
        email = emails if single else emails.take(starts)

        # Each distinct profile of a group, at its first row; the group's lead profile comes first.
        if single:
            profile_rows = profile_groups = group_of = np.arange(n)
        else:
            sizes = np.diff(np.append(starts, n))
            group_of = np.repeat(np.arange(groups), sizes)
            shared = np.repeat(sizes > 1, sizes)  # rows of groups with several rows
            firsts = (
                pa.table({"group": group_of[shared], "id": ids.filter(shared), "row": np.flatnonzero(shared)})
                .group_by(["group", "id"], use_threads=False)
                .aggregate([("row", "min")])
            )
            profile_rows = np.sort(np.concatenate([starts[sizes == 1], firsts["row_min"].to_numpy()]))
            profile_groups = group_of[profile_rows]

        # The email check: rows its common path did not take are checked one by one.
        rare = pc.is_null(email)
        rare_groups = np.flatnonzero(rare.to_numpy(zero_copy_only=False))
        checks = [normalise_email(v) for v in raw.take(starts[rare_groups]).to_pylist()]
        if checks:
            email = pc.replace_with_mask(email, rare, pa.array([c.email for c in checks], pa.string()))
        refused: dict[int, tuple[Reason, str]] = {
            int(g): (c.reason, c.detail) for g, c in zip(rare_groups, checks, strict=True) if c.reason
        }

        # One member per address over the whole run, by the subscriber hash's first 64 bits.
        valid = np.flatnonzero(pc.is_valid(email).to_numpy(zero_copy_only=False))
        valid_emails = email.take(valid)
        digests = _md5s(pc.ascii_lower(valid_emails))  # valid addresses are ASCII
        if s.partitions > 1:
            partition_of = np.zeros(groups, np.int64)
            partition_of[valid] = np.frombuffer(digests, np.uint8)[::16] % s.partitions
            mine = partition_of == s.partition
            ours = mine[valid]
            valid, valid_emails = valid[ours], valid_emails.filter(ours)
            digests = np.frombuffer(digests, np.uint8).reshape(-1, 16)[ours].tobytes()
            profile_rows, profile_groups = (
                profile_rows[mine[profile_groups]],
                profile_groups[mine[profile_groups]],
            )
        self.result.profiles_read += len(profile_rows)
        hashes = _hex(digests, 16)
        fresh = self._first_seen(np.frombuffer(digests, ">u8")[::2].astype(np.uint64))
        for i in np.flatnonzero(~fresh).tolist():
            refused[int(valid[i])] = (Reason.DUPLICATE_EMAIL, "address already exported for another profile")

        archived = (
            pc.is_in(hashes, value_set=self._archived).to_numpy(zero_copy_only=False)
            if len(self._archived)
            else np.zeros(len(valid), bool)
        )
        candidates = np.flatnonzero(fresh & ~archived)  # positions in valid
        # The merge fields' columns (the email column's too, so the row count stays when there are none)
        # of each candidate's first row: taken once, not every column of every group first.
        fields = table.select(list(dict.fromkeys([s.email_column, *(f.column for f in s.fields)])))
        data_json, complete = self._member_json(
            fields.take(starts[valid[candidates]]), valid_emails.take(candidates)
        )
        accepted = candidates[complete]
        members = valid[accepted]  # groups

        rejects = _Rejects()
        whole = np.isin(profile_groups, list(refused))
        shared = ~whole & np.isin(profile_groups, valid[fresh]) & (profile_rows != starts[profile_groups])
        for row, group in zip(
            profile_rows[whole | shared].tolist(), profile_groups[whole | shared].tolist(), strict=True
        ):
            if group in refused:
                reason, detail = refused[group]
            else:
                reason, detail = (
                    Reason.DUPLICATE_EMAIL,
                    f"same address as profile {ids[starts[group]].as_py()}",
                )
            rejects.add(group, row, ids[row].as_py(), raw[row].as_py(), reason, detail)
        for group in valid[fresh & archived].tolist():
            rejects.add(
                group,
                n,
                ids[starts[group]].as_py(),
                raw[starts[group]].as_py(),
                Reason.ARCHIVED_IN_AUDIENCE,
                "the member is archived in Mailchimp; exports never restore archived members",
            )
        for group in valid[candidates[~complete]].tolist():
            rejects.add(
                group,
                n,
                ids[starts[group]].as_py(),
                raw[starts[group]].as_py(),
                Reason.MISSING_REQUIRED_MERGE_FIELD,
                "a required merge field is empty or invalid",
            )
        for _, _, reason, _ in rejects.rows:
            self.result.rejected[reason] = self.result.rejected.get(reason, 0) + 1
        self.result.accepted += len(members)

        data_json = data_json.filter(complete)
        segments, tags = self._segments(table, group_of, members, single)
        if s.member_fields:
            data_json = self._with_member_fields(table.take(starts[members]), segments, data_json)
        return (
            pa.Table.from_arrays(
                [
                    ids.take(starts[members]),
                    valid_emails.take(accepted),
                    hashes.take(accepted),
                    pa.array(np.frombuffer(_blake8s(data_json), ">i8").astype(np.int64)),
                    data_json,
                    tags,
                    segments,
                ],
                schema=MEMBER_SCHEMA,
            ),
            rejects.table(),
        )

    def _with_member_fields(self, firsts: pa.Table, segments: pa.Array, data_json: pa.Array) -> pa.Array:
        """Each member's JSON with its groups, language, VIP and permissions (``MemberFieldPlan.fragment``,
        read from its first row) before the closing brace. Row by row: such exports are the rare ones, and
        exports without member fields never come here."""
        fragment, dropped = self.settings.member_fields.fragment, self.result.dropped_values
        return pa.array(
            [
                text[:-1] + fragment(row, segs, dropped) + "}"
                for text, row, segs in zip(
                    data_json.to_pylist(), firsts.to_pylist(), segments.to_pylist(), strict=True
                )
            ],
            pa.string(),
        )

    def _member_json(self, rows: pa.Table, emails: pa.Array) -> tuple[pa.Array, np.ndarray]:
        """Each candidate's member JSON (what :func:`member_json` writes) and whether it is complete
        (False: a required merge field is empty or invalid)."""
        s = self.settings
        merge_fields, required_empty = map_columns(s.fields, rows)
        data_json = pc.binary_join_element_wise(
            '{"email_address":',
            json_strings(emails),
            ',"status_if_new":',
            self._status,
            ',"merge_fields":',
            merge_fields,
            "}",
            "",
        )
        rare = pc.is_null(merge_fields)
        rare_rows = np.flatnonzero(rare.to_numpy(zero_copy_only=False))
        written: list[str | None] = []
        for row, address in zip(
            rows.take(rare_rows).to_pylist(), emails.take(rare_rows).to_pylist(), strict=True
        ):
            fields = map_values(s.fields, row, self.result.dropped_values)
            written.append(None if fields is None else member_json(address, s.status_if_new, fields))
        if written:
            data_json = pc.replace_with_mask(data_json, rare, pa.array(written, pa.string()))
        complete = pc.and_(pc.is_valid(data_json), pc.invert(pc.fill_null(required_empty, False)))
        return data_json, complete.to_numpy(zero_copy_only=False)

    def _segments(
        self, table: pa.Table, group_of: np.ndarray, members: np.ndarray, single: bool
    ) -> tuple[pa.Array, pa.Array]:
        """Each member's segments (distinct, sorted) and tags (sorted), from all rows of its group."""
        s = self.settings
        segment = table[s.segment_column].chunk(0)
        rank = np.full(int(group_of[-1]) + 1 if len(group_of) else 0, -1)
        rank[members] = np.arange(len(members))
        owner_of_row = rank[group_of]
        keep = (owner_of_row >= 0) & pc.fill_null(pc.not_equal(segment, ""), False).to_numpy(
            zero_copy_only=False
        )
        owner, values = owner_of_row[keep], segment.filter(pa.array(keep))
        if not single:  # several rows per address: sort within each member, keep each segment once
            ordered = pa.table({"owner": owner, "segment": values}).sort_by(
                [("owner", "ascending"), ("segment", "ascending")]
            )
            owner, values = ordered["owner"].to_numpy(), ordered["segment"].combine_chunks()
            new = np.ones(len(owner), bool)
            if len(owner) > 1:
                new[1:] = (owner[1:] != owner[:-1]) | ~pc.equal(
                    values.slice(1), values.slice(0, len(values) - 1)
                ).to_numpy(zero_copy_only=False)
            owner, values = owner[new], values.filter(pa.array(new))
        segments = _list_column(owner, values, len(members))
        if not s.tag_segments:
            return segments, _list_column(np.zeros(0, np.int64), pa.array([], pa.string()), len(members))
        if not s.segment_tags:
            return segments, segments
        encoded = values.dictionary_encode()
        tags = pa.array([s.tag_of(v) for v in encoded.dictionary.to_pylist()], pa.string()).take(
            encoded.indices
        )
        ordered = pa.table({"owner": owner, "tag": tags}).sort_by(
            [("owner", "ascending"), ("tag", "ascending")]
        )
        return segments, _list_column(
            ordered["owner"].to_numpy(), ordered["tag"].combine_chunks(), len(members)
        )
