"""The export stages over a run's staging folder, with no Airflow in sight: the DAG's steps call these
with connections they looked up, and the benchmark and memory tests call them with plain DB-API cursors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mailchimp_provider.export import staging, transform
from mailchimp_provider.export.chunk import JobWriter, chunk_members
from mailchimp_provider.export.definition import ExportDefinition
from mailchimp_provider.export.extract import (
    ExtractResult,
    TooManyProfiles,
    build_query,
    extract,
    source_columns,
)
from mailchimp_provider.export.mapping import Audience, plan_fields
from mailchimp_provider.export.member_fields import MemberFieldPlan
from mailchimp_provider.export.prepare import Preparer, PrepareResult, PrepareSettings
from mailchimp_provider.export.staging import RunPaths


def read_parts(directory: Any) -> Iterator[pa.Table]:
    for path in staging.sorted_files(directory, ".parquet"):
        yield staging.read_parquet(path)


def extract_to_staging(
    paths: RunPaths,
    definition: ExportDefinition,
    segments: list[str],
    cursor: Any,
    placeholder: str,
    quote: str,
) -> ExtractResult:
    staging.remove_tree(paths.extract_dir)  # a retry starts the extract afresh
    sql, params = build_query(definition, segments, placeholder, quote)
    return extract(
        cursor,
        sql,
        params,
        source_columns(definition),
        chunk_rows=definition.extract_chunk_rows,
        max_rows=definition.max_profiles * len(segments),
        write_part=lambda i, table: staging.write_parquet(paths.part(paths.extract_dir, i), table),
    )


def status_for_new_members(definition: ExportDefinition, audience: Audience) -> str:
    status = definition.mailchimp.status_if_new
    if status == "auto":
        return "pending" if audience.double_optin else "subscribed"
    return status


def prepare_in_staging(
    paths: RunPaths,
    definition: ExportDefinition,
    audience: Audience,
    archived: frozenset[str] = frozenset(),
    member_fields: MemberFieldPlan | None = None,
) -> PrepareResult:
    """Validate and map the extracted parts (through the definition's transform, if any) into member
    and reject parts; enforce max_profiles."""
    settings = PrepareSettings(
        id_column=definition.columns.id,
        email_column=definition.columns.email,
        segment_column=definition.warehouse.segment_column,
        fields=plan_fields(audience, definition.merge_field_columns()),
        status_if_new=status_for_new_members(definition, audience),
        tag_segments=definition.mailchimp.tag_segments,
        archived_hashes=archived,
        member_fields=member_fields,
    )
    for directory in (paths.members_dir, paths.rejects_dir):
        staging.remove_tree(directory)
    preparer = Preparer(
        settings,
        write_members=lambda i, t: staging.write_parquet(paths.part(paths.members_dir, i), t),
        write_rejects=lambda i, t: staging.write_parquet(paths.part(paths.rejects_dir, i), t),
    )
    parts = read_parts(paths.extract_dir)
    if definition.transform:
        parts = transform.apply(definition.transform, parts)
    result = preparer.run(parts)
    if result.accepted > definition.max_profiles:
        raise TooManyProfiles(
            f"export '{definition.export}' found {result.accepted:,} valid profiles, more than its limit "
            f"max_profiles={definition.max_profiles:,}; nothing was uploaded. Narrow the segments or raise "
            "max_profiles in the export definition."
        )
    return result


def unsent_members(paths: RunPaths, unchanged: frozenset[int]) -> Iterator[pa.Table]:
    """Member parts without those whose fingerprint is in ``unchanged``."""
    skip = pa.array(list(unchanged), pa.int64())
    for table in read_parts(paths.members_dir):
        yield table.filter(pc.invert(pc.is_in(table["fingerprint"], value_set=skip)))


def chunk_in_staging(
    paths: RunPaths, definition: ExportDefinition, unchanged: frozenset[int] = frozenset()
) -> list[int]:
    staging.remove_tree(paths.jobs_dir)
    writer = JobWriter(
        write_operations=lambda job, text: staging.write_text(paths.job_operations(job), text),
        write_index=lambda job, table: staging.write_parquet(paths.job_index(job), table),
    )
    return chunk_members(
        unsent_members(paths, unchanged), definition.mailchimp.audience_id, definition.job_size, writer
    )
