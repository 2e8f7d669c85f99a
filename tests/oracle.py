"""An independent model of an export, used as the oracle of the property tests: from warehouse rows,
which profiles become members (with which address, merge-field values, tags) and which are rejected
with which reason, and which members Mailchimp itself refuses.

It is written from the rules in README.md and Mailchimp's, not from the code under test, and it only
knows the inputs its strategies make: every generated email and number carries what it should become
(by construction), so the model needs no email parser or number grammar of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import strategies as st
from mailchimp_emulator.rules import FAKE_LOCAL_PARTS

SEGMENTS = ("s1", "s2")
REFUSED_LOCAL_PARTS = FAKE_LOCAL_PARTS  # Mailchimp calls such addresses fake (the local server's rule)


@dataclass(frozen=True)
class Email:
    raw: str | None
    address: str | None  # what the member's email_address must be; None when rejected
    reason: str | None = None  # missing_email or invalid_email


@dataclass(frozen=True)
class Number:
    raw: str | None
    value: int | float | None  # None: the value is left out


_LOCAL_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
_atom = st.text(alphabet=_LOCAL_CHARS, min_size=1, max_size=6)
_locals = st.one_of(
    st.lists(_atom, min_size=1, max_size=3).map(".".join),
    st.builds("{}+{}".format, _atom, _atom),
    st.sampled_from(["test", "fake", "Test+promo"]),
)
_domains = st.sampled_from(["gmail.com", "GMAIL.com", "Web.De", "outlook.com", "posteo.de"])


@st.composite
def _valid_emails(draw) -> Email:
    local, domain = draw(_locals), draw(_domains)
    pad_left, pad_right = draw(st.sampled_from(["", " ", "  "])), draw(st.sampled_from(["", " "]))
    raw = f"{pad_left}{local}@{domain}{pad_right}"
    return Email(raw, normalised(raw))


def normalised(valid: str) -> str:
    """A valid address as Mailchimp gets it: trimmed, the domain lower-cased, the local part as written."""
    local, _, domain = valid.strip().rpartition("@")
    return f"{local}@{domain.lower()}"


emails = st.one_of(
    _valid_emails(),
    _valid_emails(),
    st.sampled_from([None, "", "   "]).map(lambda raw: Email(raw, None, "missing_email")),
    st.sampled_from(
        [
            "no-at-sign",
            "two@@gmail.com",
            "a@b",
            "a b@gmail.com",
            "a..b@gmail.com",
            ".a@gmail.com",
            "a.@gmail.com",
            "a@-x.com",
            "a@x..com",
            "e\x00f@gmail.com",
            "x" * 65 + "@gmail.com",
            "@gmail.com",
            "a@",
        ]
    ).map(lambda raw: Email(raw, None, "invalid_email")),
)

numbers = st.one_of(
    st.integers(min_value=-(10**9), max_value=10**9).map(lambda i: Number(str(i), i)),
    st.sampled_from(
        [
            Number(" 12 ", 12),
            Number("3.5", 3.5),
            Number("-0.25", -0.25),
            Number("1e3", 1000),
            Number("+7", 7),
            Number("2.50", 2.5),
            Number(None, None),
            Number("", None),
            Number("   ", None),
            Number("abc", None),
            Number("1e400", None),
            Number("0x10", None),
            Number("nan", None),
            Number("inf", None),
            Number("1,5", None),
            Number("1_000", None),
        ]
    ),
)

names = st.one_of(
    st.none(),
    st.text(max_size=80),
    st.text(min_size=200, max_size=400),
    st.sampled_from(
        [
            "Zoë",
            "Ανδρέας",
            "李",
            "محمد",
            "😀" * 70,
            "a\x85b\u2028c",
            "\x85\u2028 edge \u2028\x85",
            "\u202eevil",
            " x\x00y\t",
            "é" * 1_000,  # 2 KB: cut at 255 bytes
            "é" * 5_000,  # 10 KB: longer than the warehouse is asked for, left out
            "\x00\x85\u2028" * 3_400,  # 10 KB of control and line-separator characters
        ]
    ),
)


def expected_text(raw: str | None) -> str | None:
    """Text fields: C0 control characters and DEL removed (tab and line feed kept), surrounding whitespace
    trimmed, cut at 255 UTF-8 bytes without splitting a character; empty means left out. A value of more
    than 1,024 characters is left out too: the warehouse is asked for 1,025 at most, so it may be cut."""
    if raw is None or len(raw) > 1_024:
        return None
    kept = "".join(ch for ch in raw if ch in "\t\n" or not (ord(ch) < 0x20 or ord(ch) == 0x7F)).strip()
    cut = kept.encode("utf-8")[:255].decode("utf-8", errors="ignore")
    return cut or None


@dataclass(frozen=True)
class Profile:
    id: str
    email: Email
    segments: tuple[str, ...]  # may include segments the export does not read
    first: str | None
    ltv: Number

    def rows(self) -> list[tuple]:
        """Warehouse rows: (id, segment, email, first, ltv), one per segment."""
        return [(self.id, s, self.email.raw, self.first, self.ltv.raw) for s in self.segments]


profiles = st.lists(
    st.builds(
        lambda email, segments, first, ltv: (email, tuple(segments), first, ltv),
        emails,
        st.lists(st.sampled_from([*SEGMENTS, "other"]), min_size=1, max_size=3, unique=True),
        names,
        numbers,
    ),
    min_size=1,
    max_size=40,
).map(lambda drawn: [Profile(f"P{i:03d}", *values) for i, values in enumerate(drawn)])


def with_shared_addresses(draw, found: list[Profile]) -> list[Profile]:
    """Give some profiles another profile's address (in another case), to exercise duplicates."""
    result = list(found)
    for i in range(len(result)):
        if i and draw(st.integers(0, 4)) == 0:
            donor = result[draw(st.integers(0, i - 1))].email
            raw = donor.raw.upper() if donor.raw and draw(st.booleans()) else donor.raw
            address = normalised(raw) if donor.address else None
            result[i] = Profile(result[i].id, Email(raw, address, donor.reason), *_rest(result[i]))
    return result


