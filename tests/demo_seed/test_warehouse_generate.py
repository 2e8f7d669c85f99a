"""The pure generator: determinism, exact dirt counts, coherent segments."""

from __future__ import annotations

import re
from collections import Counter
from datetime import date, timedelta
from functools import cache

import pytest
from demo_warehouse import generate as gen
from demo_warehouse.generate import DIRT_RATES, PROFILE_COLUMNS, SEGMENTS, dirt_counts, generate
from hypothesis import given, settings
from hypothesis import strategies as st

N = 20_000
SEED = 7
COLUMN = {name: index for index, name in enumerate(PROFILE_COLUMNS)}
VALID_EMAIL = re.compile(r"[a-z][a-z0-9._-]*@[a-z0-9-]+(\.[a-z0-9-]+)+")
SCRIPTS = {
    "cyrillic_name": re.compile("[\u0400-\u04ff]"),
    "greek_name": re.compile("[\u0370-\u03ff]"),
    "cjk_name": re.compile("[\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af]"),
    "arabic_name": re.compile("[\u0600-\u06ff]"),
}
EMOJI = re.compile("[\U0001f300-\U0001faff\u2600-\u27bf]")


@cache
def warehouse(profiles: int = N, seed: int = SEED) -> tuple[list[tuple], list[tuple[str, str]]]:
    profiles_rows, memberships = [], []
    for chunk in generate(profiles, seed):
        profiles_rows += chunk.profiles
        memberships += chunk.memberships
    return profiles_rows, memberships


def email_kind(email: str | None) -> str | None:
    """Classify an address the way a careful exporter would, independently of the generator."""
    if email is None:
        return "null_email"
    if email == "":
        return "empty_email"
    if email != email.strip():
        return "duplicate_email_whitespace"
    if email != email.lower():
        return "duplicate_email_case"
    if "@" not in email:
        return "invalid_email_no_at"
    if email.count("@") > 1:
        return "invalid_email_double_at"
    if " " in email:
        return "invalid_email_space"
    if email.endswith("."):
        return "invalid_email_trailing_dot"
    if "." not in email.partition("@")[2]:
        return "invalid_email_missing_tld"
    if "+" in email:
        return "plus_address_email"
    assert VALID_EMAIL.fullmatch(email), email
    return None


def name_kind(first: str | None, last: str | None) -> str | None:
    for value, field in ((first, "first"), (last, "last")):
        if value is None:
            return f"null_{field}_name"
        if value == "":
            return f"empty_{field}_name"
    if max(len(first), len(last)) >= gen.LONG_NAME_MIN:
        return "long_name"
    for kind, script in SCRIPTS.items():
        if script.search(first) and script.search(last):
            return kind
    if EMOJI.search(first + last):
        return "emoji_name"
    return None


def dirt_found(profiles: list[tuple]) -> Counter[str]:
    found: Counter[str] = Counter()
    for row in profiles:
        found[email_kind(row[COLUMN["email"]])] += 1
        found[name_kind(row[COLUMN["first_name"]], row[COLUMN["last_name"]])] += 1
    del found[None]
    return found


def test_same_seed_same_rows_and_chunking_does_not_matter() -> None:
    profiles, memberships = warehouse(5_000, 3)
    rechunked = list(generate(5_000, 3, chunk_size=777))
    assert [row for chunk in rechunked for row in chunk.profiles] == profiles
    assert [row for chunk in rechunked for row in chunk.memberships] == memberships
    assert warehouse(5_000, 4)[0] != profiles


def test_profiles_have_the_documented_shape() -> None:
    profiles, _ = warehouse()
    assert len(profiles) == N
    assert [row[0] for row in profiles[:3]] == ["C0000001", "C0000002", "C0000003"]
    assert len({row[0] for row in profiles}) == N
    for row in profiles[:2_000]:
        assert len(row) == len(PROFILE_COLUMNS)
        assert re.fullmatch(r"[A-Z]{2}", row[COLUMN["country"]])
        assert row[COLUMN["loyalty_tier"]] == gen.loyalty_tier(row[COLUMN["lifetime_value"]])
        assert row[COLUMN["birthday"]] is None or date.fromisoformat(row[COLUMN["birthday"]])
        assert date.fromisoformat(row[COLUMN["signup_date"]]) < gen.REFERENCE_DATE
        assert row[COLUMN["updated_at"]][:10] >= row[COLUMN["signup_date"]]
        assert row[COLUMN["updated_at"]].endswith("+00:00")


def test_every_dirt_kind_lands_on_exactly_the_documented_number_of_profiles() -> None:
    profiles, _ = warehouse()
    assert dirt_found(profiles) == Counter(dirt_counts(N))
    assert all(count >= 10 for count in dirt_counts(N).values())


