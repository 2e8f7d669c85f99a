"""Reading request bodies and query parameters the way Mailchimp validates them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson

from .problems import ApiError, invalid

# A digit as "0", a byte a number can follow (":", ",", "[", "-", whitespace) as "!", any other as " ": "!"
# and 19 zeros then mark an integer orjson may read differently from json (past 64 bits: a float there).
# Digits inside strings (hashes, ids) rarely follow those bytes, so they seldom send a body to json.
_NUMBER_MARKS = bytes(48 if 48 <= b <= 57 else 33 if b in b":,[- \t\n\r" else 32 for b in range(256))
_LONG_NUMBER = b"0" * 19


def _may_hold_long_integer(data: bytes) -> bool:
    marks = data.translate(_NUMBER_MARKS)
    return marks.startswith(_LONG_NUMBER) or b"!" + _LONG_NUMBER in marks


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes) -> Any:
    """Decode a request body; an empty body counts as {} and is then validated like any object."""
    if not body.strip():
        return {}
    # orjson (several times faster on a batch's megabytes) where it reads exactly as json does; what
    # it refuses, or a body with a long run of digits, goes to json, so what is accepted never changes.
    if not _may_hold_long_integer(body):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        detail = f"We encountered an unspecified JSON parsing error: {str(exc)[:200]}"
        raise ApiError("JSONParseError", detail) from None


def object_body(body: bytes) -> dict[str, Any]:
    data = parse_json(body)
    if not isinstance(data, dict):
        raise invalid("body", "Schema describes object, found something else instead")
    return data


def bool_param(query: Mapping[str, str], name: str) -> bool:
    value = query.get(name)
    if value is None or value == "":
        return False
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise invalid(name, "Must be true or false")


def int_param(
    query: Mapping[str, str], name: str, default: int | None, maximum: int | None = None
) -> int | None:
    value = query.get(name)
    if value is None or value == "":
        return default
    if not value.isdigit():
        raise invalid(name, "Must be a non-negative integer")
    number = int(value)
    if maximum is not None and number > maximum:
        raise invalid(name, f"Must be at most {maximum}")
    return number
