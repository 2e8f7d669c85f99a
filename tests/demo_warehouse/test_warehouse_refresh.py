"""refresh_segments on SQLite: membership moves, new sign-ups, profile edits, reproducibility."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from demo_warehouse import refresh_segments
from demo_warehouse.generate import SEGMENTS
from demo_warehouse.refresh import CHURN_MOVE_SHARE, NEW_CUSTOMER_TURNOVER, PROFILE_EDIT_SHARE
from demo_warehouse.seed import seed_warehouse

if TYPE_CHECKING:
    from conftest import Rows

PROFILES = 5_000


def seeded(tmp_path: Path, name: str = "warehouse.db", profiles: int = PROFILES) -> str:
    target = f"sqlite:///{tmp_path / name}"
    seed_warehouse(target, profiles=profiles, seed=5)
    return target


def members(target: str, rows: Rows, segment: str) -> set[str]:
    return {
        cid
        for (cid,) in rows(
            target, "SELECT customer_id FROM segment_memberships WHERE segment = ?", (segment,)
        )
    }


def test_refresh_moves_members_and_adds_new_customers(tmp_path: Path, rows: Rows) -> None:
    target = seeded(tmp_path)
    before = {segment: members(target, rows, segment) for segment in SEGMENTS}
    profiles_before = dict(
        (row[0], row[1:])
        for row in rows(target, "SELECT customer_id, city, last_name FROM customer_profiles")
    )
    started = datetime.now(UTC) - timedelta(seconds=1)

    sizes = refresh_segments(target, seed=1)

    after = {segment: members(target, rows, segment) for segment in SEGMENTS}
    assert sizes == {segment: len(ids) for segment, ids in sorted(after.items())}

    churn_left, churn_joined = (
        before["churn_risk"] - after["churn_risk"],
        after["churn_risk"] - before["churn_risk"],
    )
    assert len(churn_left) == len(churn_joined) == round(len(before["churn_risk"]) * CHURN_MOVE_SHARE) > 0

    aged_out = before["new_customers_30d"] - after["new_customers_30d"]
    signed_up = after["new_customers_30d"] - before["new_customers_30d"]
    assert (
        len(aged_out) == len(signed_up) == round(len(before["new_customers_30d"]) * NEW_CUSTOMER_TURNOVER) > 0
    )
    assert min(signed_up) > f"C{PROFILES:07d}"  # brand-new customers, not existing ones
    placeholders = ", ".join("?" * len(aged_out))
    oldest = rows(
        target,
        f"SELECT MAX(signup_date) FROM customer_profiles WHERE customer_id IN ({placeholders})",
        tuple(aged_out),
    )[0][0]
    remaining = rows(
        target,
        "SELECT MIN(p.signup_date) FROM customer_profiles AS p JOIN segment_memberships AS m"
        " ON m.customer_id = p.customer_id WHERE m.segment = 'new_customers_30d' AND p.customer_id <= ?",
        (f"C{PROFILES:07d}",),
    )[0][0]
    assert oldest <= remaining
    assert after["vip_customers"] == before["vip_customers"]
    assert rows(target, "SELECT COUNT(*) FROM customer_profiles") == [(PROFILES + len(signed_up),)]

    today = datetime.now(UTC).date().isoformat()
    new_rows = rows(
        target,
        "SELECT signup_date, email, loyalty_tier FROM customer_profiles WHERE customer_id > ?",
        (f"C{PROFILES:07d}",),
    )
    assert {signup for signup, _, _ in new_rows} <= {
        today,
        (datetime.now(UTC) - timedelta(days=1)).date().isoformat(),
    }
    assert all("@" in email and email == email.strip().lower() for _, email, _ in new_rows)

    edited = rows(
        target,
        "SELECT customer_id, city, last_name FROM customer_profiles WHERE updated_at >= ?"
        " AND customer_id <= ?",
        (started.strftime("%Y-%m-%d %H:%M:%S+00:00"), f"C{PROFILES:07d}"),
    )
    assert len(edited) == round(PROFILES * PROFILE_EDIT_SHARE)
    assert sum(profiles_before[cid] != (city, last) for cid, city, last in edited) > len(edited) / 2

    refreshed = rows(target, "SELECT DISTINCT refreshed_at FROM segments")
    assert len(refreshed) == 1 and refreshed[0][0] >= started.strftime("%Y-%m-%d %H:%M:%S+00:00")


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
