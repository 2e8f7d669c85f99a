"""Map warehouse values onto an audience's merge fields, checked by type against Mailchimp's limits."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TEXT_LIMIT_BYTES = 255
# The most of a merge-field value the warehouse is asked for (see extract.build_query). Mailchimp keeps
# 255 bytes of text and its largest value, an address, is six such parts: 1,024 characters holds any real
# one, with room for whitespace; a longer value is a data error, left out rather than cut. With this cap a
# value costs at most a few KB of memory however large it is in the warehouse.
VALUE_READ_LIMIT = 1_024
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


def _text(value: str) -> str:
    if (
        len(value) <= TEXT_LIMIT_BYTES // 4 and value.isprintable()
    ):  # the common case: nothing to clean or cut
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


def _converter(merge_field: MergeField) -> Callable[[str], Any]:
    kind = merge_field.type
    if kind == "number":
        return _number
    if kind == "date":
        return lambda v: _date(v).isoformat()
    if kind == "birthday":
        return lambda v: _date(v).strftime("%m/%d")
    if kind in ("url", "imageurl"):
        return _url
    if kind == "address":
        return _address
    if kind in ("dropdown", "radio"):
        by_lower = {choice.lower(): choice for choice in merge_field.choices}

        def choose(value: str) -> str:
            try:
                return by_lower[value.strip().lower()]
            except KeyError:
                raise BadValue("not one of the field's choices") from None

        return choose
    return _text  # text, phone, zip and types Mailchimp adds later are text-limited


@dataclass(frozen=True)
class FieldPlan:
    tag: str
    column: str
    required: bool
    convert: Callable[[str], Any]


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
        FieldPlan(tag, column, by_tag[tag].required, _converter(by_tag[tag]))
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
