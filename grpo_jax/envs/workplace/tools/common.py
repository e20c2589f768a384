"""Helpers the toolkits share: pandas-like filters, pagination and new IDs.

The reference tools are pandas code; these helpers reproduce the pandas behaviours they rely on,
including the ones that raise (a regex that does not compile, a filter over missing cells).
"""
from __future__ import annotations

import re
import re._constants as _sre_constants  # re's own parser (Python >= 3.11), to inspect a pattern
import re._parser as _sre_parser
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
    if _nests_repetition(_sre_parser.parse(pattern, re.IGNORECASE)):
        # The model writes these patterns: `(.*)*x` or `(\w+\s?)*!` backtrack exponentially in
        # the cell length, and one such search stalls a rollout for minutes or hours (pandas
        # would hang too). No search text of the tasks nests repetitions.
        raise ValueError(f"the pattern {pattern[:100]!r} repeats a repetition (like '(a+)+' or "
                         "'(.*)*'), which can take exponential time; search for plain text instead")
    mask = []
    for value in values:
        if isinstance(value, str):
            mask.append(regex.search(value) is not None)
        elif missing is None:
            raise ValueError(NA_MASK_ERROR)
        else:
            mask.append(missing)
    return mask


_REPEATS = (_sre_constants.MAX_REPEAT, _sre_constants.MIN_REPEAT, _sre_constants.POSSESSIVE_REPEAT)


def _nests_repetition(parsed, inside_repeat: bool = False) -> bool:
    """True if a quantifier allowing more than one match sits inside another such quantifier."""
    for op, av in parsed:
        if op in _REPEATS:
            _, high, body = av
            if high > 1 and (inside_repeat or _nests_repetition(body, True)):
                return True
            if high <= 1 and _nests_repetition(body, inside_repeat):
                return True
        elif op is _sre_constants.SUBPATTERN:
            if _nests_repetition(av[-1], inside_repeat):
                return True
        elif op is _sre_constants.BRANCH:
            if any(_nests_repetition(branch, inside_repeat) for branch in av[1]):
                return True
        elif op in (_sre_constants.ASSERT, _sre_constants.ASSERT_NOT):
            if _nests_repetition(av[1], inside_repeat):
                return True
        elif op is _sre_constants.ATOMIC_GROUP:
            if _nests_repetition(av, inside_repeat):
                return True
        elif op is _sre_constants.GROUPREF_EXISTS:
            if any(branch is not None and _nests_repetition(branch, inside_repeat) for branch in av[1:]):
                return True
    return False


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
