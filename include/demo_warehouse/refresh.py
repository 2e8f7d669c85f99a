"""A simulated warehouse refresh of the demo segments, for the "warehouse refresh" DAG.

Why: the Mailchimp export is incremental, so after its first run it needs change to sync.
Each refresh moves members in and out of churn_risk, lets the oldest new customers age out
of new_customers_30d while brand-new customers sign up, and edits a few profiles (a move to
another city or a new last name), stamping updated_at and segments.refreshed_at with now.
It assumes the seed's contiguous customer ids C0000001..Cnnnnnnn.
"""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime

from demo_warehouse.db import Warehouse, connect, segment_sizes
from demo_warehouse.generate import customer_id, format_timestamp, new_signup
from demo_warehouse.locales import BY_COUNTRY

CHURN_MOVE_SHARE = 0.03  # of churn_risk leave it, and as many other customers join
NEW_CUSTOMER_TURNOVER = 0.04  # of new_customers_30d age out, and as many new customers sign up
PROFILE_EDIT_SHARE = 0.005  # of all profiles move city or change last name

log = logging.getLogger(__name__)


def refresh_segments(target: str, *, seed: int | None = None) -> dict[str, int]:
    """Refresh the warehouse at `target` in one transaction and return the segment sizes.

    A seed makes the changes reproducible; timestamps are always the current time.
    """
    rng = random.Random(seed)
    now = datetime.now(UTC)
    with connect(target) as warehouse:
        highest = int(
            warehouse.scalar("SELECT MAX(CAST(SUBSTR(customer_id, 2) AS BIGINT)) FROM customer_profiles") or 0
        )
        left, joined = _move_churn_risk(warehouse, rng, highest)
        aged_out, signed_up = _turn_over_new_customers(warehouse, rng, highest, now)
        edited = _edit_profiles(warehouse, rng, highest, format_timestamp(now))
        warehouse.execute("UPDATE segments SET refreshed_at = ?", (format_timestamp(now),))
        sizes = segment_sizes(warehouse)
    log.info(
        "Refreshed segments: churn_risk -%d +%d, new_customers_30d -%d +%d (new sign-ups), %d profiles edited",
        left,
        joined,
        aged_out,
        signed_up,
        edited,
    )
    return sizes


def _column(warehouse: Warehouse, query: str, params: tuple[str, ...]) -> list[str]:
    return [value for (value,) in warehouse.rows(query, params)]


def _move_churn_risk(warehouse: Warehouse, rng: random.Random, highest: int) -> tuple[int, int]:
    members = _column(
        warehouse,
        "SELECT customer_id FROM segment_memberships WHERE segment = ? ORDER BY customer_id",
        ("churn_risk",),
    )
    current = set(members)
    moves = min(round(len(members) * CHURN_MOVE_SHARE), highest - len(members))
    leaving = rng.sample(members, moves)
    joining: dict[str, None] = {}  # insertion-ordered set, so a seed gives the same statements
    while len(joining) < moves:
        candidate = customer_id(rng.randint(1, highest))
        if candidate not in current:
            joining[candidate] = None
    warehouse.executemany(
        "DELETE FROM segment_memberships WHERE segment = ? AND customer_id = ?",
        [("churn_risk", cid) for cid in leaving],
    )
    warehouse.load("segment_memberships", [("churn_risk", cid) for cid in joining])
    return len(leaving), len(joining)


def _turn_over_new_customers(
    warehouse: Warehouse, rng: random.Random, highest: int, now: datetime
) -> tuple[int, int]:
    oldest_first = _column(
        warehouse,
        "SELECT m.customer_id FROM segment_memberships AS m"
        " JOIN customer_profiles AS p ON p.customer_id = m.customer_id"
        " WHERE m.segment = ? ORDER BY p.signup_date, m.customer_id",
        ("new_customers_30d",),
    )
    turnover = max(1, round(len(oldest_first) * NEW_CUSTOMER_TURNOVER))
    aged_out = oldest_first[:turnover]
    warehouse.executemany(
        "DELETE FROM segment_memberships WHERE segment = ? AND customer_id = ?",
        [("new_customers_30d", cid) for cid in aged_out],
    )
    profiles, memberships = [], []
    for number in range(highest + 1, highest + turnover + 1):
        profile, opt_in = new_signup(rng, number, now)
        profiles.append(profile)
        memberships.append(("new_customers_30d", profile[0]))
        if opt_in:
            memberships.append(("newsletter_opt_in", profile[0]))
    warehouse.load("customer_profiles", profiles)
    warehouse.load("segment_memberships", memberships)
    return len(aged_out), turnover


def _edit_profiles(warehouse: Warehouse, rng: random.Random, highest: int, stamp: str) -> int:
    ids = [
        customer_id(number)
        for number in rng.sample(range(1, highest + 1), round(highest * PROFILE_EDIT_SHARE))
    ]
    countries: dict[str, str] = {}
    for start in range(0, len(ids), 500):
        batch = ids[start : start + 500]
        placeholders = ", ".join("?" * len(batch))  # only placeholders are formatted into the SQL
        countries.update(
            warehouse.rows(
                f"SELECT customer_id, country FROM customer_profiles WHERE customer_id IN ({placeholders})",
                batch,
            )
        )
    edits = []
    for cid in ids:
        locale = BY_COUNTRY.get(countries.get(cid, ""))
        if locale is None:
            continue
        if rng.random() < 0.5:
            edits.append((rng.choice(locale.cities), None, stamp, cid))
        else:
            edits.append((None, rng.choice(locale.last_names)[0], stamp, cid))
    warehouse.executemany(
        "UPDATE customer_profiles SET city = COALESCE(?, city), last_name = COALESCE(?, last_name),"
        " updated_at = ? WHERE customer_id = ?",
        edits,
    )
    return len(edits)
