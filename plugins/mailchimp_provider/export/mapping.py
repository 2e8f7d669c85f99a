"""Map warehouse values onto an audience's merge fields, checked by type against Mailchimp's limits."""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TEXT_LIMIT_BYTES = 255
# The most of a merge-field value the warehouse is asked for (see extract.build_query). Mailchimp keeps
# 255 bytes of text and its largest value, an address, is six such parts: 1,024 characters holds any real
# one, with room for whitespace; a longer value is a data error, left out rather than cut. With this cap a
# value costs at most a few KB of memory however large it is in the warehouse.
VALUE_READ_LIMIT = 1_024
_NULL_TEXT = pa.scalar(None, pa.string())
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


class MappingError(ValueError):
    """An export's merge fields do not fit the audience: a configuration mistake, named plainly."""


class BadValue(ValueError):
    """One value that cannot go into its merge field; the profile still goes, without that field."""


@dataclass(frozen=True)
class MergeField:
    tag: str
    type: str
    required: bool = False
    choices: tuple[str, ...] = ()

    @classmethod
    def from_api(cls, raw: dict) -> MergeField:
        options = raw.get("options") or {}
        return cls(
            tag=raw["tag"],
            type=raw.get("type", "text"),
            required=bool(raw.get("required")),
            choices=tuple(options.get("choices") or ()),
        )


@dataclass(frozen=True)
class Audience:
    """What the exporter needs to know about the target audience, read from Mailchimp at run time."""

    id: str
    name: str
    double_optin: bool
    merge_fields: tuple[MergeField, ...] = field(default_factory=tuple)

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "name": self.name,
                "double_optin": self.double_optin,
                "merge_fields": [vars(f) | {"choices": list(f.choices)} for f in self.merge_fields],
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Audience:
        raw = json.loads(text)
        fields = tuple(MergeField(**(f | {"choices": tuple(f["choices"])})) for f in raw["merge_fields"])
        return cls(raw["id"], raw["name"], raw["double_optin"], fields)


def truncate_utf8(text: str, limit: int = TEXT_LIMIT_BYTES) -> str:
    """Cut to ``limit`` UTF-8 bytes without splitting a character, as Mailchimp stores text."""
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", errors="ignore")


_SHORT_TEXT = TEXT_LIMIT_BYTES // 4  # characters that fit the limit whatever their UTF-8 length


def _text(value: str) -> str:
    if len(value) <= _SHORT_TEXT and value.isprintable():  # the common case: nothing to clean or cut
        return value.strip()
    return truncate_utf8(_CONTROL.sub("", value).strip())


def _number(value: str) -> int | float:
    value = value.strip()
    if not _NUMBER.match(value):
        raise BadValue("not a number")
    number = float(value)
    if not math.isfinite(number):
        raise BadValue("number out of range")
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value.strip()[:10])
    except ValueError:
        raise BadValue("not an ISO date (YYYY-MM-DD)") from None


def _url(value: str) -> str:
    value = value.strip()
    if not re.match(r"^https?://[^\s/$.?#][^\s]*$", value, re.IGNORECASE):
        raise BadValue("not an http(s) URL")
    return value


def _address(value: str) -> dict:
    try:
        address = json.loads(value)
    except ValueError:
        raise BadValue("not a JSON address object") from None
    if not isinstance(address, dict) or not all(address.get(k) for k in ("addr1", "city", "state", "zip")):
        raise BadValue("address needs addr1, city, state and zip")
    return {k: _text(str(v)) for k, v in address.items()}


_Converters = tuple[Callable[[str], Any], Callable[[pa.Array], pa.Array] | None]


def _converters(merge_field: MergeField) -> _Converters:
    """The field type's converter of one value, and of a whole column where its common path is worth
    a vectorised twin (see FieldPlan)."""
    kind = merge_field.type
    if kind == "number":
        return _number, _number_json
    if kind == "date":
        return lambda v: _date(v).isoformat(), _iso_date_json
    if kind == "birthday":
        return lambda v: _date(v).strftime("%m/%d"), _birthday_json
    if kind in ("url", "imageurl"):
        return _url, _url_json
    if kind == "address":
        return _address, None
    if kind in ("dropdown", "radio"):
        by_lower = {choice.lower(): choice for choice in merge_field.choices}

        def choose(value: str) -> str:
            try:
                return by_lower[value.strip().lower()]
            except KeyError:
                raise BadValue("not one of the field's choices") from None

        return choose, functools.partial(_choice_json, by_lower)
    return _text, _text_json  # text, phone, zip and types Mailchimp adds later are text-limited


