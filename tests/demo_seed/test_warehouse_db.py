"""Engine plumbing: target URLs, password redaction and the COPY text encoding."""

from __future__ import annotations

import pytest
from demo_warehouse.db import Target, _copy_text, redact
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.mark.parametrize(
    ("url", "dialect", "location"),
    [
        ("sqlite:///var/warehouse.db", "sqlite", "var/warehouse.db"),
        ("sqlite:////tmp/w.db", "sqlite", "/tmp/w.db"),
        ("postgresql://me@127.0.0.1:5432/dw", "postgres", "postgresql://me@127.0.0.1:5432/dw"),
        ("postgres://me:pw@db/dw", "postgres", "postgresql://me:pw@db/dw"),
        ("postgresql+psycopg2://me@db/dw", "postgres", "postgresql://me@db/dw"),
    ],
)
def test_targets(url: str, dialect: str, location: str) -> None:
    assert Target.parse(url) == Target(dialect, location)  # type: ignore[arg-type]


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "mysql://db/x", "warehouse.db", "postgresql://"])
def test_bad_targets(url: str) -> None:
    with pytest.raises(ValueError, match="unsupported warehouse target"):
        Target.parse(url)


def test_redact_hides_passwords() -> None:
    assert redact("postgresql://airflow:s3cret@postgres:5432/warehouse") == (
        "postgresql://airflow:***@postgres:5432/warehouse"
    )
    assert redact("postgresql://postgres@127.0.0.1/db") == "postgresql://postgres@127.0.0.1/db"


def parse_copy_text(text: str) -> list[tuple[str | None, ...]]:
    """A reference reader of PostgreSQL's COPY text format, for the property below."""
    escapes = {"\\\\": "\\", "\\t": "\t", "\\n": "\n", "\\r": "\r"}
    result = []
    for line in text.split("\n")[:-1]:
        result.append(
            tuple(None if field == "\\N" else re_unescape(field, escapes) for field in line.split("\t"))
        )
    return result


def re_unescape(field: str, escapes: dict[str, str]) -> str:
    out, index = [], 0
    while index < len(field):
        pair = field[index : index + 2]
        if pair in escapes:
            out.append(escapes[pair])
            index += 2
        else:
            assert field[index] != "\\", field
            out.append(field[index])
            index += 1
    return "".join(out)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.none() | st.text(), st.none() | st.text()), min_size=1, max_size=5))
def test_copy_text_round_trips(rows_in: list[tuple[str | None, str | None]]) -> None:
    assert parse_copy_text(_copy_text(rows_in, 2)) == rows_in