def _rest(profile: Profile) -> tuple:
    return profile.segments, profile.first, profile.ltv


@st.composite
def warehouses(draw) -> list[Profile]:
    return with_shared_addresses(draw, draw(profiles))


@dataclass
class Expectation:
    members: dict[str, dict] = field(default_factory=dict)  # address lower-cased -> member
    rejected: dict[str, str] = field(default_factory=dict)  # profile id -> reason
    refused: set[str] = field(default_factory=set)  # addresses (lower-cased) Mailchimp refuses

    @property
    def accepted_profiles(self) -> set[str]:
        return {m["profile_id"] for m in self.members.values()}

    def reason_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for reason in self.rejected.values():
            counts[reason] = counts.get(reason, 0) + 1
        return counts


def expect(found: list[Profile]) -> Expectation:
    """What the export must make of these profiles.

    Only profiles in an exported segment are read. Profiles sharing an address (case-insensitive) are
    one member: the warehouse order (address as written, trimmed and lower-cased, then profile id)
    decides which profile it is; the others are ``duplicate_email``. Its tags are the exported segments
    of every row with that address as written. A member's merge fields are its profile's values that fit.
    """
    read = [p for p in found if set(p.segments) & set(SEGMENTS)]
    result = Expectation()
    order = sorted(read, key=lambda p: ((p.email.raw or "").strip().lower(), p.id))
    for profile in order:
        if profile.email.address is None:
            result.rejected[profile.id] = profile.email.reason or "invalid_email"
            continue
        key = profile.email.address.lower()
        if key in result.members:
            winner = result.members[key]
            result.rejected[profile.id] = "duplicate_email"
            if (profile.email.raw or "").strip().lower() == winner["written"]:
                winner["tags"] |= set(profile.segments) & set(SEGMENTS)
            continue
        merge_fields: dict = {}
        if (first := expected_text(profile.first)) is not None:
            merge_fields["FNAME"] = first
        if profile.ltv.value is not None:
            merge_fields["LTV"] = profile.ltv.value
        result.members[key] = {
            "profile_id": profile.id,
            "email_address": profile.email.address,
            "written": (profile.email.raw or "").strip().lower(),
            "merge_fields": merge_fields,
            "tags": set(profile.segments) & set(SEGMENTS),
        }
        if key.partition("@")[0].partition("+")[0] in REFUSED_LOCAL_PARTS:
            result.refused.add(key)
    return result
