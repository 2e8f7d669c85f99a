"""Hostile column names: a definition naming a column with SQL in it fails at parse time naming the
field, and a column that is a plain name but an SQL keyword still works, because every identifier is
quoted (on SQLite and PostgreSQL alike)."""

from __future__ import annotations

import sqlite3

import pytest
from mailchimp_provider.export.definition import ExportDefinition
from mailchimp_provider.export.extract import ANSI_QUOTE, SQLITE_QUOTE, build_query, quote_identifier
from pydantic import ValidationError

HOSTILE = [
    'email"; DROP TABLE profiles; --',
    "email` OR 1=1 --",
    "id) UNION SELECT password FROM users --",
    "a b",
]


def definition(**changes) -> ExportDefinition:
    raw = {
        "export": "hostile",
        "mailchimp": {"conn_id": "m", "audience_id": "a1"},
        "warehouse": {"conn_id": "w", "table": "profiles", "segment_column": "segment"},
        "segments": ["s1"],
        "columns": {"id": "id", "email": "email"},
        "merge_fields": {},
    }
    for key, value in changes.items():
        section, _, field = key.partition("__")
        raw[section] = {**raw[section], field: value} if field else value
    return ExportDefinition.model_validate(raw)


@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize(
    ("place", "where"),
    [
        ("columns__id", "columns.id"),
        ("columns__email", "columns.email"),
        ("columns__first_name", "columns.first_name"),
        ("warehouse__segment_column", "warehouse.segment_column"),
    ],
)
def test_hostile_column_names_are_refused_naming_the_field(name, place, where) -> None:
    with pytest.raises(ValidationError) as raised:
        definition(**{place: name})
    assert where.split(".")[-1] in str(raised.value)


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_merge_field_columns_are_refused(name) -> None:
    with pytest.raises(ValidationError, match="LTV"):
        definition(merge_fields={"LTV": name})


def test_quotes_inside_a_name_are_doubled() -> None:
    assert quote_identifier('a"b', ANSI_QUOTE) == '"a""b"'
    assert quote_identifier("a`b", SQLITE_QUOTE) == "`a``b`"
    assert quote_identifier("s.t", ANSI_QUOTE) == '"s"."t"'


def test_columns_named_like_sql_keywords_are_quoted_and_work() -> None:
    db = sqlite3.connect(":memory:")
    db.execute('CREATE TABLE "order" ("select" TEXT, "from" TEXT, "where" TEXT, "group" TEXT)')
    db.execute("""INSERT INTO "order" VALUES ('P1', 'a@gmail.com', 's1', 'Ann')""")
    d = definition(
        warehouse__table="order",
        warehouse__segment_column="where",
        columns={"id": "select", "email": "from", "first_name": "group"},
    )
    sql, params = build_query(d, d.segments, "?", SQLITE_QUOTE)
    assert params == ["s1"]
    (row,) = db.execute(sql, params).fetchall()
    values = [v.decode() if isinstance(v, bytes) else v for v in row]  # SQLite cuts values as bytes
    assert sorted(values) == sorted(["P1", "s1", "a@gmail.com", "Ann"])
