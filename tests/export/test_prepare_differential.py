"""The vectorised Preparer writes exactly what the row-by-row rules write: same member and reject parts
(same part numbers, same rows in the same order, byte for byte) and the same counts, on dirty data."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence

import pyarrow as pa
from demo_warehouse.generate import PROFILE_COLUMNS, generate
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mailchimp_provider.export.extract import rows_to_table
from mailchimp_provider.export.mapping import Audience, MergeField, map_columns, map_values, plan_fields
from mailchimp_provider.export.prepare import Preparer, PrepareSettings
from mailchimp_provider.export.validate import (
    EmailCheck,
    normalise_email,
    normalise_emails,
    subscriber_hash,
)
from prepare_reference import ReferencePreparer

NAMES = ["id", "email", "segment", "first", "ltv", "bday", "since", "tier", "site", "address"]
TAGS = {
    "FNAME": "first",
    "LTV": "ltv",
    "BDAY": "bday",
    "SINCE": "since",
    "TIER": "tier",
    "SITE": "site",
    "ADDRESS": "address",
}

ODD_EMAILS = [
    "anna@gmail.com",
    "ANNA@GMAIL.COM",
    "Anna.Smith@Gmail.com",
    " anna@gmail.com",
    "anna@gmail.com\n",
    "\tanna@web.de",
    "\u00a0anna@web.de",
    "anna@web.de\u2003",
    "anna@gmail.com.",
    "d@müller.de",
    "d@xn--mller-kva.de",
    "D@MÜLLER.DE",
    "jürgen@web.de",
    "İx@web.de",
    "x" * 64 + "@web.de",
    "x" * 65 + "@web.de",
    "a@" + "b" * 63 + ".de",
    "a@" + "b" * 64 + ".de",
    "a" * 60 + "@" + ".".join(["c" * 60] * 3) + ".de",
    "a" * 64 + "@" + ".".join(["c" * 61] * 3) + ".de",
    "bad@",
    "@bad.de",
    "a@@b.de",
    "a b@c.de",
    '"q"@x.de',
    "a@127.0.0.1",
    "a@-x.de",
    "e\x00@gmail.com",
    "a..b@c.de",
    ".a@b.de",
    "o'brien+x@web.de",
    "a@b.c",
    "a@b.co1",
    "",
    "   ",
    None,
]
ODD_TEXT = [
    "  Anna  ",
    "Zoë",
    '"quoted"',
    "back\\slash",
    "a\x00b",
    "tab\tin",
    "x" * 63,
    " " + "x" * 62 + " ",
    "x" * 64,
    "é" * 63,
    "😀" * 63,
    "😀" * 64,
    "\u00ad",
    "\u00a0Anna",
    "Anna\u2028",
    "   ",
    "",
    "日本語",
    "\U00020000",
    "Αθήνα",
    "\x7f",
]
ODD_NUMBERS = [
    "12",
    "007",
    "+5",
    "-0",
    "-0.0",
    "0.000",
    "1.50",
    "123456789012.125",
    "999999999999.999",
    "1234567890123",
    "0.001",
    "0.0001",
    "1e3",
    "12.",
    ".5",
    " 12 ",
    "١٢",
    "nan",
    "inf",
    "1e400",
    "-00.50",
    "abc",
    "",
    "9007199254740993",
]
ODD_OTHER = [
    "1990-02-03",
    "0999-01-01",
    "2024-02-29",
    "2023-02-29",
    "1900-02-29",
    "2000-02-29",
    "2024-13-40",
    "03/02",
    " 1990-02-03T10:00 ",
    "gold",
    " GOLD ",
    "Platinum",
    "https://shop.test/a",
    "javascript:x",
    '{"addr1": "1 Main", "city": "Oslo", "state": "-", "zip": "0150"}',
    '{"addr1": ""}',
    "[1]",
]

plain_emails = st.builds(
    lambda local, domain: f"{local}@{domain}",
    st.from_regex(r"[A-Za-z0-9+_-]{1,6}(\.[a-z0-9]{1,3})?", fullmatch=True),
    st.sampled_from(["gmail.com", "Web.DE", "xn--mller-kva.de", "a.b.co"]),
)
emails = st.one_of(
    plain_emails,
    plain_emails,
    st.sampled_from(ODD_EMAILS),
    st.builds(
        lambda local, domain: f"{local}@{domain}",
        st.text(alphabet="abcXYZ09.+-_'\"ü ", min_size=1, max_size=8),
        st.sampled_from(["gmail.com", "Web.DE", "xn--mller-kva.de", "x", "müller.de"]),
    ),
    st.text(max_size=12),
)
texts = st.one_of(
    st.none(),
    st.sampled_from(["Anna", "Zoë", " Bo B ", "日本", 'a"b\\c']),
    st.sampled_from(ODD_TEXT),
    st.text(max_size=70),
)
numbers = st.one_of(
    st.none(),
    st.from_regex(r"[+-]?[0-9]{1,4}(\.[0-9]{0,3})?", fullmatch=True),
    st.sampled_from(ODD_NUMBERS),
    st.from_regex(r"[+-]?[0-9]{1,13}(\.[0-9]{0,4})?", fullmatch=True),
    st.text(alphabet="0123456789.-+e ", max_size=8),
)


def values(common: st.SearchStrategy[str]) -> st.SearchStrategy[str | None]:
    """Mostly values a field's common path takes, so that whole rows take it, some odd ones."""
    return st.one_of(common, common, common, st.none(), st.sampled_from(ODD_OTHER), st.text(max_size=10))


