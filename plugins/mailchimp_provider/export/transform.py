"""Computed fields: a Python function of the definition's choosing runs on each staged part.

The function gets the part as a pandas DataFrame with Arrow-backed text columns (``pd.ArrowDtype``: the
warehouse's values as extracted) and returns the columns named in ``transform.returns``, new or
replacing extracted ones; those columns are mapped like warehouse columns. It runs between extract and
validate, so a function that raises or returns something unusable fails the run before anything is
sent, with a message naming the function, the part and the column (its own exception summarised, no
stack trace). Exports without a transform never touch pandas.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from mailchimp_provider.hooks.errors import mask_emails_in

Column = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
FunctionPath = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"),
]


class TransformError(ValueError):
    """The definition's transform cannot be used or did not do its job: a user's mistake, named plainly."""


class Transform(BaseModel):
    """``function``: ``module:function``, the module in the project's ``include/`` or any installed
    package. ``reads``: extra warehouse columns it needs. ``returns``: the columns it gives back."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    function: FunctionPath
    reads: list[Column] = Field(default_factory=list)
    returns: Annotated[list[Column], Field(min_length=1)]


def project_include_dir() -> Path:
    """The project's ``include/``, beside its DAGs folder (as in this repository and its images)."""
    from airflow.sdk.configuration import conf

    return Path(conf.get("core", "dags_folder")).resolve().parent / "include"


def load_function(spec: Transform) -> Callable[[Any], Any]:
    """Import the function, looking in the project's ``include/`` too; a TransformError if it is not there."""
    module_name, _, name = spec.function.partition(":")
    include = str(project_include_dir())
    if include not in sys.path:
        sys.path.append(include)  # appended: installed packages win over same-named folders
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise TransformError(
            f"transform {spec.function}: cannot import module {module_name!r} (looked in installed "
            f"packages and {include}): {type(exc).__name__}: {_first_line(exc)}"
        ) from None
    function = getattr(module, name, None)
    if not callable(function):
        raise TransformError(f"transform {spec.function}: module {module_name!r} has no function {name!r}")
    return function


def apply(spec: Transform, parts: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """Each part with the function's columns added or replaced (as text, like extracted columns)."""
    import pandas as pd  # only exports with a transform pay for pandas

    function = load_function(spec)
    for index, table in enumerate(parts):
        where = f"transform {spec.function} on part {index} ({table.num_rows} rows)"
        frame = table.to_pandas(types_mapper=pd.ArrowDtype)
        try:
            result = function(frame)
        except Exception as exc:
            raise TransformError(f"{where} raised {type(exc).__name__}: {_first_line(exc)}") from None
        if not isinstance(result, pd.DataFrame):
            raise TransformError(f"{where} returned {type(result).__name__}, not a pandas DataFrame")
        if not result.index.equals(frame.index):
            raise TransformError(
                f"{where} returned {len(result)} rows with a different index: it must keep every row, in order"
            )
        for column in spec.returns:
            if column not in result.columns:
                raise TransformError(
                    f"{where} did not return column {column!r} (it returned {', '.join(map(str, result.columns))})"
                )
            values = _as_text(result[column], f"{where}: column {column!r}")
            if column in table.column_names:
                table = table.set_column(table.column_names.index(column), column, values)
            else:
                table = table.append_column(column, values)
        yield table


def _as_text(series: Any, where: str) -> pa.Array:
    """A returned column as Arrow text: numbers, booleans, dates and text convert, anything else fails."""
    try:
        array = pa.Array.from_pandas(series)
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        if pa.types.is_dictionary(array.type):  # pandas categoricals
            array = array.dictionary_decode()
        if pa.types.is_boolean(array.type):
            return array.cast(pa.string())
        if not (
            pa.types.is_string(array.type)
            or pa.types.is_large_string(array.type)
            or pa.types.is_null(array.type)
            or pa.types.is_integer(array.type)
            or pa.types.is_floating(array.type)
            or pa.types.is_decimal(array.type)
            or pa.types.is_date(array.type)
            or pa.types.is_timestamp(array.type)
        ):
            raise TransformError(f"{where} has type {array.type}; return text, numbers, booleans or dates")
        return array.cast(pa.string())
    except TransformError:
        raise
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise TransformError(f"{where} cannot be converted to text: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    """The exception's first line, addresses masked: a user's function may quote the data it choked on."""
    text = str(exc).strip()
    return mask_emails_in(text.splitlines()[0]) if text else "(no message)"