@functools.cache
def _printable_only() -> str:
    """An RE2 pattern matching strings of characters Python's ``str.isprintable`` accepts: the class is
    built from Python's own Unicode tables, so Arrow's never come into it. Planes 0 and 1 hold every
    living script and the emoji; rarer characters take the row-by-row path."""
    codes = np.arange(0x20000)
    printable = np.fromiter((c.isprintable() for c in map(chr, codes)), bool, len(codes))
    edges = np.flatnonzero(np.diff(np.concatenate([[False], printable, [False]])))
    return "^[" + "".join(rf"\x{{{a:x}}}-\x{{{b - 1:x}}}" for a, b in edges.reshape(-1, 2)) + "]*$"


def json_strings(values: pa.Array) -> pa.Array:
    """Strings as JSON string literals, for values without control characters (the only other
    characters ``json.dumps(..., ensure_ascii=False)`` escapes)."""
    escaped = pc.replace_substring(pc.replace_substring(values, "\\", "\\\\"), '"', '\\"')
    return pc.binary_join_element_wise('"', escaped, '"', "")


def _text_json(values: pa.Array) -> pa.Array:
    """_text's common path over a column: short printable values need only the trim (the one printable
    whitespace is the space)."""
    common = pc.and_(
        pc.match_substring_regex(values, _printable_only()),
        pc.less_equal(pc.utf8_length(values), _SHORT_TEXT),
    )
    trimmed = pc.utf8_trim(values, " ")
    return pc.if_else(common, pc.if_else(pc.equal(trimmed, ""), "", json_strings(trimmed)), _NULL_TEXT)


# Up to 15 significant digits, at least 0.001 apart from zero: a double holds each exactly enough that
# Python's repr gives back the same digits, in plain notation; so the JSON is the text itself, tidied.
_COMMON_NUMBER = r"^[+-]?[0-9]{1,12}(\.[0-9]{1,3})?$"
_TIDY_NUMBER = r"^(0|-?[1-9][0-9]*)(\.[0-9]*[1-9])?$"  # how json.dumps writes it already: most values
_TIDY_STEPS = (
    (r"^\+", ""),  # no plus sign
    (r"^(-?)0+([0-9])", r"\1\2"),  # no leading zeros
    (r"(\.[0-9]*?)0+$", r"\1"),  # no trailing zeros after the point
    (r"\.$", ""),  # a whole number is an integer
    (r"^-0$", "0"),  # and zero has no sign
)


def _number_json(values: pa.Array) -> pa.Array:
    """_number's common path over a column, giving what json.dumps writes for the value _number
    returns."""
    untidy = pc.invert(pc.fill_null(pc.match_substring_regex(values, _TIDY_NUMBER), True))
    tidied = values.filter(untidy)
    for pattern, replacement in _TIDY_STEPS:
        tidied = pc.replace_substring_regex(tidied, pattern, replacement)
    tidy = pc.replace_with_mask(values, untidy, tidied)
    return pc.if_else(pc.match_substring_regex(values, _COMMON_NUMBER), tidy, _NULL_TEXT)


_COMMON_DATE = r"^[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}"  # what _date reads, from year 1000 on
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _valid_dates(values: pa.Array) -> pa.Array:
    """Where a value starts with a real calendar date in ISO form: True; elsewhere null."""
    common = pc.fill_null(pc.match_substring_regex(values, _COMMON_DATE), False)
    dates = values.filter(common)
    year, month, day = (
        pc.cast(pc.utf8_slice_codeunits(dates, a, b), pa.int32()).to_numpy(zero_copy_only=False)
        for a, b in ((0, 4), (5, 7), (8, 10))
    )
    month_ok = (month >= 1) & (month <= 12)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    last_day = _DAYS_IN_MONTH[np.where(month_ok, month, 0)] + ((month == 2) & leap)
    valid = month_ok & (day >= 1) & (day <= last_day)
    return pc.replace_with_mask(pa.nulls(len(values), pa.bool_()), common, pa.array(valid, mask=~valid))


def _iso_date_json(values: pa.Array) -> pa.Array:
    """_date(...).isoformat()'s common path: the date is the value's first ten characters."""
    text = json_strings(pc.utf8_slice_codeunits(values, 0, 10))
    return pc.if_else(_valid_dates(values), text, _NULL_TEXT)


def _birthday_json(values: pa.Array) -> pa.Array:
    """_date(...).strftime("%m/%d")'s common path."""
    month_day = pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(values, 5, 7), pc.utf8_slice_codeunits(values, 8, 10), "/"
    )
    return pc.if_else(_valid_dates(values), json_strings(month_day), _NULL_TEXT)


# ASCII without spaces or control characters, so RE2's and Python's readings of the pattern agree.
_COMMON_URL = r"(?i)^https?://[^/$.?#\x00-\x20\x7f-\x{10ffff}][\x21-\x7e]*$"


def _url_json(values: pa.Array) -> pa.Array:
    """_url's common path: an http(s) URL with nothing to trim."""
    return pc.if_else(pc.match_substring_regex(values, _COMMON_URL), json_strings(values), _NULL_TEXT)