@settings(max_examples=8, deadline=None)
@given(profiles=st.integers(gen.MIN_PROFILES_FOR_DIRT, 2_500), seed=st.integers(0, 2**32))
def test_dirt_counts_hold_for_any_size_and_seed(profiles: int, seed: int) -> None:
    rows = [row for chunk in generate(profiles, seed) for row in chunk.profiles]
    assert dirt_found(rows) == Counter(dirt_counts(profiles))


def test_rates_are_documented_in_the_module_docstring() -> None:
    assert gen.EMAIL_DIRT_RATES.keys() | gen.NAME_DIRT_RATES.keys() == DIRT_RATES.keys()
    for kind, rate in DIRT_RATES.items():
        assert re.search(rf"^  {kind} +{rate * 100:.2f} %", gen.__doc__, re.MULTILINE), kind


def test_small_warehouses_are_clean() -> None:
    assert set(dirt_counts(gen.MIN_PROFILES_FOR_DIRT - 1).values()) == {0}
    profiles = [row for chunk in generate(300, 1) for row in chunk.profiles]
    assert not dirt_found(profiles)


def test_clean_emails_are_unique_and_use_real_domains() -> None:
    profiles, _ = warehouse()
    clean = [row[COLUMN["email"]] for row in profiles if email_kind(row[COLUMN["email"]]) is None]
    assert len(clean) == len(set(clean))
    domains = Counter(email.partition("@")[2] for email in clean)
    assert {"gmail.com", "outlook.com", "yahoo.co.uk", "web.de"} <= domains.keys()
    assert not domains.keys() & {"example.com", "example.org", "test.com", "mailinator.com"}


def test_duplicate_addresses_repeat_an_earlier_opted_in_customer() -> None:
    profiles, memberships = warehouse()
    opted_in = {cid for segment, cid in memberships if segment == "newsletter_opt_in"}
    first_owner = {}
    for row in profiles:
        if email_kind(row[COLUMN["email"]]) is None:
            first_owner.setdefault(row[COLUMN["email"]], row[0])
    duplicates = [row for row in profiles if email_kind(row[COLUMN["email"]]) in gen._DUPLICATE_KINDS]
    assert duplicates
    for row in duplicates:
        owner = first_owner[row[COLUMN["email"]].strip().lower()]
        assert owner < row[0]
        assert {owner, row[0]} <= opted_in  # both reach the same audience: the exporter must dedupe


def test_plus_addresses_and_scripts_look_real() -> None:
    profiles, _ = warehouse()
    plus = [
        row[COLUMN["email"]] for row in profiles if email_kind(row[COLUMN["email"]]) == "plus_address_email"
    ]
    assert all(re.fullmatch(r"[^+@\s]+\+[a-z]+@[a-z0-9.-]+\.[a-z]+", email) for email in plus)
    arabic = [
        row
        for row in profiles
        if name_kind(row[COLUMN["first_name"]], row[COLUMN["last_name"]]) == "arabic_name"
    ]
    assert {row[COLUMN["country"]] for row in arabic} <= {"AE", "EG"}
    assert all(
        VALID_EMAIL.fullmatch(row[COLUMN["email"]])
        for row in arabic
        if email_kind(row[COLUMN["email"]]) is None
    )


def test_segment_sizes_and_overlaps() -> None:
    profiles, memberships = warehouse()
    members: dict[str, set[str]] = {segment: set() for segment in SEGMENTS}
    for segment, cid in memberships:
        members[segment].add(cid)
    assert len(memberships) == sum(map(len, members.values()))
    expected = {
        "vip_customers": 0.03,
        "churn_risk": 0.12,
        "newsletter_opt_in": 0.55,
        "new_customers_30d": 0.08,
        "high_value_lapsed": 0.02,
    }
    for segment, share in expected.items():
        assert len(members[segment]) / N == pytest.approx(share, rel=0.2), segment
    overlaps = [
        ("vip_customers", "churn_risk"),
        ("vip_customers", "high_value_lapsed"),
        ("churn_risk", "high_value_lapsed"),
        ("newsletter_opt_in", "vip_customers"),
        ("newsletter_opt_in", "new_customers_30d"),
        ("newsletter_opt_in", "churn_risk"),
    ]
    for left, right in overlaps:
        assert members[left] & members[right], (left, right)

    by_id = {row[0]: row for row in profiles}
    cutoff = (gen.REFERENCE_DATE - timedelta(days=gen.NEW_CUSTOMER_DAYS)).isoformat()
    assert members["vip_customers"] == {
        cid for cid, row in by_id.items() if row[COLUMN["loyalty_tier"]] == "platinum"
    }
    assert members["new_customers_30d"] == {
        cid for cid, row in by_id.items() if row[COLUMN["signup_date"]] >= cutoff
    }
    assert all(
        by_id[cid][COLUMN["loyalty_tier"]] in ("gold", "platinum") for cid in members["high_value_lapsed"]
    )
    assert not members["churn_risk"] & members["new_customers_30d"]
