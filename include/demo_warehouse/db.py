"""One small connection wrapper over SQLite and PostgreSQL.

Why: the seed and the refresh run the same statements on both engines. Queries are written
with qmark (`?`) placeholders and translated for psycopg2; values always travel as parameters.
Bulk loads use executemany on SQLite and COPY FROM STDIN on PostgreSQL, the fast path of each.
"""

from __future__ import annotations

import io
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from demo_warehouse.generate import PROFILE_COLUMNS

SQL_DIR = Path(__file__).resolve().parents[1] / "sql"

TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "customer_profiles": PROFILE_COLUMNS,
    "segment_memberships": ("segment", "customer_id"),
    "segments": ("segment", "description", "refreshed_at"),
}

Dialect = Literal["sqlite", "postgres"]
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


@dataclass(frozen=True)
class Target:
    dialect: Dialect
    location: str  # a file path for SQLite, a libpq URI for PostgreSQL

    @classmethod
    def parse(cls, url: str) -> Target:
        """Accept SQLAlchemy-style URLs and Airflow's `postgres://` connection URIs.

        `sqlite:///var/warehouse.db` is relative to the working directory and
        `sqlite:////abs/warehouse.db` absolute, as in SQLAlchemy.
        """
        scheme, sep, rest = url.partition("://")
        scheme = scheme.split("+")[0].lower()
        if sep and scheme == "sqlite" and len(rest) > 1 and rest.startswith("/"):
            return cls("sqlite", rest[1:])
        if sep and scheme in ("postgresql", "postgres") and rest:
            return cls("postgres", f"postgresql://{rest}")
        raise ValueError(
            f"unsupported warehouse target {url!r}: use sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
        )


class Warehouse:
    """An open connection in one transaction, with engine differences hidden."""

    def __init__(self, dialect: Dialect, connection: Any) -> None:
        self.dialect = dialect
        self.connection = connection
        self.cursor = connection.cursor()

    def _sql(self, query: str) -> str:
        return query.replace("?", "%s") if self.dialect == "postgres" else query

    def execute(self, query: str, params: Sequence[Any] = ()) -> Any:
        self.cursor.execute(self._sql(query), params)
        return self.cursor

    def executemany(self, query: str, rows: Iterable[Sequence[Any]]) -> None:
        if self.dialect == "sqlite":
            self.cursor.executemany(query, rows)
            return
        from psycopg2.extras import execute_batch  # psycopg2's executemany is one round trip per row

        execute_batch(self.cursor, self._sql(query), rows, page_size=1_000)

    def rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self.execute(query, params).fetchall())

    def scalar(self, query: str, params: Sequence[Any] = ()) -> Any:
        row = self.execute(query, params).fetchone()
        return row[0] if row else None

    def run_script(self, name: str) -> None:
        """Run an SQL file from include/sql/; `{dialect}` in the name picks the engine's variant."""
        script = (SQL_DIR / name.format(dialect=self.dialect)).read_text(encoding="utf-8")
        for statement in _statements(script):
            self.cursor.execute(statement)

    def load(self, table: str, rows: Sequence[Sequence[Any]]) -> None:
        """Bulk-insert rows whose values follow TABLE_COLUMNS[table]."""
        columns = TABLE_COLUMNS[table]  # identifiers only ever come from this constant
        if self.dialect == "sqlite":
            placeholders = ", ".join("?" * len(columns))
            self.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})", rows)
            return
        if rows:
            buffer = io.StringIO(_copy_text(rows, len(columns)))
            self.cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", buffer)


@contextmanager
def connect(url: str) -> Iterator[Warehouse]:
    """Open the target and commit on success, roll back on any error."""
    target = Target.parse(url)
    if target.dialect == "sqlite":
        Path(target.location).parent.mkdir(parents=True, exist_ok=True)
        connection: Any = sqlite3.connect(target.location, isolation_level=None)
        # WAL lets Airflow tasks read the warehouse while a refresh writes to it.
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("BEGIN IMMEDIATE")
    else:
        import psycopg2  # imported here so SQLite-only use does not need it

        connection = psycopg2.connect(target.location)
    try:
        yield Warehouse(target.dialect, connection)
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    finally:
        connection.close()


def _statements(script: str) -> list[str]:
    """Split an SQL file on semicolons; the files keep semicolons out of comments and literals."""
    without_comments = re.sub(r"--[^\n]*", "", script)
    return [statement.strip() for statement in without_comments.split(";") if statement.strip()]


def _copy_text(rows: Sequence[Sequence[Any]], width: int) -> str:
    """Rows in PostgreSQL's COPY text format, where \\N is NULL and "" stays an empty string.

    Escaping every value costs more than the COPY itself, and values almost never need it:
    the rows are joined as they are, and only if the separator, backslash and line-break
    counts show a value that needs escaping is the chunk escaped value by value.
    """
    text = (
        "\n".join(
            [
                "\t".join(
                    ["\\N" if value is None else value if type(value) is str else str(value) for value in row]
                )
                for row in rows
            ]
        )
        + "\n"
    )
    nulls = sum(row.count(None) for row in rows)
    if (
        text.count("\t") == len(rows) * (width - 1)
        and text.count("\n") == len(rows)
        and text.count("\\") == nulls
        and "\r" not in text
    ):
        return text
    return "".join("\t".join(map(_copy_value, row)) + "\n" for row in rows)


def _copy_value(value: Any) -> str:
    if value is None:
        return "\\N"
    return str(value).translate(_COPY_ESCAPES)


def segment_sizes(warehouse: Warehouse) -> dict[str, int]:
    """Members per segment listed in `segments`, empty segments included."""
    rows = warehouse.rows(
        "SELECT s.segment, COUNT(m.customer_id) FROM segments AS s"
        " LEFT JOIN segment_memberships AS m ON m.segment = s.segment"
        " GROUP BY s.segment ORDER BY s.segment"
    )
    return {segment: int(count) for segment, count in rows}


def redact(url: str) -> str:
    """Hide the password of a connection URL before printing it."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