dates = st.one_of(
    st.dates().map(lambda d: f"{d.year:04d}-{d.month:02d}-{d.day:02d}"),
    st.builds(
        lambda y, m, d: f"{y:04d}-{m:02d}-{d:02d}",
        st.sampled_from([1, 999, 1000, 1900, 2000, 2023, 2024, 9999]),
        st.integers(0, 13),
        st.integers(0, 32),
    ),
)
rows = st.lists(
    st.tuples(
        st.sampled_from([f"P{i}" for i in range(30)] + [None]),
        emails,
        st.sampled_from(["s1", "s2", "s3", "", None]),
        texts,
        numbers,
        values(dates),
        values(st.builds(lambda d, tail: d + tail, dates, st.sampled_from(["", "T10:00", " ", "x"]))),
        values(st.sampled_from(["Gold", "gold", "SILVER", " gold\t", "k", "Bronze"])),
        values(st.sampled_from(["https://shop.test/a?b=1", "HTTP://X.DE", 'https://q"\\', "https://.x"])),
        st.one_of(st.none(), st.none(), st.none(), st.sampled_from(ODD_OTHER)),
    ),
    max_size=80,
)


def audience(required: bool) -> Audience:
    return Audience(
        "a",
        "A",
        False,
        (
            MergeField("FNAME", "text", required=required),
            MergeField("LTV", "number", required=required),
            MergeField("BDAY", "birthday"),
            MergeField("SINCE", "date"),
            MergeField("TIER", "dropdown", choices=("Gold", "Silver", "\u212a")),
            MergeField("SITE", "url"),
            MergeField("ADDRESS", "address"),
        ),
    )


def source_order(batch: list[tuple]) -> list[tuple]:
    """As the warehouse query orders them: by trimmed lower-cased email, then id; one email per profile."""
    first_email: dict[str | None, str | None] = {}
    batch = [(pid, first_email.setdefault(pid, email), *rest) for pid, email, *rest in batch]
    return sorted(batch, key=lambda r: ((r[1] or "").strip(" ").lower(), r[0] or ""))


