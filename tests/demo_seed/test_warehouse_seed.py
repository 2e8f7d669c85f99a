"""Seeding SQLite: schema, row counts, the view, dirt as stored, --drop and the command line."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from demo_warehouse.db import Target
from demo_warehouse.generate import PROFILE_COLUMNS, SEGMENTS, dirt_counts, generate
from demo_warehouse.seed import main, seed_warehouse

if TYPE_CHECKING:
    from conftest import Rows, Seeded

VIEW_COLUMNS = [
    "segment",
    "customer_id",
    "email",
    "first_name",
    "last_name",
    "city",
    "country",
    "birthday",
    "lifetime_value",
    "loyalty_tier",
]


def dump(target: str, rows: Rows) -> list[list[tuple]]:
    return [
        rows(target, "SELECT * FROM customer_profiles ORDER BY customer_id"),
        rows(target, "SELECT * FROM segment_memberships ORDER BY segment, customer_id"),
        rows(target, "SELECT * FROM segments ORDER BY segment"),
    ]


def test_row_counts_and_segments(seeded_sqlite: Seeded, rows: Rows) -> None:
    assert rows(seeded_sqlite.target, "SELECT COUNT(*) FROM customer_profiles") == [(seeded_sqlite.profiles,)]
    segments = rows(
        seeded_sqlite.target, "SELECT segment, description, refreshed_at FROM segments ORDER BY segment"
    )
    assert [segment for segment, _, _ in segments] == sorted(SEGMENTS)
    assert all(description and refreshed for _, description, refreshed in segments)
    sizes = dict(
        rows(seeded_sqlite.target, "SELECT segment, COUNT(*) FROM segment_memberships GROUP BY segment")
    )
    assert sizes.keys() == SEGMENTS.keys()
    assert sizes["newsletter_opt_in"] > sizes["churn_risk"] > sizes["new_customers_30d"]
    assert sizes["new_customers_30d"] > sizes["vip_customers"] > sizes["high_value_lapsed"] > 0


def test_stored_rows_are_exactly_the_generated_rows(seeded_sqlite: Seeded, rows: Rows) -> None:
    generated = [
        row for chunk in generate(seeded_sqlite.profiles, seeded_sqlite.seed) for row in chunk.profiles
    ]
    assert rows(seeded_sqlite.target, "SELECT * FROM customer_profiles ORDER BY customer_id") == generated


def test_view_has_one_row_per_profile_per_segment(seeded_sqlite: Seeded, rows: Rows) -> None:
    path = Target.parse(seeded_sqlite.target).location
    with sqlite3.connect(path) as connection:
        cursor = connection.execute("SELECT * FROM segment_profiles LIMIT 1")
        assert [column[0] for column in cursor.description] == VIEW_COLUMNS
    view = rows(
        seeded_sqlite.target,
        "SELECT segment, customer_id FROM segment_profiles ORDER BY segment, customer_id",
    )
    memberships = rows(
        seeded_sqlite.target, "SELECT segment, customer_id FROM segment_memberships ORDER BY 1, 2"
    )
    assert view == memberships
    assert len(set(view)) == len(view)
    overlaps = rows(
        seeded_sqlite.target,
        "SELECT COUNT(*) FROM (SELECT customer_id FROM segment_profiles GROUP BY customer_id HAVING COUNT(*) > 1)",
    )
    assert overlaps[0][0] > seeded_sqlite.profiles * 0.1


def test_dirt_is_stored_as_generated(seeded_sqlite: Seeded, rows: Rows) -> None:
    expected = dirt_counts(seeded_sqlite.profiles)

    def count(where: str) -> int:
        return rows(seeded_sqlite.target, f"SELECT COUNT(*) FROM customer_profiles WHERE {where}")[0][0]

    assert count("email IS NULL") == expected["null_email"]
    assert count("email = ''") == expected["empty_email"]
    assert count("email LIKE '%@@%'") == expected["invalid_email_double_at"]
    assert count("email <> '' AND instr(email, '@') = 0") == expected["invalid_email_no_at"]
    assert count("email LIKE '%.'") == expected["invalid_email_trailing_dot"]
    assert count("email <> trim(email)") == expected["duplicate_email_whitespace"]
    assert count("first_name IS NULL") == expected["null_first_name"]
    assert count("last_name = ''") == expected["empty_last_name"]
    assert count("max(length(first_name), length(last_name)) >= 300") == expected["long_name"]
    shared = rows(
        seeded_sqlite.target,
        "SELECT COUNT(*) FROM (SELECT lower(trim(email)) FROM customer_profiles WHERE email <> ''"
        " GROUP BY lower(trim(email)) HAVING COUNT(DISTINCT customer_id) > 1)",
    )[0][0]
    assert shared > 0
    assert rows(
        seeded_sqlite.target, "SELECT first_name FROM customer_profiles WHERE first_name LIKE '%🌸%' LIMIT 1"
    )


def test_same_seed_same_warehouse_and_drop_recreates(tmp_path: Path, rows: Rows) -> None:
    first, second = (f"sqlite:///{tmp_path / name}" for name in ("a.db", "b.db"))
    seed_warehouse(first, profiles=2_000, seed=11)
    seed_warehouse(second, profiles=2_000, seed=11)
    assert dump(first, rows) == dump(second, rows)

    again = seed_warehouse(second, profiles=5_000, seed=12)
    assert not again.created and again.profiles == 2_000
    assert dump(first, rows) == dump(second, rows)

    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    assert seed_warehouse(empty, profiles=0).created
    assert not seed_warehouse(empty, profiles=10).created

    recreated = seed_warehouse(second, profiles=2_500, seed=12, drop=True)
    assert recreated.created and recreated.profiles == 2_500
    assert rows(second, "SELECT COUNT(*) FROM customer_profiles") == [(2_500,)]
    assert dump(first, rows) != dump(second, rows)


def test_command_line_seeds_and_summarises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--profiles", "1_500", "--seed", "3"]) == 0
    assert (tmp_path / "var" / "warehouse.db").exists()
    out = capsys.readouterr().out
    assert "Seeded sqlite:///var/warehouse.db: 1,500 profiles" in out
    assert all(segment in out for segment in SEGMENTS)
    assert "null_email=8" in out

    assert main(["--profiles", "1500"]) == 0
    assert "already holds 1,500 profiles" in capsys.readouterr().out

    with pytest.raises(SystemExit) as error:
        main(["--target", "mysql://localhost/db"])
    assert error.value.code == 2
    assert "unsupported warehouse target" in capsys.readouterr().err


def test_profile_columns_match_the_table(seeded_sqlite: Seeded) -> None:
    with sqlite3.connect(Target.parse(seeded_sqlite.target).location) as connection:
        columns = [row[1] for row in connection.execute("PRAGMA table_info(customer_profiles)")]
    assert tuple(columns) == PROFILE_COLUMNS
