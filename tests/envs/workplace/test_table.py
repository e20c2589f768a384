"""Table: immutable writes with pandas' row-label rules."""
from __future__ import annotations

import pytest

from grpo_jax.envs.workplace.table import Table

COLUMNS = ("id", "name")


def table() -> Table:
    return Table(COLUMNS, [("a", "x"), ("b", "y"), ("c", "z")])


def test_reads():
    t = table()
    assert len(t) == 3 and t.labels == (0, 1, 2) and t.has_range_labels
    assert t.record(1) == {"id": "b", "name": "y"}
    assert t.records([2]) == [{"id": "c", "name": "z"}]
    assert t.column_values("name") == ["x", "y", "z"]
    assert t.find("id", "c") == 2 and t.find("id", "q") is None and t.find("id", ["c"]) is None
    assert t.contains_value("id", "a") and not t.contains_value("id", 5)
    with pytest.raises(KeyError):
        t.column_index("missing")
    with pytest.raises(ValueError, match="labels"):
        Table(COLUMNS, [("a", "x")], labels=[0, 1])


def test_writes_return_new_tables_and_share_rows():
    t = table()
    dropped = t.without("id", "b")
    assert dropped.labels == (0, 2) and not dropped.has_range_labels
    assert dropped.rows[0] is t.rows[0]
    changed = t.with_cells("id", "b", "name", "w")
    assert changed.record(1) == {"id": "b", "name": "w"} and t.record(1)["name"] == "y"
    assert changed.rows[2] is t.rows[2]
    assert dropped.appended_renumbered(("d", "v")).labels == (0, 1, 2)
    assert dropped.appended_with_label(("d", "v"), 0).labels == (0, 2, 0)
    assert t.with_column("extra").record(0) == {"id": "a", "name": "x", "extra": None}


def test_set_at_label_overwrites_an_existing_label_or_appends():
    dropped = table().without("id", "a")  # labels 1, 2
    overwritten = dropped.set_at_label(2, ("d", "v"))
    assert overwritten.labels == (1, 2) and overwritten.record(1) == {"id": "d", "name": "v"}
    appended = table().set_at_label(3, ("d", "v"))
    assert appended.labels == (0, 1, 2, 3)
