"""refresh_segments on SQLite: membership moves, new sign-ups, profile edits, reproducibility."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pytest
from demo_warehouse import refresh_segments
from demo_warehouse.generate import SEGMENTS, customer_id, format_timestamp
from demo_warehouse.refresh import CHURN_MOVE_SHARE, NEW_CUSTOMER_TURNOVER, PROFILE_EDIT_SHARE
from demo_warehouse.seed import seed_warehouse

if TYPE_CHECKING:
    from conftest import Rows

PROFILES = 5_000
LAST_SEEDED = customer_id(PROFILES)
VALID_EMAIL = re.compile(r"[a-z][a-z0-9._-]*@[a-z0-9-]+(\.[a-z0-9-]+)+")


def seeded(tmp_path: Path, name: str = "warehouse.db", profiles: int = PROFILES) -> str:
    target = f"sqlite:///{tmp_path / name}"
    seed_warehouse(target, profiles=profiles, seed=5)
    return target


def members(target: str, rows: Rows, segment: str) -> set[str]:
    query = "SELECT customer_id FROM segment_memberships WHERE segment = ?"
    return {cid for (cid,) in rows(target, query, (segment,))}


class Refreshed(NamedTuple):
    target: str
    started: str  # a timestamp in the warehouse's text form, a second before the refresh
    sizes: dict[str, int]
    before: dict[str, set[str]]
    after: dict[str, set[str]]
    profiles_before: dict[str, tuple[str, str]]


@pytest.fixture(scope="module")
def refreshed(tmp_path_factory: pytest.TempPathFactory, rows: Rows) -> Refreshed:
    target = seeded(tmp_path_factory.mktemp("refresh"))
    before = {segment: members(target, rows, segment) for segment in SEGMENTS}
    profiles = {
        cid: (city, last)
        for cid, city, last in rows(target, "SELECT customer_id, city, last_name FROM customer_profiles")
    }
    started = format_timestamp(datetime.now(UTC) - timedelta(seconds=1))
    sizes = refresh_segments(target, seed=1)
    after = {segment: members(target, rows, segment) for segment in SEGMENTS}
    return Refreshed(target, started, sizes, before, after, profiles)


def test_returns_the_sizes_it_leaves(refreshed: Refreshed) -> None:
    assert refreshed.sizes == {segment: len(ids) for segment, ids in sorted(refreshed.after.items())}
    assert refreshed.after["vip_customers"] == refreshed.before["vip_customers"]


def test_churn_risk_members_leave_and_others_join(refreshed: Refreshed) -> None:
    before, after = refreshed.before["churn_risk"], refreshed.after["churn_risk"]
    assert len(before - after) == len(after - before) == round(len(before) * CHURN_MOVE_SHARE) > 0


def test_oldest_new_customers_age_out_and_new_ones_sign_up(refreshed: Refreshed, rows: Rows) -> None:
    before, after = refreshed.before["new_customers_30d"], refreshed.after["new_customers_30d"]
    aged_out, signed_up = before - after, after - before
    assert len(aged_out) == len(signed_up) == round(len(before) * NEW_CUSTOMER_TURNOVER) > 0
    assert min(signed_up) > LAST_SEEDED  # brand-new customers, not existing ones
    assert rows(refreshed.target, "SELECT COUNT(*) FROM customer_profiles") == [(PROFILES + len(signed_up),)]

    signups = dict(rows(refreshed.target, "SELECT customer_id, signup_date FROM customer_profiles"))
    assert max(signups[cid] for cid in aged_out) <= min(signups[cid] for cid in after - signed_up)
    today = datetime.now(UTC).date()
    assert {signups[cid] for cid in signed_up} <= {today.isoformat(), (today - timedelta(days=1)).isoformat()}
    emails = [
        email
        for (email,) in rows(
            refreshed.target, "SELECT email FROM customer_profiles WHERE customer_id > ?", (LAST_SEEDED,)
        )
    ]
    assert all(VALID_EMAIL.fullmatch(email) for email in emails)


def test_profile_edits_move_cities_and_change_names(refreshed: Refreshed, rows: Rows) -> None:
    edited = rows(
        refreshed.target,
        "SELECT customer_id, city, last_name FROM customer_profiles WHERE updated_at >= ? AND customer_id <= ?",
        (refreshed.started, LAST_SEEDED),
    )
    assert len(edited) == round(PROFILES * PROFILE_EDIT_SHARE)
    changed = [cid for cid, city, last in edited if refreshed.profiles_before[cid] != (city, last)]
    assert len(changed) > len(edited) / 2
    stamps = rows(refreshed.target, "SELECT DISTINCT refreshed_at FROM segments")
    assert len(stamps) == 1 and stamps[0][0] >= refreshed.started


def test_same_seed_same_changes(tmp_path: Path, rows: Rows) -> None:
    first, second, third = (seeded(tmp_path, name) for name in ("a.db", "b.db", "c.db"))
    sizes = [
        refresh_segments(first, seed=3),
        refresh_segments(second, seed=3),
        refresh_segments(third, seed=4),
    ]
    snapshot = "SELECT segment, customer_id FROM segment_memberships ORDER BY 1, 2"
    profiles = "SELECT customer_id, email, first_name, last_name, city FROM customer_profiles ORDER BY 1"
    assert sizes[0] == sizes[1]
    assert rows(first, snapshot) == rows(second, snapshot)
    assert rows(first, profiles) == rows(second, profiles)
    assert rows(first, snapshot) != rows(third, snapshot)


def test_repeated_refreshes_keep_ids_unique(tmp_path: Path, rows: Rows) -> None:
    target = seeded(tmp_path, profiles=1_000)
    for _ in range(3):
        refresh_segments(target)
    ids = [cid for (cid,) in rows(target, "SELECT customer_id FROM customer_profiles")]
    emails = [
        email
        for (email,) in rows(target, "SELECT email FROM customer_profiles WHERE customer_id > 'C0001000'")
    ]
    assert len(ids) == len(set(ids)) > 1_000
    assert len(emails) == len(set(emails))


def test_refresh_of_an_empty_warehouse_signs_up_a_first_customer(tmp_path: Path) -> None:
    target = seeded(tmp_path, profiles=0)
    sizes = refresh_segments(target, seed=2)
    assert sizes["new_customers_30d"] == 1
    assert sizes["churn_risk"] == 0


def test_refresh_rolls_back_on_error(tmp_path: Path, rows: Rows, monkeypatch: pytest.MonkeyPatch) -> None:
    target = seeded(tmp_path, profiles=1_000)
    before = rows(target, "SELECT * FROM segment_memberships ORDER BY 1, 2")

    def fail(*_: object) -> int:
        raise RuntimeError("warehouse went away")

    monkeypatch.setattr("demo_warehouse.refresh._edit_profiles", fail)
    with pytest.raises(RuntimeError):
        refresh_segments(target, seed=1)
    assert rows(target, "SELECT * FROM segment_memberships ORDER BY 1, 2") == before
