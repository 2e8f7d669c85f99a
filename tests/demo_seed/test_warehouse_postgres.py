"""The PostgreSQL path against a real server, each test in its own throwaway database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from demo_warehouse import refresh_segments
from demo_warehouse.db import connect
from demo_warehouse.generate import SEGMENTS, dirt_counts, format_timestamp
from demo_warehouse.seed import seed_warehouse

if TYPE_CHECKING:
    from conftest import Rows

pytestmark = pytest.mark.postgres

PROFILES = 4_000
AWKWARD = [
    "O'Brien",
    "Robert'); DROP TABLE segments;--",
    "tab\there",
    "back\\slash",
    "line\nbreak",
    "cr\rlf",
    "\\N",
    "",
    "?",
    "%s",
    "%(name)s",
    "😊 emoji",
    "محمد",
]


def as_sqlite(value: Any) -> Any:
    """PostgreSQL's Python types in the text form the SQLite warehouse stores."""
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def test_seed_matches_sqlite_row_for_row(
    postgres_server: Callable[[], str], tmp_path: Path, rows: Rows
) -> None:
    postgres = postgres_server()
    sqlite = f"sqlite:///{tmp_path / 'warehouse.db'}"
    pg_result = seed_warehouse(postgres, profiles=PROFILES, seed=9)
    sqlite_result = seed_warehouse(sqlite, profiles=PROFILES, seed=9)
    assert pg_result.segment_sizes == sqlite_result.segment_sizes
    assert pg_result.segment_sizes.keys() == SEGMENTS.keys()
    for query in (
        "SELECT * FROM customer_profiles ORDER BY customer_id",
        "SELECT * FROM segment_profiles ORDER BY segment, customer_id",
        "SELECT * FROM segments ORDER BY segment",
    ):
        converted = [tuple(map(as_sqlite, row)) for row in rows(postgres, query)]
        assert converted == rows(sqlite, query), query
    view = rows(postgres, "SELECT COUNT(*), COUNT(DISTINCT (segment, customer_id)) FROM segment_profiles")
    assert view == rows(postgres, "SELECT COUNT(*), COUNT(*) FROM segment_memberships")


def test_dirt_survives_copy(postgres_server: Callable[[], str], rows: Rows) -> None:
    postgres = postgres_server()
    seed_warehouse(postgres, profiles=PROFILES, seed=9)
    counts = rows(
        postgres,
        "SELECT COUNT(*) FILTER (WHERE email IS NULL), COUNT(*) FILTER (WHERE email = ''),"
        " COUNT(*) FILTER (WHERE first_name IS NULL), COUNT(*) FILTER (WHERE first_name = ''),"
        " COUNT(*) FILTER (WHERE email <> btrim(email)), COUNT(*) FILTER (WHERE last_name ~ '[\u0600-\u06ff]')"
        " FROM customer_profiles",
    )[0]
    expected = dirt_counts(PROFILES)
    assert counts == tuple(
        expected[kind]
        for kind in (
            "null_email",
            "empty_email",
            "null_first_name",
            "empty_first_name",
            "duplicate_email_whitespace",
            "arabic_name",
        )
    )


def test_drop_recreates_and_a_seeded_warehouse_is_left_alone(
    postgres_server: Callable[[], str], rows: Rows
) -> None:
    postgres = postgres_server()
    assert seed_warehouse(postgres, profiles=1_000, seed=1).created
    again = seed_warehouse(postgres, profiles=2_000, seed=1)
    assert not again.created and again.profiles == 1_000
    assert seed_warehouse(postgres, profiles=1_500, seed=1, drop=True).created
    assert rows(postgres, "SELECT COUNT(*) FROM customer_profiles") == [(1_500,)]


def test_refresh_on_postgres(postgres_server: Callable[[], str], rows: Rows) -> None:
    postgres = postgres_server()
    seed_warehouse(postgres, profiles=PROFILES, seed=9)
    before = set(rows(postgres, "SELECT segment, customer_id FROM segment_memberships"))
    started = datetime.now(UTC)
    sizes = refresh_segments(postgres, seed=4)
    after = set(rows(postgres, "SELECT segment, customer_id FROM segment_memberships"))
    assert before - after and after - before
    assert sizes == dict(
        rows(postgres, "SELECT segment, COUNT(*) FROM segment_memberships GROUP BY 1 ORDER BY 1")
    )
    assert rows(postgres, "SELECT MIN(refreshed_at) FROM segments")[0][0] >= started.replace(microsecond=0)
    assert rows(postgres, "SELECT COUNT(*) FROM customer_profiles")[0][0] > PROFILES


def test_awkward_values_round_trip_as_parameters(postgres_server: Callable[[], str], tmp_path: Path) -> None:
    """Values go through COPY, executemany and bound parameters intact, never as SQL."""
    for target in (postgres_server(), f"sqlite:///{tmp_path / 'warehouse.db'}"):
        seed_warehouse(target, profiles=0)
        profiles = [
            (
                f"C{number:07d}",
                value,
                value,
                None,
                value,
                "DE",
                None,
                1.5,
                "gold",
                "2025-01-01",
                "2025-01-01 00:00:00+00:00",
            )
            for number, value in enumerate(AWKWARD, start=1)
        ]
        with connect(target) as warehouse:
            warehouse.load("customer_profiles", profiles)
            warehouse.executemany(
                "INSERT INTO segment_memberships (segment, customer_id) VALUES (?, ?)",
                [(value, profile[0]) for value, profile in zip(AWKWARD, profiles, strict=True)],
            )
        with connect(target) as warehouse:
            stored = warehouse.rows(
                "SELECT email, first_name, last_name, city FROM customer_profiles ORDER BY customer_id"
            )
            found = [
                warehouse.scalar("SELECT customer_id FROM segment_profiles WHERE segment = ?", (value,))
                for value in AWKWARD
            ]
            assert warehouse.scalar("SELECT COUNT(*) FROM segments") == len(SEGMENTS)
        assert stored == [(value, value, None, value) for value in AWKWARD], target
        assert found == [profile[0] for profile in profiles]
