"""Computed fields: a definition's function runs on each staged part; its mistakes are named plainly."""

from __future__ import annotations

import pyarrow as pa
import pytest
from mailchimp_provider.export.definition import ExportDefinition
from mailchimp_provider.export.extract import source_columns
from mailchimp_provider.export.transform import Transform, TransformError, apply, load_function

PARTS = [
    pa.table({"customer_id": ["C1", "C2"], "first_name": ["ann", None], "lifetime_value": ["500", "12.5"]}),
    pa.table({"customer_id": ["C3"], "first_name": ["bo"], "lifetime_value": [None]}),
]


def _run(function: str, returns: list[str]) -> list[pa.Table]:
    return list(apply(Transform(function=f"support_transforms:{function}", returns=returns), iter(PARTS)))


def test_returned_columns_replace_or_join_the_part_as_text() -> None:
    first, second = _run("shout", ["first_name", "name_length"])
    assert first.column_names == ["customer_id", "first_name", "lifetime_value", "name_length"]
    assert first["first_name"].to_pylist() == ["ANN", None]
    assert first["name_length"].to_pylist() == ["3", None]
    assert second["first_name"].to_pylist() == ["BO"]
    assert first["lifetime_value"] == PARTS[0]["lifetime_value"]  # what it does not return is untouched


def test_the_example_transform_computes_tier_name_and_language() -> None:
    part = pa.table(
        {
            "lifetime_value": ["1200", "170", None],
            "first_name": ["Ann ", None, "Zoë"],
            "last_name": ["Lee", "Bo", None],
            "country": ["de", "ES", "XX"],
        }
    )
    spec = Transform(function="transforms.example:enrich", returns=["tier", "full_name", "language"])
    [out] = apply(spec, iter([part]))
    assert out["tier"].to_pylist() == ["Platinum", "Silver", None]
    assert out["full_name"].to_pylist() == ["Ann Lee", "Bo", "Zoë"]
    assert out["language"].to_pylist() == ["de", "es_ES", None]


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("fails", "support_transforms:fails on part 0 (2 rows) raised KeyError: 'lifetime_value_typo'"),
        ("drops_rows", "returned 1 rows with a different index"),
        ("forgets_a_column", "did not return column 'name_length' (it returned first_name)"),
        ("returns_lists", "column 'first_name' has type list<item: int64>"),
        ("returns_a_series", "returned Series, not a pandas DataFrame"),
        ("quotes_an_address", "raised ValueError: cannot parse a***@gmail.com"),
    ],
)
def test_a_transform_mistake_names_function_part_and_column(function: str, message: str) -> None:
    returns = ["first_name", "name_length"] if function != "returns_lists" else ["first_name"]
    with pytest.raises(TransformError) as caught:
        _run(function, returns)
    assert message in str(caught.value)
    assert "anna.berg" not in str(caught.value) and "second line" not in str(caught.value)
    assert f"support_transforms:{function}" in str(caught.value)
    error = caught.value  # no chained traceback of the function's own exception
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("no_such_module:f", "cannot import module 'no_such_module'"),
        ("support_transforms:missing", "has no function 'missing'"),
        ("support_transforms:not_a_function", "has no function 'not_a_function'"),
    ],
)
def test_a_missing_function_is_named(function: str, message: str) -> None:
    with pytest.raises(TransformError, match=message):
        load_function(Transform(function=function, returns=["x"]))


def test_computed_columns_are_not_read_from_the_warehouse() -> None:
    definition = ExportDefinition.model_validate(
        {
            "export": "computed",
            "mailchimp": {"conn_id": "mc", "audience_id": "aud1"},
            "warehouse": {"conn_id": "wh", "table": "profiles"},
            "segments": ["vip"],
            "columns": {
                "id": "customer_id",
                "email": "email",
                "first_name": "first_name",
                "language": "language",
            },
            "merge_fields": {"TIER": "tier", "CITY": "city"},
            "transform": {
                "function": "transforms.example:enrich",
                "reads": ["lifetime_value", "first_name", "last_name", "country"],
                "returns": ["tier", "full_name", "language", "first_name"],
            },
        }
    )
    assert source_columns(definition) == [
        "customer_id",
        "email",
        "segment",
        "city",
        "first_name",
        "lifetime_value",
        "last_name",
        "country",
    ]


def test_a_transform_may_not_replace_the_keys() -> None:
    with pytest.raises(ValueError, match="may not replace the id, email or segment column"):
        ExportDefinition.model_validate(
            {
                "export": "computed",
                "mailchimp": {"conn_id": "mc", "audience_id": "aud1"},
                "warehouse": {"conn_id": "wh", "table": "profiles"},
                "segments": ["vip"],
                "columns": {"id": "customer_id", "email": "email"},
                "transform": {"function": "m:f", "returns": ["email"]},
            }
        )
