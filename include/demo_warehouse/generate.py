"""Deterministic synthetic customer data for the demo warehouse, dirt included.

Why: the Mailchimp export has to survive what real customer data platforms hold, so the demo
data carries that dirt at small, realistic and exactly reproducible rates. The same
(profiles, seed) gives the same rows on every engine; dates are relative to REFERENCE_DATE,
not today, for the same reason.

Segments (approximate share of profiles; they overlap):

  vip_customers        ~3 %   platinum loyalty tier (lifetime value >= 1175)
  churn_risk          ~12 %   ~60 % of high_value_lapsed, ~12.5 % of the others, never new ones
  newsletter_opt_in   ~55 %   independent of the rest; every duplicate-email sign-up opted in
  new_customers_30d    ~8 %   signed up in the 30 days before REFERENCE_DATE
  high_value_lapsed    ~2 %   ~14 % of the gold and platinum customers who are not new

Dirt (DIRT_RATES, share of profiles). Each kind lands on exactly max(1, round(rate * n))
profiles once n >= MIN_PROFILES_FOR_DIRT, at seeded positions, never on the first profile.
A profile carries at most one email kind and, independently, at most one name kind.

  kind                          rate    example
  invalid_email_no_at           0.20 %  anna.muellergmail.com
  invalid_email_double_at       0.10 %  anna.mueller@@gmail.com
  invalid_email_space           0.10 %  anna.mu eller@gmail.com
  invalid_email_missing_tld     0.10 %  anna.mueller@gmail
  invalid_email_trailing_dot    0.10 %  anna.mueller@gmail.com.
  empty_email                   0.30 %  ''
  null_email                    0.50 %  NULL
  duplicate_email_case          0.30 %  Anna.Mueller@gmail.com, an earlier customer's address
  duplicate_email_whitespace    0.20 %  ' anna.mueller@gmail.com ', an earlier customer's address
  plus_address_email            1.00 %  anna.mueller+news@gmail.com (valid)
  null_first_name               0.50 %  NULL
  empty_first_name              0.30 %  ''
  null_last_name                0.50 %  NULL
  empty_last_name               0.30 %  ''
  long_name                     0.05 %  a first or last name of 300+ characters
  cyrillic_name                 1.50 %  Олена Шевченко from Київ (UA, BG)
  greek_name                    0.50 %  Γιώργος Παπαδόπουλος (GR)
  cjk_name                      1.50 %  さくら 佐藤, 伟 王, 민준 김 (JP, CN, KR)
  arabic_name                   1.00 %  محمد المنصوري (AE, EG), right to left
  emoji_name                    0.20 %  'Anna 🌸', with skin-tone and ZWJ sequences

Clean emails are lower-case, trimmed and unique; only the duplicate kinds share an address
(after trimming and lower-casing) with another profile.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TypeVar

from demo_warehouse.locales import EMOJI, LATIN_LOCALES, PLUS_TAGS, SCRIPT_LOCALES, Locale, Name

REFERENCE_DATE = date(2026, 1, 1)
MIN_PROFILES_FOR_DIRT = 1_000
LONG_NAME_MIN = 300

EMAIL_DIRT_RATES: dict[str, float] = {
    "invalid_email_no_at": 0.002,
    "invalid_email_double_at": 0.001,
    "invalid_email_space": 0.001,
    "invalid_email_missing_tld": 0.001,
    "invalid_email_trailing_dot": 0.001,
    "empty_email": 0.003,
    "null_email": 0.005,
    "duplicate_email_case": 0.003,
    "duplicate_email_whitespace": 0.002,
    "plus_address_email": 0.01,
}
NAME_DIRT_RATES: dict[str, float] = {
    "null_first_name": 0.005,
    "empty_first_name": 0.003,
    "null_last_name": 0.005,
    "empty_last_name": 0.003,
    "long_name": 0.0005,
    "cyrillic_name": 0.015,
    "greek_name": 0.005,
    "cjk_name": 0.015,
    "arabic_name": 0.01,
    "emoji_name": 0.002,
}
DIRT_RATES: dict[str, float] = EMAIL_DIRT_RATES | NAME_DIRT_RATES

SEGMENTS: dict[str, str] = {
    "vip_customers": "Platinum loyalty tier: the top ~3% of customers by lifetime value",
    "churn_risk": "Predicted to stop buying within the next 90 days",
    "newsletter_opt_in": "Opted in to the marketing newsletter",
    "new_customers_30d": "Signed up within the last 30 days",
    "high_value_lapsed": "Gold or platinum customers without a purchase in the last 180 days",
}

PROFILE_COLUMNS = (
    "customer_id",
    "email",
    "first_name",
    "last_name",
    "city",
    "country",
    "birthday",
    "lifetime_value",
    "loyalty_tier",
    "signup_date",
    "updated_at",
)
#: Lowest lifetime value of each loyalty tier, best tier first.
TIER_FLOORS = (("platinum", 1175.0), ("gold", 465.0), ("silver", 170.0), ("bronze", 0.0))

NEW_CUSTOMER_DAYS = 30
NEW_CUSTOMER_SHARE = 0.08
OPT_IN_SHARE = 0.55
NO_BIRTHDAY_SHARE = 0.15  # customers who never told us; normal, not dirt
_SIGNUP_SPAN_DAYS = 8 * 365
_MIN_AGE_DAYS, _AGE_SPAN_DAYS = 18 * 365, 67 * 365
_MAX_DAYS_AGO = _MIN_AGE_DAYS + _AGE_SPAN_DAYS
_LAPSED_SHARE = 0.14  # of gold and platinum customers who are not new
_CHURN_SHARE, _CHURN_SHARE_LAPSED = 0.125, 0.6
_DUPLICATE_KINDS = frozenset({"duplicate_email_case", "duplicate_email_whitespace"})

Profile = tuple  # one row in PROFILE_COLUMNS order
Membership = tuple[str, str]  # (segment, customer_id)

#: Digit-free email local parts; a counter suffix then keeps every address unique.
_PATTERNS: tuple[Callable[[str, str], str], ...] = (
    lambda f, last: f"{f}.{last}",
    lambda f, last: f"{f}.{last}",
    lambda f, last: f"{f}{last}",
    lambda f, last: f"{f[0]}{last}",
    lambda f, last: f"{f}_{last}",
    lambda f, last: f"{last}.{f}",
    lambda f, last: f,
    lambda f, last: f"{f}.{last[0]}",
)
_T = TypeVar("_T")
_LOCALE_CUMULATIVE = tuple(itertools.accumulate(locale.weight for locale in LATIN_LOCALES))


@dataclass
class Chunk:
    profiles: list[Profile] = field(default_factory=list)
    memberships: list[Membership] = field(default_factory=list)


def customer_id(number: int) -> str:
    return f"C{number:07d}"


def dirt_counts(profiles: int) -> dict[str, int]:
    """Exact number of profiles carrying each dirt kind in a warehouse of this size."""
    if profiles < MIN_PROFILES_FOR_DIRT:
        return dict.fromkeys(DIRT_RATES, 0)
    return {kind: max(1, round(rate * profiles)) for kind, rate in DIRT_RATES.items()}


def loyalty_tier(lifetime_value: float) -> str:
    for tier, floor in TIER_FLOORS:
        if lifetime_value >= floor:
            return tier
    raise ValueError(f"negative lifetime value {lifetime_value}")


def format_timestamp(moment: datetime) -> str:
    """One text form for both engines: sortable, ISO 8601, explicit UTC offset."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S+00:00")


