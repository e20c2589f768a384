"""Helpers the toolkits share: pandas-like filters, pagination and new IDs.

The reference tools are pandas code; these helpers reproduce the pandas behaviours they rely on,
including the ones that raise (a regex that does not compile, a filter over missing cells).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from grpo_jax.envs.workplace.constants import ID_WIDTH
from grpo_jax.envs.workplace.table import Table

NA_MASK_ERROR = "Cannot mask with non-boolean array containing NA / NaN values"


def regex_matches(values: Sequence[Any], pattern: Any, missing: bool | None = None) -> list[bool]:
    """`Series.str.contains(pattern, case=False[, na=missing])` as a list of booleans.

    The pattern is a regular expression (pandas' default), so an invalid one raises re.error. A
    cell that is not a string matches as `missing`; with missing=None (pandas' default NaN) the
    mask cannot index a frame and ValueError is raised, as pandas does.
    """
    regex = re.compile(pattern, flags=re.IGNORECASE)
    mask = []
    for value in values:
        if isinstance(value, str):
            mask.append(regex.search(value) is not None)
        elif missing is None:
            raise ValueError(NA_MASK_ERROR)
        else:
            mask.append(missing)
    return mask


def string_compare(values: Sequence[Any], bound: Any, keep_greater_or_equal: bool) -> list[bool]:
    """`series >= bound` (or `<=`) over object cells: a missing cell compares False."""
    mask = []
    for value in values:
        if value is None:
            mask.append(False)
        elif keep_greater_or_equal:
            mask.append(value >= bound)
        else:
            mask.append(value <= bound)
    return mask


def paginate(items: list[Any], page: Any, page_size: Any) -> tuple[list[Any], dict[str, Any]]:
    """NeMo Gym's page arithmetic, including its clamping of the page number."""
    total = len(items)
    total_pages = (total + page_size - 1) // page_size
    page = max(1, min(page, total_pages)) if total_pages > 0 else 1
    start = (page - 1) * page_size
    end = min(start + page_size, total)
    return items[start:end], {"page": page, "page_size": page_size, "total_pages": total_pages}


def next_padded_id(table: Table, column: str) -> str:
    """`str(int(df[column].max()) + 1).zfill(8)`: max is the largest string, not number."""
    return str(int(_string_max(table.column_values(column))) + 1).zfill(ID_WIDTH)


def next_email_id(table: Table, column: str) -> str:
    """`str(int(df[column].max()) + 1)`, not zero-padded ("500"), or "1" for an empty table."""
    values = table.column_values(column)
    return str(int(_string_max(values)) + 1) if values else "1"


def _string_max(values: list[Any]) -> Any:
    present = [value for value in values if value is not None]
    if not present:
        raise ValueError("cannot convert float NaN to integer")
    return max(present)


def lower(value: Any) -> str:
    """`value.lower()`, raising AttributeError for a non-string like the reference."""
    return value.lower()


def set_cells(table: Table, key_column: str, key: Any, field: str, new_value: Any) -> Table:
    """`df.loc[df[key_column] == key, field] = new_value`.

    An unknown `field` becomes a new column (pandas enlarges the frame); a list value raises like
    pandas does when it cannot broadcast it into the selected cells.
    """
    if isinstance(new_value, (list, tuple)):
        raise ValueError("Must have equal len keys and value when setting with an iterable")
    if not table.has_column(field):
        table = table.with_column(field)
    return table.with_cells(key_column, key, field, new_value)
