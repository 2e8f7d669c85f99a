from __future__ import annotations

import pytest
from mailchimp_provider.export.mapping import (
    Audience,
    MappingError,
    MergeField,
    map_values,
    plan_fields,
    truncate_utf8,
)

AUDIENCE = Audience(
    id="aud1",
    name="Newsletter",
    double_optin=False,
    merge_fields=(
        MergeField("FNAME", "text"),
        MergeField("LTV", "number"),
        MergeField("BIRTHDAY", "birthday"),
        MergeField("SINCE", "date"),
        MergeField("TIER", "dropdown", choices=("Bronze", "Gold")),
        MergeField("SITE", "url"),
        MergeField("ADDRESS", "address"),
    ),
)


def _map(row: dict, tags: dict[str, str]) -> tuple[dict | None, dict]:
    dropped: dict[str, int] = {}
    return map_values(plan_fields(AUDIENCE, tags), row, dropped), dropped


def test_values_are_converted_by_field_type() -> None:
    row = {
        "n": " Anna ",
        "v": "1234.50",
        "b": "1990-07-14",
        "s": "2024-01-02T10:00:00",
        "t": "gold",
        "u": "https://shop.test/a",
        "a": '{"addr1": "1 Main St", "city": "Oslo", "state": "-", "zip": "0150"}',
    }
    tags = {"FNAME": "n", "LTV": "v", "BIRTHDAY": "b", "SINCE": "s", "TIER": "t", "SITE": "u", "ADDRESS": "a"}
    merged, dropped = _map(row, tags)
    assert merged == {
        "FNAME": "Anna",
        "LTV": 1234.5,
        "BIRTHDAY": "07/14",
        "SINCE": "2024-01-02",
        "TIER": "Gold",
        "SITE": "https://shop.test/a",
        "ADDRESS": {"addr1": "1 Main St", "city": "Oslo", "state": "-", "zip": "0150"},
    }
    assert dropped == {}


@pytest.mark.parametrize(
    ("tag", "value"),
    [
        ("LTV", "12abc"),
        ("LTV", "nan"),
        ("BIRTHDAY", "14/07/1990"),
        ("TIER", "Platinum"),
        ("SITE", "javascript:x"),
        ("ADDRESS", "1 Main St"),
    ],
)
def test_bad_optional_values_are_left_out_and_counted(tag: str, value: str) -> None:
    merged, dropped = _map({"c": value}, {tag: "c"})
    assert merged == {}
    assert sum(dropped.values()) == 1 and next(iter(dropped)).startswith(f"{tag}:")


def test_text_is_cleaned_and_cut_at_255_bytes_without_splitting_characters() -> None:
    merged, _ = _map({"n": "Zoë\x00 \u202eabc" + "😀" * 100}, {"FNAME": "n"})
    value = merged["FNAME"]
    assert "\x00" not in value and "\u202e" in value  # NUL removed, RTL mark kept
    assert len(value.encode()) <= 255
    value.encode("utf-8").decode("utf-8")
    assert truncate_utf8("é" * 200) == "é" * 127


def test_empty_values_are_omitted() -> None:
    merged, dropped = _map({"n": "   ", "v": None}, {"FNAME": "n", "LTV": "v"})
    assert merged == {} and dropped == {}


def test_unknown_merge_field_is_a_configuration_error_naming_it() -> None:
    with pytest.raises(MappingError, match="CITY.*aud1"):
        plan_fields(AUDIENCE, {"CITY": "city"})


def test_required_field_must_be_mapped_and_filled() -> None:
    audience = Audience("a", "A", False, (MergeField("FNAME", "text", required=True),))
    with pytest.raises(MappingError, match="requires merge field"):
        plan_fields(audience, {})
    plans = plan_fields(audience, {"FNAME": "n"})
    assert map_values(plans, {"n": ""}, {}) is None
    assert map_values(plans, {"n": "Bo"}, {}) == {"FNAME": "Bo"}


def test_audience_round_trips_through_json() -> None:
    assert Audience.from_json(AUDIENCE.to_json()) == AUDIENCE


def test_out_of_range_numbers_are_left_out() -> None:
    merged, dropped = _map({"v": "1e400"}, {"LTV": "v"})
    assert merged == {} and dropped == {"LTV:number out of range": 1}
