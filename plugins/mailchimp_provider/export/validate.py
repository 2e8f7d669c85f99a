"""Email checks and normalisation, mirroring what Mailchimp accepts, so bad rows fail here with a reason."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum

import pyarrow as pa
import pyarrow.compute as pc


class Reason(StrEnum):
    """Why a profile was rejected before upload: the codes in rejects files and reports."""

    MISSING_EMAIL = "missing_email"
    INVALID_EMAIL = "invalid_email"
    DUPLICATE_EMAIL = "duplicate_email"
    ARCHIVED_IN_AUDIENCE = "archived_in_audience"
    MISSING_REQUIRED_MERGE_FIELD = "missing_required_merge_field"


# The most of an address the warehouse is asked for (see extract.build_query). Mailchimp takes at most 254
# characters; 320 (64 + "@" + 255, RFC 3696's old maximum) leaves room for whitespace that is trimmed.
EMAIL_READ_LIMIT = 320

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = re.compile(rf"^{_ATOM}(\.{_ATOM})*$")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The common case, plain ASCII with a letters-only top-level domain, accepted by one regex. The same
# pattern runs in Python's re (row by row) and in Arrow's RE2 (whole columns): it uses only what both
# read alike.
_PLAIN_PATTERN = (
    rf"(?P<local>{_ATOM}(?:\.{_ATOM})*)"
    r"@(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
)
_PLAIN = re.compile(_PLAIN_PATTERN)
_MAX_LOCAL, _MAX_EMAIL = 64, 254


@dataclass(frozen=True)
class EmailCheck:
    email: str | None
    reason: Reason | None = None
    detail: str = ""


def normalise_email(raw: str | None) -> EmailCheck:
    """Trim, lower-case the domain, IDNA-encode it; reject what Mailchimp would refuse as malformed.

    The local part keeps its case (Mailchimp stores it as given); identity is case-insensitive through
    :func:`email_key`.
    """
    if raw is None or not raw.strip():
        return EmailCheck(None, Reason.MISSING_EMAIL, "email is empty")
    if len(raw) > EMAIL_READ_LIMIT:
        return EmailCheck(None, Reason.INVALID_EMAIL, f"email is longer than {EMAIL_READ_LIMIT} characters")
    email = raw.strip()
    plain = _PLAIN.fullmatch(email)
    if plain and len(plain["local"]) <= _MAX_LOCAL and len(email) <= _MAX_EMAIL:
        return EmailCheck(f"{plain['local']}@{plain['domain'].lower()}")
    if _CONTROL.search(email):
        return EmailCheck(None, Reason.INVALID_EMAIL, "email contains control characters")
    if email.count("@") != 1:
        return EmailCheck(None, Reason.INVALID_EMAIL, "email must contain exactly one @")
    local, domain = email.split("@")
    if not local or len(local) > 64:
        return EmailCheck(None, Reason.INVALID_EMAIL, "local part must be 1 to 64 characters")
    if not _LOCAL.match(local):
        return EmailCheck(None, Reason.INVALID_EMAIL, "local part has characters or dots Mailchimp refuses")
    domain = domain.lower()
    if domain.endswith("."):
        domain = domain[:-1]  # the fully-qualified form names the same domain
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return EmailCheck(None, Reason.INVALID_EMAIL, "domain is not a valid internationalised name")
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        return EmailCheck(None, Reason.INVALID_EMAIL, "domain is not a valid host name")
    email = f"{local}@{domain}"
    if len(email) > 254:
        return EmailCheck(None, Reason.INVALID_EMAIL, "email is longer than 254 characters")
    return EmailCheck(email)


def normalise_emails(raw: pa.Array) -> pa.Array:
    """:func:`normalise_email`'s common path over a whole column: the normalised address where the raw
    value is a plain address with nothing around it, null where the row needs :func:`normalise_email`
    (missing, padded, non-ASCII, internationalised, too long or malformed)."""
    common = pc.and_(
        pc.match_substring_regex(raw, f"^{_PLAIN_PATTERN}$"),
        pc.and_(
            pc.less_equal(pc.find_substring(raw, "@"), _MAX_LOCAL),
            pc.less_equal(pc.utf8_length(raw), _MAX_EMAIL),
        ),
    )
    # Most addresses are lower case already; the others get their domain lower-cased.
    cased = pc.fill_null(pc.and_(common, pc.not_equal(pc.ascii_lower(raw), raw)), False)
    parts = pc.extract_regex(raw.filter(cased), f"^{_PLAIN_PATTERN}$")
    recased = pc.binary_join_element_wise(
        pc.struct_field(parts, "local"), pc.ascii_lower(pc.struct_field(parts, "domain")), "@"
    )
    return pc.if_else(common, pc.replace_with_mask(raw, cased, recased), pa.scalar(None, pa.string()))


def email_key(email: str) -> str:
    """The case-insensitive identity of an address, as Mailchimp hashes it."""
    return email.strip().lower()


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: MD5 of the lower-cased address."""
    return hashlib.md5(email_key(email).encode("utf-8")).hexdigest()  # noqa: S324 - Mailchimp's scheme


def mask_email(email: str | None) -> str:
    """An address made fit for logs: first character of the local part and the domain."""
    if not email:
        return "<empty>"
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if domain else f"{email[:1]}***"