_ASCII_SPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"  # what str.strip removes from ASCII text


def _choice_json(by_lower: dict[str, str], values: pa.Array) -> pa.Array:
    """The dropdown converter's common path: an ASCII value naming one of the choices."""
    keys = pc.ascii_lower(pc.utf8_trim(values, _ASCII_SPACE))
    choices = pa.array([json.dumps(c, ensure_ascii=False) for c in by_lower.values()], pa.string())
    found = pc.index_in(keys, value_set=pa.array(list(by_lower), pa.string()))
    common = pc.and_(pc.string_is_ascii(values), pc.not_equal(keys, ""))  # blank: map_values omits it
    return pc.if_else(common, pc.take(choices, found), _NULL_TEXT)


@dataclass(frozen=True)
class FieldPlan:
    tag: str
    column: str
    required: bool
    convert: Callable[[str], Any]
    # The common path over a whole column: each row's value as JSON text, null where the row needs
    # ``convert`` (None: every non-empty value does).
    convert_column: Callable[[pa.Array], pa.Array] | None = None


def plan_fields(audience: Audience, tag_columns: dict[str, str]) -> list[FieldPlan]:
    """Check the export's merge tags against the audience once, before any row is mapped."""
    by_tag = {f.tag: f for f in audience.merge_fields}
    unknown = sorted(set(tag_columns) - set(by_tag))
    if unknown:
        raise MappingError(
            f"merge field(s) {', '.join(unknown)} do not exist in audience {audience.id} "
            f"({audience.name}); it has {', '.join(sorted(by_tag)) or 'none'}. Create them in Mailchimp "
            "or remove them from the export definition."
        )
    unfilled = sorted(f.tag for f in audience.merge_fields if f.required and f.tag not in tag_columns)
    if unfilled:
        raise MappingError(
            f"audience {audience.id} requires merge field(s) {', '.join(unfilled)} that the export does "
            "not map; add them under merge_fields in the export definition."
        )
    return [
        FieldPlan(tag, column, by_tag[tag].required, *_converters(by_tag[tag]))
        for tag, column in tag_columns.items()
    ]


def map_values(plans: list[FieldPlan], row: dict[str, str | None], dropped: dict[str, int]) -> dict | None:
    """The merge_fields object for one profile, or None if a required field is empty or invalid.

    An optional value that does not fit its field is left out and counted in ``dropped`` by
    ``TAG:reason``, so the report says which values did not go.
    """
    merged: dict[str, Any] = {}
    for plan in plans:
        raw = row.get(plan.column)
        value = None
        if raw is not None and raw.strip():
            try:
                if len(raw) > VALUE_READ_LIMIT:
                    raise BadValue("value too long")
                value = plan.convert(raw)
            except BadValue as exc:
                key = f"{plan.tag}:{exc}"
                dropped[key] = dropped.get(key, 0) + 1
        if value in (None, ""):
            if plan.required:
                return None
            continue
        merged[plan.tag] = value
    return merged


def map_columns(plans: list[FieldPlan], rows: pa.Table) -> tuple[pa.Array, pa.Array]:
    """:func:`map_values` over whole columns, for the rows whose every value takes a common path.

    Returns the merge_fields object as JSON (what ``json.dumps(..., ensure_ascii=False,
    separators=(",", ":"))`` writes for map_values' dict) and whether a required field is empty; both
    null where a row needs :func:`map_values` itself. The common paths never drop a value, so the rows
    they take add nothing to the dropped counts.
    """
    pieces: list[pa.Array] = []
    required_empty = pa.repeat(False, rows.num_rows)
    for plan in plans:
        values = rows[plan.column].combine_chunks()
        if plan.convert_column is None:
            text = pc.if_else(pc.is_null(values), "", _NULL_TEXT)
        else:
            text = pc.if_else(pc.is_null(values), "", plan.convert_column(values))
        # A value longer than the warehouse is asked for is left out by map_values: never a common path.
        too_long = pc.fill_null(pc.greater(pc.utf8_length(values), VALUE_READ_LIMIT), False)
        text = pc.if_else(too_long, _NULL_TEXT, text)
        empty = pc.equal(text, "")
        prefix = f",{json.dumps(plan.tag, ensure_ascii=False)}:"
        pieces.append(pc.if_else(empty, "", pc.binary_join_element_wise(prefix, text, "")))
        if plan.required:
            required_empty = pc.or_(required_empty, empty)
    body = pc.binary_join_element_wise(*pieces, "") if pieces else pa.repeat("", rows.num_rows)
    merge_fields = pc.binary_join_element_wise("{", pc.utf8_slice_codeunits(body, 1), "}", "")
    return merge_fields, pc.if_else(pc.is_null(merge_fields), pa.scalar(None, pa.bool_()), required_empty)
