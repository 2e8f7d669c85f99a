"""Mailchimp's member rules as pure functions (no server)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mailchimp_emulator.model import MergeField
from mailchimp_emulator.rules import (
    MergeSchema,
    StatusRejected,
    plausible_email_key,
    resolve_status,
    subscriber_hash,
    truncate_utf8,
)


def test_subscriber_hash_is_md5_of_trimmed_lowercase() -> None:
    assert subscriber_hash("  Jane.Doe@Acme-Mail.NET ") == hashlib.md5(b"jane.doe@acme-mail.net").hexdigest()


@given(st.text(max_size=400))
def test_truncation_is_utf8_safe_and_bounded(text: str) -> None:
    cut = truncate_utf8(text)
    assert len(cut.encode("utf-8")) <= 255
    assert text.startswith(cut)
    if len(text.encode("utf-8")) <= 255:
        assert cut == text


def test_truncation_never_splits_a_character() -> None:
    assert truncate_utf8("é" * 200) == "é" * 127  # 254 bytes; a 128th would need 256


@pytest.mark.parametrize(
    "email",
    [
        "jane.doe@acme-mail.net",
        "a+tag@sub.domain.co.uk",
        "o'brien@irish-mail.ie",
        "X_Y-Z@Mixed.Case.Org",
    ],
)
def test_plausible_addresses(email: str) -> None:
    assert plausible_email_key(email) == email.lower()


@pytest.mark.parametrize(
    "email",
    [
        "plainaddress",
        "@no-local.net",
        "two@@at.net",
        "no-dot@localhost",
        "dot.@end.net",
        ".dot@start.net",
        "double..dot@x-mail.net",
        "space in@x-mail.net",
        "jane@example.com",
        "jane@mail.example.org",
        "jane@test.com",
        "jane@shop.test",
        "jane@corp.invalid",
        "test@gmail.com",
        "fake+1@gmail.com",
        "asdf@yahoo.com",
        "jane@-bad-.net",
        "jane@x-mail.n3t",
        "é@accent.net",
        "a" * 65 + "@x-mail.net",
    ],
)
def test_fake_or_invalid_addresses(email: str) -> None:
    assert plausible_email_key(email) is None


class TestStatus:
    def test_new_member_takes_status_then_status_if_new(self) -> None:
        assert resolve_status(None, None, "pending", "subscribed") == "pending"
        assert resolve_status(None, None, None, "subscribed") == "subscribed"
        with pytest.raises(StatusRejected, match="missing"):
            resolve_status(None, None, None, None)

    def test_status_if_new_never_changes_an_existing_member(self) -> None:
        assert resolve_status("unsubscribed", None, None, "subscribed") == "unsubscribed"
        assert resolve_status("subscribed", None, None, "unsubscribed") == "subscribed"

    def test_status_overwrites(self) -> None:
        assert resolve_status("subscribed", None, "unsubscribed", None) == "unsubscribed"
        assert resolve_status("pending", None, "subscribed", None) == "subscribed"

    @pytest.mark.parametrize("current", ["unsubscribed", "cleaned"])
    @pytest.mark.parametrize("wanted", ["subscribed", "pending"])
    def test_compliance_state_cannot_be_resubscribed(self, current: str, wanted: str) -> None:
        with pytest.raises(StatusRejected, match="compliance"):
            resolve_status(current, None, wanted, None)

    def test_archived_member_is_restored_only_by_status(self) -> None:
        assert resolve_status("archived", "subscribed", None, "pending") == "archived"
        assert resolve_status("archived", "subscribed", "subscribed", None) == "subscribed"
        assert resolve_status("archived", "subscribed", None, None) == "archived"

    def test_archived_unsubscribed_member_keeps_its_compliance(self) -> None:
        assert resolve_status("archived", "unsubscribed", None, "subscribed") == "archived"
        assert resolve_status("archived", "unsubscribed", "unsubscribed", None) == "unsubscribed"
        with pytest.raises(StatusRejected):
            resolve_status("archived", "cleaned", "subscribed", None)


def _field(tag: str, kind: str, **kw: object) -> MergeField:
    return MergeField(
        1,
        tag,
        tag.title(),
        kind,
        bool(kw.pop("required", False)),
        str(kw.pop("default", "")),
        True,
        1,
        "",
        dict(kw),
    )  # type: ignore[arg-type]


SCHEMA = MergeSchema(
    [
        _field("FNAME", "text", required=True),
        _field("SCORE", "number"),
        _field("ADDRESS", "address"),
        _field("PHONE", "phone"),
        _field("USPHONE", "phone", phone_format="US"),
        _field("SINCE", "date", date_format="DD/MM/YYYY"),
        _field("BDAY", "birthday", date_format="MM/DD"),
        _field("SITE", "url"),
        _field("TIER", "dropdown", choices=["Bronze", "Gold"]),
        _field("ZIPCODE", "zip"),
        _field("SRC", "text", default="warehouse"),
    ]
)


def _clean(values: dict[str, object], creating: bool = False, skip: bool = False) -> tuple[dict, list]:
    return SCHEMA.clean(values, creating=creating, skip_required=skip)


@pytest.mark.parametrize(
    ("tag", "value", "expected"),
    [
        ("SCORE", "12", 12),
        ("SCORE", "-1.5", -1.5),
        ("SCORE", 3, 3),
        ("SCORE", "1e3", 1000.0),
        (
            "ADDRESS",
            {"addr1": "1 Main St", "city": "Atlanta", "state": "GA", "zip": "30308"},
            {
                "addr1": "1 Main St",
                "addr2": "",
                "city": "Atlanta",
                "state": "GA",
                "zip": "30308",
                "country": "US",
            },
        ),
        ("PHONE", "+49 30 1234-567", "+49 30 1234-567"),
        ("USPHONE", "(404) 555 0100", "404-555-0100"),
        ("SINCE", "2024-02-29", "2024-02-29"),
        ("SINCE", "31/12/2023", "2023-12-31"),
        ("BDAY", "2/29", "02/29"),
        ("SITE", "https://shop.acme.dev/x?y=1", "https://shop.acme.dev/x?y=1"),
        ("TIER", "Gold", "Gold"),
        ("ZIPCODE", "30308-1234", "30308-1234"),
        ("FNAME", "  Jane ", "Jane"),
    ],
)
def test_valid_merge_values_are_normalised(tag: str, value: object, expected: object) -> None:
    assert _clean({tag: value}) == ({tag: expected}, [])


@pytest.mark.parametrize(
    ("tag", "value"),
    [
        ("SCORE", "twelve"),
        ("SCORE", True),
        ("SCORE", "nan"),
        ("ADDRESS", "1 Main St"),
        ("ADDRESS", {"addr1": "1 Main St", "city": "Atlanta"}),
        ("PHONE", "call me"),
        ("USPHONE", "555-0100"),
        ("SINCE", "12/31/2023"),
        ("SINCE", "2023-02-30"),
        ("BDAY", "13/01"),
        ("BDAY", "02/30"),
        ("SITE", "shop.acme.dev"),
        ("SITE", "ftp://x.dev"),
        ("TIER", "Silver"),
        ("ZIPCODE", "3030"),
        ("FNAME", ["list"]),
        ("NOPE", "x"),
    ],
)
def test_invalid_merge_values_are_reported_per_field(tag: str, value: object) -> None:
    cleaned, errors = _clean({tag: value})
    assert [e["field"] for e in errors] == [tag]
    assert tag not in cleaned


def test_text_is_cut_at_255_bytes() -> None:
    cleaned, errors = _clean({"FNAME": "ü" * 300})
    assert not errors and cleaned["FNAME"] == "ü" * 127


def test_required_fields_on_create_unless_skipped() -> None:
    assert _clean({}, creating=True)[1] == [{"field": "FNAME", "message": "Please enter a value"}]
    assert _clean({}, creating=True, skip=True)[1] == []
    assert _clean({}, creating=False)[1] == []  # updates need not repeat required fields
    assert _clean({"FNAME": ""}, creating=False)[1][0]["field"] == "FNAME"  # but may not clear them


def test_default_value_fills_a_missing_field_on_create() -> None:
    assert _clean({"FNAME": "Jane"}, creating=True)[0]["SRC"] == "warehouse"
    assert "SRC" not in _clean({"FNAME": "Jane"}, creating=False)[0]
