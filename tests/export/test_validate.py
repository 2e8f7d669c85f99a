from __future__ import annotations

import pytest
from mailchimp_provider.export.validate import Reason, email_key, mask_email, normalise_email, subscriber_hash


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("anna@gmail.com", "anna@gmail.com"),
        ("  Anna.Smith@Gmail.COM \t", "Anna.Smith@gmail.com"),
        ("anna+news@outlook.com", "anna+news@outlook.com"),
        ("o'brien@web.de", "o'brien@web.de"),
        ("anna@gmail.com.", "anna@gmail.com"),
        ("jürgen@müller.de", None),  # non-ASCII local part: Mailchimp refuses it
        ("juergen@müller.de", "juergen@xn--mller-kva.de"),
    ],
)
def test_accepts_and_normalises(raw: str, expected: str | None) -> None:
    check = normalise_email(raw)
    assert check.email == expected
    assert (check.reason is None) == (expected is not None)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, Reason.MISSING_EMAIL),
        ("", Reason.MISSING_EMAIL),
        ("   ", Reason.MISSING_EMAIL),
        ("anna.gmail.com", Reason.INVALID_EMAIL),
        ("anna@@gmail.com", Reason.INVALID_EMAIL),
        ("an na@gmail.com", Reason.INVALID_EMAIL),
        ("anna@gmail", Reason.INVALID_EMAIL),
        ("anna@gmail..com", Reason.INVALID_EMAIL),
        (".anna@gmail.com", Reason.INVALID_EMAIL),
        ("anna.@gmail.com", Reason.INVALID_EMAIL),
        ('"john doe"@gmail.com', Reason.INVALID_EMAIL),
        ("anna\x00@gmail.com", Reason.INVALID_EMAIL),
        ("anna@gmail.com\n", None),  # trailing whitespace is trimmed, not an error
        ("x" * 300 + "@gmail.com", Reason.INVALID_EMAIL),
        ("anna@-gmail.com", Reason.INVALID_EMAIL),
        ("anna@127.0.0.1", Reason.INVALID_EMAIL),
    ],
)
def test_rejects_with_reason(raw: str | None, reason: Reason | None) -> None:
    check = normalise_email(raw)
    assert check.reason == reason
    if reason:
        assert check.email is None and check.detail


def test_identity_is_case_insensitive_and_matches_mailchimp_hash() -> None:
    assert email_key(" Anna@Gmail.com ") == "anna@gmail.com"
    # Mailchimp's documented example: md5 of the lower-cased address
    assert subscriber_hash("Urist.McVankab@freddiesjokes.com") == "62eeb292278cc15f5817cb78f7790b08"


def test_mask_email_hides_the_local_part() -> None:
    assert mask_email("anna.smith@gmail.com") == "a***@gmail.com"
    assert mask_email(None) == "<empty>"
    assert "anna" not in mask_email("anna")