def generate(profiles: int, seed: int, chunk_size: int = 50_000) -> Iterator[Chunk]:
    """Yield the warehouse rows in chunks, so a million profiles never sit in memory as one list."""
    generator = _Generator(profiles, seed)
    for start in range(0, profiles, chunk_size):
        chunk = Chunk()
        for index in range(start, min(start + chunk_size, profiles)):
            generator.add(index, chunk)
        yield chunk


def new_signup(rng: random.Random, number: int, now: datetime) -> tuple[Profile, bool]:
    """A clean profile that signed up `now`, and whether it opted in to the newsletter.

    The address ends in the customer number, above every counter suffix the seed gave out
    (those never exceed the seeded profile count), so it is unique.
    """
    locale = _latin_locale(rng)
    (first, first_ascii), (last, last_ascii), city = _person(rng, locale)
    email = f"{_pick(rng, _PATTERNS)(first_ascii, last_ascii)}{number}@{_pick(rng, locale.domains)}"
    today = now.date()
    profile = (
        customer_id(number),
        email,
        first,
        last,
        city,
        locale.country,
        _birthday(rng, today),
        0.0,
        "bronze",
        today.isoformat(),
        format_timestamp(now),
    )
    return profile, rng.random() < OPT_IN_SHARE


class _Generator:
    """Row-by-row state: seeded dirt positions, email uniqueness, the source of duplicates.

    `add` is the hot loop of a million-row seed, hence the local names and lookup tables.
    """

    def __init__(self, profiles: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.email_dirt = _place(self.rng, profiles, EMAIL_DIRT_RATES)
        self.name_dirt = _place(self.rng, profiles, NAME_DIRT_RATES)
        self.email_uses: dict[str, int] = {}
        self.last_clean_email = ""
        self.last_opt_in_email = ""
        self.days, self.clock = _date_table(), _clock_table()

    def add(self, index: int, chunk: Chunk) -> None:
        rng = self.rng
        rand = rng.random
        days = self.days
        name_kind = self.name_dirt.get(index)
        email_kind = self.email_dirt.get(index)
        if name_kind in SCRIPT_LOCALES:
            locale = _pick(rng, SCRIPT_LOCALES[name_kind])
        else:
            locale = LATIN_LOCALES[bisect.bisect(_LOCALE_CUMULATIVE, rand() * _LOCALE_CUMULATIVE[-1])]
        firsts, lasts, cities, domains = locale.first_names, locale.last_names, locale.cities, locale.domains
        first, first_ascii = firsts[int(rand() * len(firsts))]
        last, last_ascii = lasts[int(rand() * len(lasts))]
        city = cities[int(rand() * len(cities))]
        base = _PATTERNS[int(rand() * len(_PATTERNS))](first_ascii, last_ascii)
        domain = domains[int(rand() * len(domains))]
        email: str | None = f"{base}@{domain}"
        uses = self.email_uses[email] = self.email_uses.get(email, 0) + 1
        local = base if uses == 1 else f"{base}{uses}"
        if email_kind is not None:
            email = self._dirty_email(email_kind, local, domain)
        elif uses > 1:
            email = f"{local}@{domain}"
        if name_kind is not None:
            first, last = _dirty_name(rng, name_kind, locale, first, last)

        new = rand() < NEW_CUSTOMER_SHARE
        if new:
            days_ago = 1 + int(rand() * NEW_CUSTOMER_DAYS)
        else:
            days_ago = NEW_CUSTOMER_DAYS + 1 + int(rand() * _SIGNUP_SPAN_DAYS)
        value = _lifetime_value(rng, new)
        tier = loyalty_tier(value)
        birthday = None if rand() < NO_BIRTHDAY_SHARE else days[_MIN_AGE_DAYS + int(rand() * _AGE_SPAN_DAYS)]
        updated_at = days[days_ago - int(rand() * days_ago)] + self.clock[int(rand() * 86_400)]
        cid = customer_id(index + 1)
        chunk.profiles.append(
            (cid, email, first, last, city, locale.country, birthday, value, tier, days[days_ago], updated_at)
        )

        lapsed = not new and (tier == "gold" or tier == "platinum") and rand() < _LAPSED_SHARE
        churn = rand() < (_CHURN_SHARE_LAPSED if lapsed else 0.0 if new else _CHURN_SHARE)
        opt_in = email_kind in _DUPLICATE_KINDS or rand() < OPT_IN_SHARE
        memberships = chunk.memberships
        if tier == "platinum":
            memberships.append(("vip_customers", cid))
        if churn:
            memberships.append(("churn_risk", cid))
        if opt_in:
            memberships.append(("newsletter_opt_in", cid))
        if new:
            memberships.append(("new_customers_30d", cid))
        if lapsed:
            memberships.append(("high_value_lapsed", cid))
        if email_kind is None:
            self.last_clean_email = email
            if opt_in:
                self.last_opt_in_email = email

    def _dirty_email(self, kind: str, local: str, domain: str) -> str | None:
        rng = self.rng
        match kind:
            case "invalid_email_no_at":
                return f"{local}{domain}"
            case "invalid_email_double_at":
                return f"{local}@@{domain}"
            case "invalid_email_space":
                cut = 1 + int(rng.random() * max(1, len(local) - 1))
                return f"{local[:cut]} {local[cut:]}@{domain}"
            case "invalid_email_missing_tld":
                return f"{local}@{domain.split('.')[0]}"
            case "invalid_email_trailing_dot":
                return f"{local}@{domain}."
            case "empty_email":
                return ""
            case "null_email":
                return None
            case "plus_address_email":
                return f"{local}+{_pick(rng, PLUS_TAGS)}@{domain}"
            case "duplicate_email_case":
                return _recase(rng, self.last_opt_in_email or self.last_clean_email)
            case "duplicate_email_whitespace":
                source = self.last_opt_in_email or self.last_clean_email
                return _pick(rng, (f" {source}", f"{source} ", f"  {source} "))
        raise ValueError(f"unknown email dirt kind {kind!r}")


@functools.cache
def _date_table() -> tuple[str, ...]:
    """ISO dates by days before REFERENCE_DATE: formatting dates is slow in the hot loop."""
    reference = REFERENCE_DATE.toordinal()
    return tuple(date.fromordinal(reference - days).isoformat() for days in range(_MAX_DAYS_AGO + 1))


@functools.cache
def _clock_table() -> tuple[str, ...]:
    """' HH:MM:SS+00:00' by second of the day."""
    return tuple(f" {s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}+00:00" for s in range(86_400))


def _place(rng: random.Random, profiles: int, rates: dict[str, float]) -> dict[int, str]:
    """Map row index -> dirt kind for exactly dirt_counts() rows, sparing row 0 (the first clean source)."""
    counts = dirt_counts(profiles)
    kinds = [kind for kind in rates for _ in range(counts[kind])]
    return dict(zip(rng.sample(range(1, profiles), len(kinds)), kinds, strict=True))


def _pick(rng: random.Random, items: tuple[_T, ...]) -> _T:
    """rng.choice without its overhead, which shows at a million rows."""
    return items[int(rng.random() * len(items))]


def _latin_locale(rng: random.Random) -> Locale:
    return LATIN_LOCALES[bisect.bisect(_LOCALE_CUMULATIVE, rng.random() * _LOCALE_CUMULATIVE[-1])]


def _person(rng: random.Random, locale: Locale) -> tuple[Name, Name, str]:
    return _pick(rng, locale.first_names), _pick(rng, locale.last_names), _pick(rng, locale.cities)


def _birthday(rng: random.Random, today: date) -> str | None:
    if rng.random() < NO_BIRTHDAY_SHARE:
        return None
    return date.fromordinal(
        today.toordinal() - _MIN_AGE_DAYS - int(rng.random() * _AGE_SPAN_DAYS)
    ).isoformat()


def _lifetime_value(rng: random.Random, new: bool) -> float:
    """Log-normal spend; nearly a third of new customers have not bought anything yet."""
    if new:
        return 0.0 if rng.random() < 0.3 else round(math.exp(3.5 + 0.8 * rng.gauss(0.0, 1.0)), 2)
    return round(math.exp(5.0 + 1.1 * rng.gauss(0.0, 1.0)), 2)


def _dirty_name(
    rng: random.Random, kind: str | None, locale: Locale, first: str, last: str
) -> tuple[str | None, str | None]:
    match kind:
        case "null_first_name":
            return None, last
        case "empty_first_name":
            return "", last
        case "null_last_name":
            return first, None
        case "empty_last_name":
            return first, ""
        case "long_name":
            if rng.random() < 0.5:
                return _long_name(rng, first, locale.first_names, " "), last
            return first, _long_name(rng, last, locale.last_names, "-")
        case "emoji_name":
            emoji = _pick(rng, EMOJI)
            return (f"{first} {emoji}", last) if rng.random() < 0.7 else (first, f"{last} {emoji}")
    return first, last


def _long_name(rng: random.Random, start: str, pool: tuple[Name, ...], separator: str) -> str:
    parts = [start]
    while len(separator.join(parts)) < LONG_NAME_MIN:
        parts.append(_pick(rng, pool)[0])
    return separator.join(parts)


def _recase(rng: random.Random, email: str) -> str:
    """A differently cased spelling of a lower-case address."""
    local, _, domain = email.partition("@")
    variants = (email.upper(), f"{local.title()}@{domain}", f"{local}@{domain.title()}")
    return _pick(rng, variants)
