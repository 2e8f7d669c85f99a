"""Transforms for the tests: one that works and the mistakes a transform can make."""

from __future__ import annotations

import pandas as pd


def shout(profiles: pd.DataFrame) -> pd.DataFrame:
    """Replaces first_name and adds a number column."""
    return profiles.assign(
        first_name=profiles["first_name"].str.upper(), name_length=profiles["first_name"].str.len()
    )


def fails(profiles: pd.DataFrame) -> pd.DataFrame:
    raise KeyError("lifetime_value_typo")


def quotes_an_address(profiles: pd.DataFrame) -> pd.DataFrame:
    raise ValueError("cannot parse anna.berg@gmail.com\nsecond line")


def drops_rows(profiles: pd.DataFrame) -> pd.DataFrame:
    return profiles.iloc[1:]


def forgets_a_column(profiles: pd.DataFrame) -> pd.DataFrame:
    return profiles[["first_name"]]


def returns_lists(profiles: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"first_name": [[1, 2]] * len(profiles)}, index=profiles.index)


def returns_a_series(profiles: pd.DataFrame) -> pd.Series:
    return profiles["first_name"]


not_a_function = 42
