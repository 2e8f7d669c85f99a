"""Validate and map: turn extracted rows into Mailchimp members and locally rejected profiles.

The output contract (``MEMBER_SCHEMA``): per accepted profile its address, subscriber hash, the member
object without tags as JSON (``data_json``, written only by :func:`member_json`), a ``fingerprint`` of that
JSON, the Mailchimp ``tags`` of the run's segments it is in (none when segments are not tagged) and those
``segments`` by name (both sorted). Deciding what to send is not prepare's job: it depends on what the
export already gave Mailchimp.

Rows arrive ordered by address (see ``extract.build_query``), so all rows of one address are adjacent
and are merged into one member while streaming: memory grows with the chunk, plus one small integer per
accepted address for the cross-chunk duplicate check.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import pyarrow as pa

from mailchimp_provider.export.mapping import FieldPlan, map_values
from mailchimp_provider.export.member_fields import MemberFieldPlan
from mailchimp_provider.export.validate import Reason, normalise_email, subscriber_hash

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


def fingerprint(data_json: str) -> int:
    """A signed 64-bit digest of a member's data (tags are tracked apart, in the export's state)."""
    return int.from_bytes(hashlib.blake2b(data_json.encode(), digest_size=8).digest(), "big", signed=True)


class _PartWriter:
    """Buffers output rows and writes a Parquet part per input part."""

    def __init__(self, schema: pa.Schema, write: Callable[[int, pa.Table], None]) -> None:
        self.schema = schema
        self.write = write
        self.rows: list[tuple] = []

    def add(self, *values: object) -> None:
        self.rows.append(values)

    def flush(self, index: int) -> None:
        columns = list(zip(*self.rows, strict=True)) if self.rows else [()] * len(self.schema)
        self.write(
            index,
            pa.Table.from_arrays(
                [pa.array(c, t.type) for c, t in zip(columns, self.schema, strict=True)], schema=self.schema
            ),
        )
        self.rows = []


class Preparer:
    """Streams extracted parts through validation and mapping; one instance per run."""

    def __init__(
        self,
        settings: PrepareSettings,
        write_members: Callable[[int, pa.Table], None],
        write_rejects: Callable[[int, pa.Table], None],
    ) -> None:
        self.settings = settings
        self.members = _PartWriter(MEMBER_SCHEMA, write_members)
        self.rejects = _PartWriter(REJECT_SCHEMA, write_rejects)
        self.result = PrepareResult()
        self._seen: set[int] = set()

    def run(self, parts: Iterable[pa.Table]) -> PrepareResult:
        group: list[dict] = []
        group_key: object = object()
        email_column = self.settings.email_column
        for index, table in enumerate(parts):
            names = table.column_names
            email_at = names.index(email_column)
            rows = list(zip(*(table[name].to_pylist() for name in names), strict=True))
            self.result.rows_read += len(rows)
            for row in rows:
                raw = row[email_at]
                key = raw.strip().lower() if raw else None
                if key != group_key and group:
                    self._flush_group(group)
                    group = []
                group_key = key
                group.append(dict(zip(names, row, strict=True)))
            # The last group may continue in the next part, so it is carried over, not flushed.
            self._write_parts(index, carry=True)
            self.result.parts = index + 1
        if group:
            self._flush_group(group)
        self._write_parts(self.result.parts, carry=False)
        return self.result

    def _write_parts(self, index: int, *, carry: bool) -> None:
        if carry and not self.members.rows and not self.rejects.rows:
            return
        self.members.flush(index)
        self.rejects.flush(index)

    def _reject(self, profile_id: str, email: str | None, reason: Reason, detail: str) -> None:
        self.rejects.add(profile_id, email, reason.value, detail)
        self.result.rejected[reason.value] = self.result.rejected.get(reason.value, 0) + 1

    def _flush_group(self, rows: list[dict]) -> None:
        """One address's rows: at most one member, every other profile rejected with its reason."""
        s = self.settings
        id_column, email_column = s.id_column, s.email_column
        first = rows[0]
        first_id = first[id_column]
        if len(rows) == 1:  # the common case: one profile in one segment
            others: list[dict] = []
        else:
            by_profile: dict[str, dict] = {}
            for row in rows:
                by_profile.setdefault(row[id_column], row)
            others = list(by_profile.values())[1:]
        self.result.profiles_read += 1 + len(others)
        raw_email = first[email_column]
        check = normalise_email(raw_email)
        if check.reason:
            for row in (first, *others):
                self._reject(row[id_column], row[email_column], check.reason, check.detail)
            return
        email = check.email
        member_hash = subscriber_hash(email)
        seen_key = int(member_hash[:16], 16)
        if seen_key in self._seen:
            for row in (first, *others):
                self._reject(
                    row[id_column],
                    row[email_column],
                    Reason.DUPLICATE_EMAIL,
                    "address already exported for another profile",
                )
            return
        self._seen.add(seen_key)
        for row in others:
            self._reject(
                row[id_column],
                row[email_column],
                Reason.DUPLICATE_EMAIL,
                f"same address as profile {first_id}",
            )
        if member_hash in s.archived_hashes:
            self._reject(
                first_id,
                raw_email,
                Reason.ARCHIVED_IN_AUDIENCE,
                "the member is archived in Mailchimp; exports never restore archived members",
            )
            return
        merge_fields = map_values(s.fields, first, self.result.dropped_values)
        if merge_fields is None:
            self._reject(
                first_id,
                raw_email,
                Reason.MISSING_REQUIRED_MERGE_FIELD,
                "a required merge field is empty or invalid",
            )
            return
        segment_column = s.segment_column
        segments = sorted({row[segment_column] for row in rows if row[segment_column]})
        tags = sorted(s.tag_of(segment) for segment in segments) if s.tag_segments else []
        more = ""
        if s.member_fields:
            more = s.member_fields.fragment(first, segments, self.result.dropped_values)
        encoded = member_json(email, s.status_if_new, merge_fields, more)
        self.result.accepted += 1
        self.members.add(first_id, email, member_hash, fingerprint(encoded), encoded, tags, segments)
