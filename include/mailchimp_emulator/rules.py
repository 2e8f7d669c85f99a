"""Mailchimp's data rules for members: identity, address plausibility, merge values, status changes.

Pure functions and small classes, fast enough to run a million times inside a batch import.

Email rule set (an address is rejected with "... looks fake or invalid, please enter a real email
address." when any rule fails):
  1. syntax: one "@", a local part of 1-64 characters from letters, digits and ``!#$%&'*+/=?^_`{|}~.-``
     with no leading, trailing or doubled dot; at most 254 characters overall; ASCII only;
  2. the domain has at least one dot, labels of letters, digits and inner hyphens, and an alphabetic TLD
     of 2+ letters;
  3. the domain (or a parent domain) is not a reserved/placeholder one (`FAKE_DOMAINS`) and the TLD is not
     reserved (`RESERVED_TLDS`);
  4. the local part, lower-cased and without any `+suffix`, is not a placeholder (`FAKE_LOCAL_PARTS`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from .model import MergeField

STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")
LISTED_STATUSES = (*STATUSES, "archived")
_COMPLIANCE_LOCKED = frozenset({"unsubscribed", "cleaned"})
_OPT_IN = frozenset({"subscribed", "pending"})

FAKE_DOMAINS = frozenset(
    {
        "example.com",
        "example.net",
        "example.org",
        "test.com",
        "test.net",
        "test.org",
        "fake.com",
        "invalid.com",
        "nowhere.com",
        "noemail.com",
        "mailinator.invalid",
    }
)
RESERVED_TLDS = frozenset({"test", "example", "invalid", "localhost", "local"})
FAKE_LOCAL_PARTS = frozenset(
    {
        "test",
        "fake",
        "asdf",
        "qwerty",
        "noemail",
        "nomail",
        "none",
        "null",
        "nobody",
        "example",
    }
)
_FAKE_SUFFIXES = tuple(f".{d}" for d in sorted(FAKE_DOMAINS | RESERVED_TLDS))

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_EMAIL_RE = re.compile(
    rf"^{_ATOM}(?:\.{_ATOM})*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?\.)+[A-Za-z]{{2,63}}$"
)
TEXT_MAX_BYTES = 255
_TEXT_FAST_CHARS = TEXT_MAX_BYTES // 4  # any str this short is under 255 bytes in UTF-8


def subscriber_hash(email: str) -> str:
    """MD5 of the lower-cased, trimmed address: Mailchimp's member id."""
    return hashlib.md5(email.strip().lower().encode("utf-8")).hexdigest()


def fake_email_detail(email: str) -> str:
    return f"{email} looks fake or invalid, please enter a real email address."


def plausible_email_key(email: str, allow_placeholder_domains: bool = False) -> str | None:
    """The lower-cased address when it passes the module's email rule set (trimmed input), else None.

    `allow_placeholder_domains` skips rule 3 (for test data at example.org, shop.test, ...)."""
    if len(email) > 254 or not _EMAIL_RE.match(email):
        return None
    lowered = email.lower()
    local, _, domain = lowered.rpartition("@")
    if len(local) > 64:
        return None
    if not allow_placeholder_domains and (domain in FAKE_DOMAINS or domain.endswith(_FAKE_SUFFIXES)):
        return None
    if local.partition("+")[0] in FAKE_LOCAL_PARTS:
        return None
    return lowered


def truncate_utf8(text: str, limit: int = TEXT_MAX_BYTES) -> str:
    """Cut to at most `limit` UTF-8 bytes without splitting a character."""
    if len(text) <= limit // 4:
        return text
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", "ignore")


# ---- status ---------------------------------------------------------------------------------------