def both(prepare_settings: PrepareSettings, parts: Sequence[pa.Table]) -> None:
    """Run the vectorised and the reference Preparer on the same parts and compare everything."""
    outputs = []
    for preparer in (Preparer, ReferencePreparer):
        members: dict[int, pa.Table] = {}
        rejects: dict[int, pa.Table] = {}
        result = preparer(prepare_settings, members.__setitem__, rejects.__setitem__).run(parts)
        outputs.append((result, members, rejects))
    (result, members, rejects), (expected, expected_members, expected_rejects) = outputs
    assert result == expected
    for got, want in ((members, expected_members), (rejects, expected_rejects)):
        assert sorted(got) == sorted(want)  # the same part numbers
        for index, table in want.items():
            assert got[index].to_pylist() == table.to_pylist(), index
            assert got[index].equals(table), index  # types and schema too


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows,
    st.integers(min_value=1, max_value=9),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.sampled_from([{}, {"s1": "Z1"}, {"s1": "s3", "s3": "s1"}, {"s2": "s1"}]),
    st.randoms(use_true_random=False),
)
def test_vectorised_preparation_matches_the_row_by_row_rules(
    batch, chunk_rows, ordered, required, tag_segments, segment_tags, rnd
) -> None:
    batch = source_order(batch) if ordered else batch  # any order: the rules do not rely on it
    parts = [rows_to_table(batch[i : i + chunk_rows], NAMES) for i in range(0, len(batch), chunk_rows)]
    addresses = [r[1] for r in batch if r[1]]
    archived = frozenset(subscriber_hash(e) for e in rnd.sample(addresses, min(3, len(addresses))))
    both(
        PrepareSettings(
            "id",
            "email",
            "segment",
            plan_fields(audience(required), TAGS),
            rnd.choice(["subscribed", "pending"]),
            tag_segments,
            archived,
            segment_tags,
        ),
        parts,
    )


def test_vectorised_preparation_matches_on_the_demo_warehouse_data() -> None:
    """Thousands of generated profiles with the demo's dirt at its rates, one row per segment."""
    rows: list[tuple] = []
    at = {name: i for i, name in enumerate(PROFILE_COLUMNS)}
    for chunk in generate(20_000, seed=7):
        segments: dict[str, list[str]] = {}
        for segment, customer in chunk.memberships:
            segments.setdefault(customer, []).append(segment)
        for profile in chunk.profiles:
            for segment in segments.get(profile[at["customer_id"]], [None]):
                rows.append(
                    tuple(
                        None if v is None else str(v)
                        for v in (
                            profile[at["customer_id"]],
                            profile[at["email"]],
                            segment,
                            profile[at["first_name"]],
                            profile[at["lifetime_value"]],
                            profile[at["birthday"]],
                            profile[at["signup_date"]],
                            profile[at["loyalty_tier"]],
                            profile[at["city"]],
                            profile[at["last_name"]],
                        )
                    )
                )
    rows = source_order(rows)
    names = ["id", "email", "segment", "first", "ltv", "bday", "since", "tier", "city", "last"]
    parts = [rows_to_table(rows[i : i + 5_000], names) for i in range(0, len(rows), 5_000)]
    tags = {"FNAME": "first", "LNAME": "last", "LTV": "ltv", "CITY": "city", "BDAY": "bday", "SINCE": "since"}
    fields = (
        MergeField("FNAME", "text"),
        MergeField("LNAME", "text"),
        MergeField("CITY", "text"),
        MergeField("LTV", "number", required=True),
        MergeField("BDAY", "birthday"),
        MergeField("SINCE", "date"),
    )
    rnd = random.Random(7)
    archived = frozenset(subscriber_hash(r[1]) for r in rnd.sample(rows, 50) if r[1])
    both(
        PrepareSettings(
            "id",
            "email",
            "segment",
            plan_fields(Audience("a", "A", True, fields), tags),
            "pending",
            True,
            archived,
            {"vip_customers": "VIP"},
        ),
        parts,
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(plain_emails, emails), max_size=40))
def test_the_email_check_common_path_agrees_with_the_row_check(raw) -> None:
    for value, email in zip(raw, normalise_emails(pa.array(raw, pa.string())).to_pylist(), strict=True):
        if email is not None:
            assert normalise_email(value) == EmailCheck(email), value


