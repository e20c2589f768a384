"""An immutable table of string cells with pandas-style row labels.

The reference tools keep their state in pandas DataFrames and the verifier compares them with
`DataFrame.equals`, which looks at values, positions AND index labels. The labels depend on how
each tool writes (a delete keeps the other labels, `concat(ignore_index=True)` renumbers them,
`.loc[len(df)] = row` writes at the label len(df)), so a Table carries them explicitly.

Tables never change: every write returns a new Table that shares the unchanged row tuples. A
fresh copy of the world is therefore free, an episode's write costs one list copy of the table's
row references, and two worlds are compared fast by object identity before values.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

Row = tuple[Any, ...]


class Table:
    """Columns, rows (tuples, one cell per column; None is a missing value) and row labels."""

    __slots__ = ("columns", "rows", "_labels", "_column_index", "_first_position")

    def __init__(self, columns: Sequence[str], rows: Sequence[Row], labels: Sequence[int] | None = None):
        self.columns: tuple[str, ...] = tuple(columns)
        self.rows: tuple[Row, ...] = tuple(rows)
        # None stands for the RangeIndex 0..n-1, the labels of a freshly read CSV.
        self._labels: tuple[int, ...] | None = None if labels is None else tuple(labels)
        if self._labels is not None and len(self._labels) != len(self.rows):
            raise ValueError(f"{len(self._labels)} labels for {len(self.rows)} rows")
        self._column_index = {name: i for i, name in enumerate(self.columns)}
        self._first_position: dict[str, dict[Any, int]] = {}

    @classmethod
    def from_records(cls, columns: Sequence[str], records: Iterable[dict[str, Any]]) -> Table:
        """A table from dicts keyed by column name (missing keys are missing values)."""
        return cls(columns, [tuple(record.get(column) for column in columns) for record in records])

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return f"Table({len(self.rows)} rows x {self.columns})"

    @property
    def labels(self) -> tuple[int, ...]:
        """The row labels (pandas index), in row order."""
        return tuple(range(len(self.rows))) if self._labels is None else self._labels

    @property
    def has_range_labels(self) -> bool:
        """True when the labels are 0..n-1 in order."""
        return self._labels is None or self._labels == tuple(range(len(self.rows)))

    def column_index(self, column: str) -> int:
        """The position of `column`; KeyError names the column when it is absent."""
        return self._column_index[column]

    def has_column(self, column: str) -> bool:
        return column in self._column_index

    def column_values(self, column: str) -> list[Any]:
        """The cells of one column, in row order."""
        index = self._column_index[column]
        return [row[index] for row in self.rows]

    def record(self, position: int) -> dict[str, Any]:
        """The row at `position` as a {column: value} dict."""
        return dict(zip(self.columns, self.rows[position]))

    def records(self, positions: Iterable[int] | None = None) -> list[dict[str, Any]]:
        """Rows as dicts (all rows, or those at `positions`), like DataFrame.to_dict("records")."""
        if positions is None:
            return [dict(zip(self.columns, row)) for row in self.rows]
        return [dict(zip(self.columns, self.rows[p])) for p in positions]

    def find(self, column: str, value: Any) -> int | None:
        """The position of the first row whose `column` equals `value`, or None."""
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            values = self.column_values(column)
            return next((i for i, cell in enumerate(values) if cell == value), None)
        lookup = self._first_position.get(column)
        if lookup is None:
            lookup = {}
            for position, cell in enumerate(self.column_values(column)):
                if isinstance(cell, (str, int, float)):
                    lookup.setdefault(cell, position)
            self._first_position[column] = lookup
        return lookup.get(value)

    def contains_value(self, column: str, value: Any) -> bool:
        """`value in df[column].values`: True when some cell equals `value`."""
        return self.find(column, value) is not None

    # ----------------------------------------------------------------------------------------
    # Writes. Each returns a new table; the row tuples that did not change are shared.

    def without(self, column: str, value: Any) -> Table:
        """`df[df[column] != value]`: drops every matching row and keeps the other labels."""
        index = self._column_index[column]
        labels = self.labels
        kept = [i for i, row in enumerate(self.rows) if row[index] != value]
        return Table(self.columns, [self.rows[i] for i in kept], [labels[i] for i in kept])

    def with_cells(self, column: str, match_value: Any, target: str, new_value: Any) -> Table:
        """`df.loc[df[column] == match_value, target] = new_value` for an existing `target`."""
        match_index = self._column_index[column]
        target_index = self._column_index[target]
        rows = list(self.rows)
        for position, row in enumerate(rows):
            if row[match_index] == match_value:
                rows[position] = row[:target_index] + (new_value,) + row[target_index + 1:]
        return Table(self.columns, rows, self._labels)

    def with_column(self, column: str) -> Table:
        """The table with one more column, missing everywhere (pandas' setting-with-enlargement)."""
        return Table(self.columns + (column,), [row + (None,) for row in self.rows], self._labels)

    def appended_renumbered(self, row: Row) -> Table:
        """`pd.concat([df, new_row], ignore_index=True)`: labels become 0..n."""
        return Table(self.columns, self.rows + (row,))

    def appended_with_label(self, row: Row, label: int) -> Table:
        """`pd.concat([df, new_row])` (the new row keeps its own label, e.g. 0)."""
        return Table(self.columns, self.rows + (row,), self.labels + (label,))

    def set_at_label(self, label: int, row: Row) -> Table:
        """`df.loc[label] = row`: overwrites the rows labelled `label`, or appends one."""
        labels = self.labels
        if label not in labels:
            return self.appended_with_label(row, label)
        rows = [row if row_label == label else old for old, row_label in zip(self.rows, labels)]
        return Table(self.columns, rows, labels)
