"""The export stages over a run's staging folder, with no Airflow in sight: the DAG's steps call these
with connections they looked up, and the benchmark and memory tests call them with plain DB-API cursors."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mailchimp_provider.export import staging, transform
from mailchimp_provider.export.chunk import PLAN_COLUMNS, JobWriter, chunk_plan
from mailchimp_provider.export.definition import ExportDefinition
from mailchimp_provider.export.extract import (
    ExtractResult,
    TooManyProfiles,
    build_query,
    extract,
    read_limits,
    source_columns,
)
from mailchimp_provider.export.mapping import Audience, plan_fields
from mailchimp_provider.export.member_fields import MemberFieldPlan
from mailchimp_provider.export.plan import (
    FAILED,
    PLAN_SCHEMA,
    UNCHANGED,
    UPSERT,
    Lookup,
    Planner,
    PlanSettings,
    PlanSummary,
)
from mailchimp_provider.export.prepare import Preparer, PrepareResult, PrepareSettings
from mailchimp_provider.export.reconcile import (
    MAX_READBACKS,
    OUTCOME_SCHEMA,
    OUTCOME_UNKNOWN,
    ReadBack,
    RunReport,
    job_outcomes,
    settle_all,
    tag_outcomes,
)
from mailchimp_provider.export.staging import RunPaths
from mailchimp_provider.export.state import STATE_SCHEMA, ExportState


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
    # a retry starts the extract afresh; what was prepared from an earlier extract goes with it
    for directory in (paths.extract_dir, paths.members_dir, paths.rejects_dir):
        staging.remove_tree(directory)
    sql, params = build_query(definition, segments, placeholder, quote)
    return extract(
        cursor,
        sql,
        params,
        source_columns(definition),
        chunk_rows=definition.extract_chunk_rows,
        max_rows=definition.max_profiles * len(segments),
        write_part=lambda i, table: staging.write_parquet(paths.part(paths.extract_dir, i), table),
        limits=read_limits(definition),
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
    partition: int = 0,
    partitions: int = 1,
) -> PrepareResult:
    """Validate and map the extracted parts (through the definition's transform, if any) into member
    and reject parts: those of one subscriber-hash partition of the addresses when ``partitions`` > 1.
    Every partition reads every part; its memory grows with the part and its own addresses."""
    settings = PrepareSettings(
        id_column=definition.columns.id,
        email_column=definition.columns.email,
        segment_column=definition.warehouse.segment_column,
        fields=plan_fields(audience, definition.merge_field_columns()),
        status_if_new=status_for_new_members(definition, audience),
        tag_segments=definition.mailchimp.tag_segments,
        archived_hashes=archived,
        segment_tags=definition.segment_tags(),
        member_fields=member_fields,
        partition=partition,
        partitions=partitions,
    )
    for directory in (paths.members_dir, paths.rejects_dir):  # a retry writes its partition afresh
        for path in paths.prepared_parts(directory, partition):
            path.unlink()
    preparer = Preparer(
        settings,
        write_members=lambda i, t: staging.write_parquet(
            paths.prepared_part(paths.members_dir, partition, i), t
        ),
        write_rejects=lambda i, t: staging.write_parquet(
            paths.prepared_part(paths.rejects_dir, partition, i), t
        ),
    )
    parts = read_parts(paths.extract_dir)
    if definition.transform:
        parts = transform.apply(definition.transform, parts)
    return preparer.run(parts)


def merge_prepared(results: Sequence[PrepareResult]) -> PrepareResult:
    """The preparation of a whole run from its partitions': each partition read every row and counted
    only the profiles of its own addresses, which no other partition has."""
    merged = PrepareResult(
        rows_read=max((r.rows_read for r in results), default=0),
        parts=max((r.parts for r in results), default=0),
    )
    for result in results:
        merged.profiles_read += result.profiles_read
        merged.accepted += result.accepted
        for total, counts in (
            (merged.rejected, result.rejected),
            (merged.dropped_values, result.dropped_values),
        ):
            for key, count in counts.items():
                total[key] = total.get(key, 0) + count
    return merged


def check_profile_limit(definition: ExportDefinition, accepted: int) -> None:
    """Stop before anything is uploaded when the run found more valid profiles than max_profiles."""
    if accepted > definition.max_profiles:
        raise TooManyProfiles(
            f"export '{definition.export}' found {accepted:,} valid profiles, more than its limit "
            f"max_profiles={definition.max_profiles:,}; nothing was uploaded. Narrow the segments or raise "
            "max_profiles in the export definition."
        )


def segment_rows(paths: RunPaths, definition: ExportDefinition) -> dict[str, int]:
    """Rows the warehouse returned per segment (rows of rejected profiles included)."""
    counts: dict[str, int] = {}
    for path in staging.sorted_files(paths.extract_dir, ".parquet"):
        column = staging.read_parquet(path, [definition.warehouse.segment_column]).column(0)
        for item in pc.value_counts(column).to_pylist():
            if item["values"] is not None:
                counts[item["values"]] = counts.get(item["values"], 0) + item["counts"]
    return counts


def _ids(parts: Sequence[Any]) -> pa.Array:
    arrays = [staging.read_parquet(path, ["profile_id"])["profile_id"].combine_chunks() for path in parts]
    return pa.concat_arrays(arrays) if arrays else pa.array([], pa.string())


def plan_in_staging(
    paths: RunPaths,
    definition: ExportDefinition,
    state: ExportState,
    segments: list[str],
    full_sync: bool = False,
    member_parts: Sequence[Any] | None = None,
    reject_parts: Sequence[Any] | None = None,
) -> PlanSummary:
    """Plan every accepted profile and every owned leaver against the export's state. ``member_parts``
    and ``reject_parts``: what the run's preparation wrote, from all its partitions (default: every
    part in the run's folders)."""
    staging.remove_tree(paths.plan_dir)
    settings = PlanSettings(
        segments=segments,
        segment_tags=definition.segment_tags(),
        tag_segments=definition.mailchimp.tag_segments,
        on_leave=definition.on_leave,
        full_sync=full_sync,
    )
    if member_parts is None:
        member_parts = staging.sorted_files(paths.members_dir, ".parquet")
    if reject_parts is None:
        reject_parts = staging.sorted_files(paths.rejects_dir, ".parquet")
    accepted = _ids(member_parts)
    read = pa.concat_arrays([accepted, _ids(reject_parts)])
    planner = Planner(settings, state, lambda i, t: staging.write_parquet(paths.part(paths.plan_dir, i), t))
    return planner.run((staging.read_parquet(path) for path in member_parts), accepted, read)


def chunk_in_staging(
    paths: RunPaths, definition: ExportDefinition, tag_ids: dict[str, int] | None = None
) -> tuple[list[int], list[int]]:
    """Phase 1 (members) and phase 2 (tags) jobs from the plan."""
    staging.remove_tree(paths.jobs_dir)
    members = JobWriter(
        write_operations=lambda job, data: staging.write_bytes(paths.job_operations(job), data),
        write_index=lambda job, table: staging.write_parquet(paths.job_index(job), table),
    )
    tags = JobWriter(
        write_operations=lambda job, data: staging.write_bytes(paths.tag_job_operations(job), data),
        write_index=lambda job, table: staging.write_parquet(paths.tag_job_index(job), table),
    )
    plan = (
        staging.read_parquet(path, PLAN_COLUMNS) for path in staging.sorted_files(paths.plan_dir, ".parquet")
    )
    return chunk_plan(
        plan, definition.mailchimp.audience_id, definition.job_size, members, tags, tag_ids or {}
    )


class _Answers:
    """Each profile's phase 1 answer: its last row of ``phase1`` (a profile with two addresses has two
    rows; settling row by row took the last), found by sorted keys built once for the run, not by a hash
    table of every answer built per plan part."""

    def __init__(self, phase1: pa.Table) -> None:
        self.phase1 = phase1
        self.lookup = Lookup(phase1["profile_id"], last=True)

    def rows(self, profile_ids: pa.ChunkedArray) -> pa.Array:
        """Each profile's row of ``phase1``; null where no job answered for it."""
        return self.lookup.index_in(profile_ids.combine_chunks())

    def by_profile(self, rows: pa.Array) -> dict[str, tuple[str, str | None]]:
        """The answers at ``rows`` (nulls skipped) as settle_all takes them."""
        mine = self.phase1.take(rows.drop_null())
        return dict(
            zip(
                mine["profile_id"].to_pylist(),
                zip(mine["outcome"].to_pylist(), mine["error"].to_pylist(), strict=True),
                strict=True,
            )
        )


def _plan_parts(
    paths: RunPaths, answers: _Answers, phase2: dict[tuple[str, str], list]
) -> Iterator[tuple[pa.Table, pa.Array, np.ndarray]]:
    """Each plan part (without bodies) with its profiles' phase 1 answers (``answer``), their rows of
    phase 1, and which rows are new members answered created or updated with nothing in phase 2: with
    unchanged members, the common cases, settled column-wise."""
    columns = [c for c in PLAN_SCHEMA.names if c != "body"]
    in_phase2 = pa.array(list({pid for pid, _ in phase2}), pa.string())
    for path in staging.sorted_files(paths.plan_dir, ".parquet"):
        table = staging.read_parquet(path, columns)
        rows = answers.rows(table["profile_id"])
        table = table.append_column("answer", answers.phase1["outcome"].take(rows).cast(pa.string()))
        new = pc.and_(
            pc.and_(pc.equal(table["action"], UPSERT), pc.invert(table["owned"])),
            pc.and_(
                pc.and_(
                    pc.equal(pc.list_value_length(table["tags_remove"]), 0),
                    pc.is_null(table["permissions"]),
                ),
                pc.and_(
                    pc.is_in(table["answer"], value_set=pa.array(["created", "updated"])),
                    pc.invert(pc.is_in(table["profile_id"], value_set=in_phase2)),
                ),
            ),
        )
        yield table, rows, pc.fill_null(new, False).to_numpy(zero_copy_only=False)


def _settle_simple(plan: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Unchanged members keep their state row; new ones get theirs with the tags they were sent."""
    n = plan.num_rows
    unchanged = pc.fill_null(pc.equal(plan["outcome"], UNCHANGED), False)
    outcome = pc.if_else(unchanged, UNCHANGED, plan["answer"])
    outcomes = pa.Table.from_arrays(
        [plan["profile_id"], plan["email"], plan["subscriber_hash"], outcome, pa.nulls(n, pa.string())],
        schema=OUTCOME_SCHEMA,
    )
    rows = pa.Table.from_arrays(
        [
            plan["profile_id"],
            plan["subscriber_hash"],
            plan["email"],
            plan["fingerprint"],
            pc.if_else(unchanged, plan["prev_tags"], plan["tags_add"]),
            plan["segments"],
            pc.if_else(unchanged, plan["prev_created"], pc.equal(outcome, "created")),
        ],
        schema=STATE_SCHEMA,
    )
    return outcomes, rows


_CODED = pa.dictionary(pa.int32(), pa.string())
_PHASE1_SCHEMA = pa.schema([("profile_id", pa.string()), ("outcome", _CODED), ("error", _CODED)])


def _phase1_outcomes(paths: RunPaths) -> pa.Table:
    """Every phase 1 job's per-profile outcomes (profile_id, outcome, error: what settling reads of
    OUTCOME_SCHEMA, the last two dictionary-encoded: a run's are held while it settles), unknown where
    results are missing."""
    parts: list[list[pa.Array]] = [[] for _ in _PHASE1_SCHEMA]
    jobs = [p for p in staging.sorted_files(paths.jobs_dir, ".index.parquet") if p.name.startswith("job-")]
    for job, index_path in enumerate(jobs):
        outcomes_path = paths.job_outcomes(job)
        index = staging.read_parquet(index_path)
        if outcomes_path.exists():
            results = staging.read_parquet(outcomes_path)
        else:  # the upload left no results: every answer is unknown, to be read back
            results = pa.table({"operation_id": [], "status_code": [], "response": []})
        outcomes = job_outcomes(index, results)
        columns = (
            outcomes["profile_id"],
            pc.dictionary_encode(outcomes["outcome"]),
            pc.dictionary_encode(outcomes["error"]),
        )
        for chunks, column in zip(parts, columns, strict=True):
            chunks += column.chunks
    whole = []
    for column, chunks in zip(_PHASE1_SCHEMA, parts, strict=True):
        whole.append(pa.chunked_array(chunks, column.type).combine_chunks())
        chunks.clear()  # a column's parts go once it is whole: the run's answers are never held twice
    return pa.Table.from_arrays(whole, schema=_PHASE1_SCHEMA)


def _phase2_results(paths: RunPaths) -> dict[tuple[str, str], list]:
    """Each member's phase 2 results by (profile id, address): a profile found at two addresses is two
    members, and each is settled by its own calls."""
    results: dict[tuple[str, str], list] = {}
    files = [p for p in staging.sorted_files(paths.jobs_dir, ".index.parquet") if p.name.startswith("tags-")]
    for job, index_path in enumerate(files):
        outcomes_path = paths.tag_job_outcomes(job)
        results_table = (
            staging.read_parquet(outcomes_path)
            if outcomes_path.exists()
            else pa.table({"operation_id": [], "status_code": [], "response": []})
        )
        index = staging.read_parquet(index_path)
        for email, (pid, action, tag, status, error) in zip(
            index["email"].to_pylist(), tag_outcomes(index, results_table), strict=True
        ):
            results.setdefault((pid, email), []).append((action, tag, status, error))
    return results


def settle_in_staging(paths: RunPaths, read_back: ReadBack) -> tuple[pa.Table, pa.Table]:
    """Every planned profile's outcome and state row (``settle_parts`` added up)."""
    settled = [(OUTCOME_SCHEMA.empty_table(), STATE_SCHEMA.empty_table()), *settle_parts(paths, read_back)]
    return pa.concat_tables([o for o, _ in settled]), pa.concat_tables([r for _, r in settled])


def settle_parts(paths: RunPaths, read_back: ReadBack) -> Iterator[tuple[pa.Table, pa.Table]]:
    """Every planned profile's outcome and state row, from the plan and both phases' results, a plan
    part at a time (so a run's outcomes and state rows are never held whole): first those of every
    profile not unchanged, in plan order, then the unchanged ones', each part read again. Runs of rows
    that settle column-wise are settled so; the rest row by row, sharing one read-back budget in plan
    order."""
    phase1 = _phase1_outcomes(paths)
    # what reading each job's answers took (some 100 MB a job of 50,000 members) goes back to the system:
    # Arrow's allocator would keep it, and the answers' index is numpy's, which cannot use it
    pa.default_memory_pool().release_unused()
    answers, tags, budget = _Answers(phase1), _phase2_results(paths), [MAX_READBACKS]
    del phase1
    for table, rows, new in _plan_parts(paths, answers, tags):
        others = pc.invert(pc.fill_null(pc.equal(table["outcome"], UNCHANGED), False))
        table, rows, new = (
            table.filter(others),
            rows.filter(others),
            new[others.to_numpy(zero_copy_only=False)],
        )
        settled = [(OUTCOME_SCHEMA.empty_table(), STATE_SCHEMA.empty_table())]
        edges = [0, *(np.flatnonzero(new[1:] != new[:-1]) + 1).tolist(), len(new)] if len(new) else []
        for start, stop in itertools.pairwise(edges):
            run = table.slice(start, stop - start)
            if new[start]:
                settled.append(_settle_simple(run))
            else:
                mine = answers.by_profile(rows.slice(start, stop - start))
                plan_rows = run.drop_columns(["answer"]).to_pylist()
                settled.append(settle_all(plan_rows, mine, tags, read_back, budget))
        yield pa.concat_tables([o for o, _ in settled]), pa.concat_tables([r for _, r in settled])
    del answers, tags
    for path in staging.sorted_files(paths.plan_dir, ".parquet"):
        table = staging.read_parquet(path, _UNCHANGED_COLUMNS)
        table = table.filter(pc.fill_null(pc.equal(table["outcome"], UNCHANGED), False))
        yield _settle_simple(table.append_column("answer", pa.nulls(table.num_rows, pa.string())))


_UNCHANGED_COLUMNS = [
    "profile_id",
    "email",
    "subscriber_hash",
    "outcome",
    "fingerprint",
    "prev_tags",
    "tags_add",
    "segments",
    "prev_created",
]


def settle_to_staging(paths: RunPaths, report: RunReport, read_back: ReadBack) -> None:
    """Settle every planned profile a plan part at a time: outcomes counted into ``report``, the failed
    and unknown ones written to the run's rejects file (none: no file), the state rows staged for the
    commit to stream (``paths.settled_state``). Of the whole run, only the phase 1 answers are held."""
    unsettled = pa.array([FAILED, OUTCOME_UNKNOWN])
    rejects = paths.mailchimp_rejects
    with (
        staging.parquet_stream(rejects, OUTCOME_SCHEMA) as failed,
        staging.parquet_stream(paths.settled_state, STATE_SCHEMA) as settled,
    ):
        for outcomes, rows in settle_parts(paths, read_back):
            report.add_outcomes(outcomes)
            failed.write(outcomes.filter(pc.is_in(outcomes["outcome"], value_set=unsettled)))
            settled.write(rows)
    if not failed.rows:
        rejects.unlink()


def touched_ids(paths: RunPaths) -> pa.Array:
    """Profile ids whose state rows the run replaces: every planned profile, and the owner of an
    address a new profile took over."""
    arrays = []
    for path in staging.sorted_files(paths.plan_dir, ".parquet"):
        table = staging.read_parquet(path, ["profile_id", "prev_profile_id"])
        arrays += [
            table["profile_id"].combine_chunks(),
            table["prev_profile_id"].drop_null().combine_chunks(),
        ]
    return pa.concat_arrays(arrays) if arrays else pa.array([], pa.string())
