"""pandas.Timestamp-compatible parsing."""
from __future__ import annotations

import datetime as dt

import pytest

from grpo_jax.envs.workplace.timestamps import date_part, format_timestamp, is_valid_timestamp, parse_timestamp


@pytest.mark.parametrize("text, expected", [
    ("2023-12-01", dt.datetime(2023, 12, 1)),
    ("2023-12-01 13:30:00", dt.datetime(2023, 12, 1, 13, 30)),
    ("2023-12-01T13:30", dt.datetime(2023, 12, 1, 13, 30)),
    ("December 1 2023 1pm", dt.datetime(2023, 12, 1, 13)),
])
def test_accepts_what_pandas_accepts(text, expected):
    assert parse_timestamp(text) == expected


def test_now_words_use_the_given_clock():
    now = dt.datetime(2023, 11, 30, 23, 59)
    assert parse_timestamp("now", now) == now


@pytest.mark.parametrize("text", ["2023-11-31 09:00:00", "tomorrow-ish", "9999-01-01"])
def test_rejects_with_value_error(text):
    with pytest.raises(ValueError):
        parse_timestamp(text)
    assert not is_valid_timestamp(text)


@pytest.mark.parametrize("value", [True, [2023], {"y": 2023}])
def test_other_types_raise_type_error(value):
    with pytest.raises(TypeError):
        parse_timestamp(value)


def test_numbers_are_nanoseconds_since_the_epoch_and_formatting():
    assert parse_timestamp(0) == dt.datetime(1970, 1, 1)
    assert format_timestamp(dt.datetime(2023, 11, 30, 23, 59)) == "2023-11-30 23:59:00"
    assert date_part("2023-11-30 23:59:00") == "2023-11-30"