FIELD_VALUES = {
    "text": texts,
    "number": numbers,
    "date": st.one_of(dates, st.sampled_from(ODD_OTHER)),
    "birthday": st.one_of(dates, st.sampled_from(ODD_OTHER)),
    "dropdown": st.one_of(st.sampled_from(["Gold", "gold", "SILVER", " gold\t", "k", "", " "]), texts),
    "url": st.one_of(st.sampled_from(["https://shop.test/a?b=1", "HTTP://X.DE", 'https://q"\\']), texts),
}


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted(FIELD_VALUES)).flatmap(
        lambda kind: st.tuples(st.just(kind), st.lists(st.one_of(st.none(), FIELD_VALUES[kind]), max_size=30))
    ),
    st.booleans(),
)
@example(("number", ["-0", "-0.0", "+0", "007.50", "12.000"]), False)
@example(("dropdown", ["", " ", "k", "K", "GOLD "]), True)
@example(("date", ["2023-02-29", "2024-02-29", "1900-02-29", "2000-02-29", "2024-04-31"]), False)
@example(("text", ["x" * 63, "😀" * 63, "😀" * 64, " a ", "\u00a0a"]), False)
def test_each_common_path_writes_what_map_values_gives(case, required) -> None:
    kind, raw = case
    field = MergeField("F", kind, required=required, choices=("Gold", "Silver", "\u212a", ""))
    plans = plan_fields(Audience("a", "A", False, (field,)), {"F": "c"})
    merge_fields, required_empty = map_columns(plans, pa.table({"c": pa.array(raw, pa.string())}))
    for value, written, empty in zip(raw, merge_fields.to_pylist(), required_empty.to_pylist(), strict=True):
        if written is None:
            continue  # left to map_values
        dropped: dict[str, int] = {}
        expected = map_values(plans, {"c": value}, dropped)
        assert dropped == {}, value
        assert empty == (expected is None), value
        if expected is not None:
            assert written == json.dumps(expected, ensure_ascii=False, separators=(",", ":")), value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows, st.integers(min_value=1, max_value=9), st.integers(min_value=2, max_value=4))
def test_partitions_prepared_apart_add_up_to_the_whole(batch, chunk_rows, partitions) -> None:
    batch = source_order(batch)
    parts = [rows_to_table(batch[i : i + chunk_rows], NAMES) for i in range(0, len(batch), chunk_rows)]
    fields = plan_fields(audience(False), TAGS)

    def prepare(partition: int, count: int) -> tuple[object, list[dict], list[dict]]:
        members: list[pa.Table] = []
        rejects: list[pa.Table] = []
        settings_ = PrepareSettings(
            "id", "email", "segment", fields, "subscribed", True, partition=partition, partitions=count
        )
        result = Preparer(settings_, lambda i, t: members.append(t), lambda i, t: rejects.append(t)).run(
            parts
        )
        return (
            result,
            [r for t in members for r in t.to_pylist()],
            [r for t in rejects for r in t.to_pylist()],
        )

    whole, members, rejects = prepare(0, 1)
    split = [prepare(k, partitions) for k in range(partitions)]
    key = json.dumps
    assert sorted(map(key, (m for _, ms, _ in split for m in ms))) == sorted(map(key, members))
    assert sorted(map(key, (r for _, _, rs in split for r in rs))) == sorted(map(key, rejects))
    assert sum(r.profiles_read for r, _, _ in split) == whole.profiles_read
    assert sum(r.accepted for r, _, _ in split) == whole.accepted
    hashes = [{m["subscriber_hash"] for m in ms} for _, ms, _ in split]
    assert sum(map(len, hashes)) == len(set().union(*hashes))  # no address in two partitions


def test_an_export_without_merge_fields() -> None:
    rows = [("P1", "a@b.de", "s1"), ("P2", "bad", "s1"), ("P3", "c@d.de", None)]
    both(
        PrepareSettings("id", "email", "segment", [], "subscribed", True),
        [rows_to_table(rows, ["id", "email", "segment"])],
    )
