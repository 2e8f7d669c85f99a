"""The row-by-row preparation that ``prepare.Preparer`` replaced, kept only as the oracle its output is
compared with (test_prepare_differential.py): one group of rows per address, each decided in Python."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pyarrow as pa
from mailchimp_provider.export.mapping import map_values
from mailchimp_provider.export.prepare import (
    MEMBER_SCHEMA,
    REJECT_SCHEMA,
    PrepareResult,
    PrepareSettings,
    fingerprint,
    member_json,
)
from mailchimp_provider.export.validate import Reason, normalise_email, subscriber_hash


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


class ReferencePreparer:
    """The row-by-row Preparer the vectorised one replaced, kept verbatim as the oracle."""

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
        encoded = member_json(email, s.status_if_new, merge_fields)
        self.result.accepted += 1
        self.members.add(first_id, email, member_hash, fingerprint(encoded), encoded, tags, segments)
