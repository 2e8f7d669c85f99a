"""Stream a segment's rows from any DB-API warehouse into Parquet parts, a bounded chunk at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mailchimp_provider.export import member_fields
from mailchimp_provider.export.definition import ExportDefinition
from mailchimp_provider.export.mapping import VALUE_READ_LIMIT
from mailchimp_provider.export.validate import EMAIL_READ_LIMIT


class WarehouseError(RuntimeError):
    """The warehouse could not give us the segment; raised before anything is uploaded."""


class TooManyProfiles(RuntimeError):
    """The export is larger than its ``max_profiles``; raised before anything is uploaded."""


ANSI_QUOTE = '"'
SQLITE_QUOTE = "`"  # SQLite reads an unknown "name" as a string literal; a `name` is always an identifier


def quote_identifier(name: str, quote: str = ANSI_QUOTE) -> str:
    """Quote a (possibly schema-qualified) identifier, doubling any quote character inside it."""
    return ".".join(quote + part.replace(quote, quote * 2) + quote for part in name.split("."))


def identifier_quote(conn_type: str) -> str:
    return SQLITE_QUOTE if conn_type == "sqlite" else ANSI_QUOTE


def source_columns(definition: ExportDefinition) -> list[str]:
    """The warehouse columns the export reads, each once, in a stable order; a transform's computed
    columns are not read unless it reads them too."""
    reads = definition.transform.reads if definition.transform else []
    computed = set(definition.transform.returns) - set(reads) if definition.transform else set()
    wanted = [
        definition.columns.id,
        definition.columns.email,
        definition.warehouse.segment_column,
        *definition.merge_field_columns().values(),
        *member_fields.columns_read(definition),
        *reads,
    ]
    return [c for c in dict.fromkeys(wanted) if c not in computed]


# Profile ids are only our labels (reports, rejects); 255 characters hold any real key, a longer one is cut.
ID_READ_LIMIT = 255


def read_limits(definition: ExportDefinition) -> dict[str, int]:
    """How many characters of each column the warehouse sends. One more than validation accepts, so a
    longer value is still seen as too long; the segment column needs none (it must equal a segment)."""
    limits = dict.fromkeys(definition.merge_field_columns().values(), VALUE_READ_LIMIT + 1)
    limits[definition.columns.email] = max(limits.get(definition.columns.email, 0), EMAIL_READ_LIMIT + 1)
    limits[definition.columns.id] = max(limits.get(definition.columns.id, 0), ID_READ_LIMIT)
    limits.pop(definition.warehouse.segment_column, None)
    return limits


def capped(column: str, chars: int, quote: str = ANSI_QUOTE) -> str:
    """At most ``chars`` characters of a column as text, cut by the warehouse, so one huge value never
    reaches the worker's memory. ``substr`` and ``CAST ... AS TEXT`` are understood by SQLite, PostgreSQL,
    Redshift, Snowflake and DuckDB. On PostgreSQL, timestamps and booleans now arrive in its text form
    ('2026-01-01 10:00:00+00', 'true') instead of Python's; dates and numbers read the same.

    SQLite's ``substr`` of a text stops at a NUL character (' Ann\\x00Lee' would arrive as ' Ann'), so on
    SQLite the value is cut as bytes, 4 a character (UTF-8's most, in a UTF-8 database: the default), and
    arrives as bytes, which ``rows_to_table`` decodes and cuts to ``chars``."""
    if quote == SQLITE_QUOTE:
        return f"substr(CAST({column} AS BLOB), 1, {4 * chars})"
    return f"substr(CAST({column} AS TEXT), 1, {chars})"


def build_query(
    definition: ExportDefinition, segments: Sequence[str], placeholder: str, quote: str = ANSI_QUOTE
) -> tuple[str, list]:
    """The extraction SQL and its parameters: identifiers quoted, values bound, never pasted.

    Rows come ordered by normalised email so every row of one address is adjacent: validation can then
    merge an address's segments into one member while streaming. Values are cut by the warehouse (see
    ``read_limits``), sort keys too: SQLite sorts in the worker's process, and a sort key is held whole.
    So profiles sharing an address come in the text order of their ids (the first one is kept).
    """
    source = definition.warehouse

    def q(name: str) -> str:
        return quote_identifier(name, quote)

    if source.table:
        relation = q(source.table)
    else:
        relation = f"({source.query.rstrip().rstrip(';')}) AS export_source"
    limits = read_limits(definition)
    selected = ", ".join(
        capped(q(column), limits[column], quote) if column in limits else q(column)
        for column in source_columns(definition)
    )
    email = capped(q(definition.columns.email), limits[definition.columns.email], quote)
    profile_id = capped(q(definition.columns.id), limits[definition.columns.id], quote)
    marks = ", ".join([placeholder] * len(segments))
    sql = (
        f"SELECT {selected} FROM {relation} "
        f"WHERE {q(source.segment_column)} IN ({marks}) "
        f"ORDER BY lower(trim({email})), {profile_id}"
    )
    return sql, list(segments)


@dataclass(frozen=True)
class ExtractResult:
    rows: int
    parts: int


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _cut(array: pa.Array, limit: int | None) -> pa.Array:
    """At most ``limit`` characters of each value. A column whose values all have at most ``limit``
    bytes, so at most as many characters (nearly every column), is kept as it is, not copied."""
    if limit is None or (pc.max(pc.binary_length(array)).as_py() or 0) <= limit:
        return array
    return pc.utf8_slice_codeunits(array, 0, limit)


def _text_array(column: Sequence[Any], limit: int | None = None) -> pa.Array:
    """One column as text: converted by Arrow when the driver gave one type, value by value otherwise
    (SQLite columns may mix types). A column with a ``limit`` that arrives as bytes was cut by the
    warehouse in bytes (see ``capped``): it is decoded and cut to ``limit`` characters."""
    try:
        array = pa.array(column)
        if pa.types.is_string(array.type):
            return _cut(array, limit)
        if pa.types.is_binary(array.type) and limit is not None:  # invalid UTF-8 (a cut character) raises
            return _cut(array.cast(pa.string()), limit)
        if (
            pa.types.is_null(array.type)
            or pa.types.is_integer(array.type)
            or pa.types.is_date(array.type)
            or pa.types.is_decimal(array.type)
        ):
            return array.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    texts = (_as_text(v) for v in column)
    return pa.array([t if t is None or limit is None else t[:limit] for t in texts], type=pa.string())


def rows_to_table(
    rows: Sequence[Sequence[Any]], names: Sequence[str], limits: Mapping[str, int] | None = None
) -> pa.Table:
    """Rows as an all-text Arrow table: types differ between warehouses, mapping parses per merge field.
    ``limits``: the characters each column was cut to (``read_limits``)."""
    limits = limits or {}
    if rows and rows[0].__class__ is tuple:
        # Every value text, UTF-8 bytes or missing (SQLite's casts give that): Arrow converts the tuples
        # itself, about four times faster than a Python column per field. Anything else (and bytes cut
        # inside a character) is converted column by column.
        try:
            table = pa.Table.from_struct_array(
                pa.array(rows, type=pa.struct([(name, pa.string()) for name in names]))
            )
            return pa.Table.from_arrays(
                [_cut(table[name].combine_chunks(), limits.get(name)) for name in names], names=list(names)
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            pass
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(names)
    return pa.Table.from_arrays(
        [_text_array(column, limits.get(name)) for column, name in zip(columns, names, strict=True)],
        names=list(names),
    )


def fetch_chunks(cursor: Any, chunk_rows: int) -> Iterator[list]:
    while rows := cursor.fetchmany(chunk_rows):
        yield rows


def extract(
    cursor: Any,
    sql: str,
    params: list,
    names: Sequence[str],
    *,
    chunk_rows: int,
    max_rows: int,
    write_part: Callable[[int, pa.Table], None],
    limits: Mapping[str, int],
) -> ExtractResult:
    """Run the query on an open cursor and hand each chunk to ``write_part`` as an Arrow table.

    ``max_rows`` stops a runaway segment early: a profile is at most one row per segment, so more rows
    than max_profiles x segments means too many profiles whatever validation later finds. ``limits``:
    the query's ``read_limits``.
    """
    try:
        cursor.execute(sql, params)
        rows = parts = 0
        for chunk in fetch_chunks(cursor, chunk_rows):
            rows += len(chunk)
            if rows > max_rows:
                raise TooManyProfiles(
                    f"the segment query returned more than {max_rows:,} rows, so more profiles than the "
                    "export's max_profiles allows; nothing was uploaded"
                )
            write_part(parts, rows_to_table(chunk, names, limits))
            parts += 1
    except TooManyProfiles:
        raise
    except Exception as exc:  # DB-API drivers share no exception base class
        raise WarehouseError(
            f"the warehouse query failed: {type(exc).__name__}: {_first_line(exc)}"
        ) from None
    return ExtractResult(rows=rows, parts=parts)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"
