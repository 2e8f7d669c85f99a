"""Driver rows become the same text table whether Arrow converts the tuples itself (every value text or
missing) or the columns are converted one by one (any other value)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st
from mailchimp_provider.export.extract import _cut, _text_array, rows_to_table

NAMES = ["id", "email", "city"]
value = st.one_of(
    st.none(),
    st.text(max_size=5),
    st.text(max_size=5),
    st.integers(-5, 5),
    st.decimals(-5, 5, places=2),
    st.dates(dt.date(2020, 1, 1), dt.date(2020, 1, 3)),
    st.sampled_from([b"caf\xc3\xa9", b"\xff", b"caf\xc3"]),  # UTF-8, not UTF-8, cut inside a character
)


@given(
    st.lists(st.tuples(value, value, value), max_size=6),
    st.dictionaries(st.sampled_from(NAMES), st.integers(1, 4)),
)
def test_rows_become_the_column_by_column_table(rows: list[tuple], limits: dict[str, int]) -> None:
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(NAMES)
    want = pa.Table.from_arrays(
        [_text_array(column, limits.get(name)) for column, name in zip(columns, NAMES, strict=True)],
        names=NAMES,
    )
    assert rows_to_table(rows, NAMES, limits).equals(want)


def test_text_rows_take_arrows_conversion() -> None:
    rows = [("1", "a@x.de", None), ("2", None, "Köln")]
    table = rows_to_table(rows, NAMES)
    assert table.to_pylist() == [
        {"id": "1", "email": "a@x.de", "city": None},
        {"id": "2", "email": None, "city": "Köln"},
    ]
    assert table.schema == pa.schema([(name, pa.string()) for name in NAMES])


@given(st.lists(st.one_of(st.none(), st.text(max_size=8)), max_size=6), st.integers(1, 6))
def test_values_are_cut_to_their_characters(texts: list[str | None], limit: int) -> None:
    """Whether or not a column needs cutting (its longest value in bytes against the limit)."""
    cut = _cut(pa.array(texts, pa.string()), limit)
    assert cut.type == pa.string()
    assert cut.to_pylist() == [None if t is None else t[:limit] for t in texts]