class StatusRejected(Exception):
    """A requested status change Mailchimp refuses; `reason` is "missing" or "compliance"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def resolve_status(
    current: str | None,
    archived_from: str | None,
    status: str | None,
    status_if_new: str | None,
) -> str:
    """The status a write leaves a member in.

    - new member: `status`, else `status_if_new`; one of them is required;
    - existing member: `status` overwrites, `status_if_new` is ignored;
    - archived member: restored only by an explicit `status` (with only `status_if_new` it stays
      archived, as Mailchimp's users report); its pre-archive status still counts for compliance;
    - unsubscribed or cleaned (also before archiving) cannot become subscribed or pending through an
      explicit `status` (StatusRejected("compliance")); with only `status_if_new` the write keeps the
      compliant status.
    """
    if current is None:
        chosen = status or status_if_new
        if not chosen:
            raise StatusRejected("missing")
        return chosen
    if current == "archived":
        if status is None:
            return current
        if archived_from in _COMPLIANCE_LOCKED and status in _OPT_IN:
            raise StatusRejected("compliance")
        return status
    if status is None or status == current:
        return current
    if current in _COMPLIANCE_LOCKED and status in _OPT_IN:
        raise StatusRejected("compliance")
    return status


# ---- merge fields ---------------------------------------------------------------------------------


class MergeValueError(ValueError):
    """A merge value has the wrong type or format; the message is the per-field message."""


Validator = Callable[[Any], Any]


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value.strip() if value[:1].isspace() or value[-1:].isspace() else value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise MergeValueError("Please enter a text value")


def _text(value: Any) -> Any:
    return truncate_utf8(_as_text(value))


def _number(value: Any) -> Any:
    if isinstance(value, bool):
        raise MergeValueError("Please enter a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise MergeValueError("Please enter a number")
        return value
    text = _as_text(value)
    try:
        number = float(text)
    except ValueError:
        raise MergeValueError("Please enter a number") from None
    if not math.isfinite(number):
        raise MergeValueError("Please enter a number")
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


_PHONE_RE = re.compile(r"^\+?[0-9 ().\-/x]{3,40}$")


def _phone_validator(options: dict[str, Any]) -> Validator:
    us_format = str(options.get("phone_format", "")).upper() == "US"

    def phone(value: Any) -> Any:
        text = _as_text(value)
        digits = "".join(ch for ch in text if ch.isdigit())
        if us_format:
            if len(digits) == 11 and digits[0] == "1":
                digits = digits[1:]
            if len(digits) != 10:
                raise MergeValueError("Please enter a US phone number (xxx-xxx-xxxx)")
            return f"{digits[:3]}-{digits[3:6]}-{digits[6:]}"
        if not _PHONE_RE.match(text) or len(digits) < 3:
            raise MergeValueError("Please enter a valid phone number")
        return text

    return phone


# Year-first dates are unambiguous and always accepted; a day and month before the year are read in the
# order of the field's date_format (Mailchimp's merge-field guide lists YYYY-MM-DD, YYYY/MM/DD, DD-MM-YYYY
# and MM/DD/YYYY), with either separator.
_YEAR_FIRST = ("%Y-%m-%d", "%Y/%m/%d")
_DAY_FIRST = ("%d/%m/%Y", "%d-%m-%Y")
_MONTH_FIRST = ("%m/%d/%Y", "%m-%d-%Y")


def _date_validator(options: dict[str, Any]) -> Validator:
    date_format = str(options.get("date_format", "MM/DD/YYYY")).upper()
    formats = _YEAR_FIRST + (_DAY_FIRST if date_format.startswith("DD") else _MONTH_FIRST)

    def date(value: Any) -> Any:
        text = _as_text(value)
        for fmt in formats:
            try:
                return dt.datetime.strptime(text, fmt).date().isoformat()
            except ValueError:
                continue
        raise MergeValueError("Please enter the date")

    return date


def _birthday_validator(options: dict[str, Any]) -> Validator:
    day_first = str(options.get("date_format", "MM/DD")).upper() == "DD/MM"

    def birthday(value: Any) -> Any:
        text = _as_text(value)
        first, sep, second = text.partition("/")
        if not sep or not first.isdigit() or not second.isdigit():
            raise MergeValueError("Please enter a month and day (MM/DD)")
        month, day = (int(second), int(first)) if day_first else (int(first), int(second))
        try:
            dt.date(2000, month, day)  # a leap year, so 02/29 is a valid birthday
        except ValueError:
            raise MergeValueError("Please enter a valid month and day") from None
        return f"{day:02d}/{month:02d}" if day_first else f"{month:02d}/{day:02d}"

    return birthday


def _url(value: Any) -> Any:
    text = _as_text(value)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or " " in text:
        raise MergeValueError("Please enter a valid URL (http:// or https://)")
    return truncate_utf8(text)


def _choice_validator(options: dict[str, Any]) -> Validator:
    choices = frozenset(str(c) for c in options.get("choices") or ())

    def choice(value: Any) -> Any:
        text = _as_text(value)
        if text not in choices:
            raise MergeValueError("Please choose one of the field's options")
        return text

    return choice


_ADDRESS_REQUIRED = ("addr1", "city", "state", "zip")


def _address_validator(options: dict[str, Any]) -> Validator:
    default_country = "US" if options.get("default_country", 164) == 164 else ""

    def address(value: Any) -> Any:
        if not isinstance(value, dict):
            raise MergeValueError("Please enter a complete address (an object with addr1, city, state, zip)")
        out: dict[str, str] = {}
        for key in ("addr1", "addr2", "city", "state", "zip", "country"):
            part = value.get(key, "")
            out[key] = "" if part is None else _as_text(part)
        missing = [k for k in _ADDRESS_REQUIRED if not out[k]]
        if missing:
            raise MergeValueError(f"Please enter a complete address (missing {', '.join(missing)})")
        out["country"] = out["country"] or default_country
        return out

    return address


_ZIP_RE = re.compile(r"^\d{5}(-\d{4})?$")


def _zip(value: Any) -> Any:
    text = _as_text(value)
    if not _ZIP_RE.match(text):
        raise MergeValueError("Please enter a valid US ZIP code")
    return text


def _validator_for(field: MergeField) -> Validator:
    kind, options = field.type, field.options
    if kind == "text":
        return _text
    if kind == "number":
        return _number
    if kind == "phone":
        return _phone_validator(options)
    if kind == "date":
        return _date_validator(options)
    if kind == "birthday":
        return _birthday_validator(options)
    if kind in ("url", "imageurl"):
        return _url
    if kind in ("radio", "dropdown"):
        return _choice_validator(options)
    if kind == "address":
        return _address_validator(options)
    return _zip


class MergeSchema:
    """The merge fields of one audience, compiled into validators once per request or operation."""

    def __init__(self, fields: list[MergeField]) -> None:
        self.fields = fields
        self._validators = {f.tag: _validator_for(f) for f in fields}
        self._text_tags = frozenset(f.tag for f in fields if f.type == "text")
        self._number_tags = frozenset(f.tag for f in fields if f.type == "number")
        self._required = tuple(f.tag for f in fields if f.required)
        self._defaults = {f.tag: f.default_value for f in fields if f.default_value}
        self.blank = {f.tag: "" for f in fields}

    def clean(
        self,
        values: dict[str, Any],
        *,
        creating: bool,
        skip_required: bool,
    ) -> tuple[dict[str, Any], list[dict[str, str]]]:
        """Validate and normalise submitted values; returns (values, [{field, message}, ...])."""
        out: dict[str, Any] = {}
        errors: list[dict[str, str]] = []
        validators, short_text, numbers = self._validators, self._text_tags, self._number_tags
        for tag, value in values.items():
            kind = value.__class__
            if kind is str and tag in short_text and len(value) <= _TEXT_FAST_CHARS:
                out[tag] = value.strip()  # the same string when there is nothing to strip
                continue
            if kind is float and tag in numbers and value - value == 0.0:  # finite: as _number
                out[tag] = value
                continue
            validate = validators.get(tag)
            if validate is None:
                errors.append(
                    {"field": tag, "message": f"The merge field {tag} does not exist on this audience."}
                )
            elif value is None or value == "":
                out[tag] = ""
            else:
                try:
                    out[tag] = validate(value)
                except MergeValueError as exc:
                    errors.append({"field": tag, "message": str(exc)})
        if creating:
            for tag, default in self._defaults.items():
                if out.get(tag, "") == "":
                    out[tag] = default
        if self._required and not skip_required:
            for tag in self._required:
                if out.get(tag, "" if creating else None) == "":
                    errors.append({"field": tag, "message": "Please enter a value"})
        return out, errors
