"""Timestamp parsing with the behaviour of `pandas.Timestamp(value)`, which the reference tools
use to validate and compare times, without depending on pandas.

Accepted: ISO 8601 strings ("2023-12-01", "2023-12-01 13:00:00", "2023-12-01T13:00"), the free
forms dateutil understands ("December 1 2023 1pm"), "now"/"today", and numbers (nanoseconds since
the epoch, as pandas reads them). Unparseable strings raise ValueError, like pandas; values of
other types raise TypeError.
"""
from __future__ import annotations

import datetime as dt

from dateutil import parser as dateutil_parser

from grpo_jax.envs.workplace.constants import DATE_FORMAT, TIMESTAMP_FORMAT

# pandas stores nanoseconds in an int64, so its timestamps only span these years.
PANDAS_MIN_YEAR = 1678
PANDAS_MAX_YEAR = 2261
_NANOSECONDS_PER_MICROSECOND = 1000
_EPOCH = dt.datetime(1970, 1, 1)
_RELATIVE_WORDS = ("now", "today")


def parse_timestamp(value: object, now: dt.datetime | None = None) -> dt.datetime:
    """Parses `value` as pandas.Timestamp would; `now` answers "now" and "today"."""
    if isinstance(value, bool):
        raise TypeError(f"Cannot convert input [{value}] of type {type(value)} to Timestamp")
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, (int, float)):
        return _EPOCH + dt.timedelta(microseconds=value / _NANOSECONDS_PER_MICROSECOND)
    if not isinstance(value, str):
        raise TypeError(f"Cannot convert input [{value}] of type {type(value)} to Timestamp")
    text = value.strip()
    if text.lower() in _RELATIVE_WORDS:
        return now or dt.datetime.now()
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        try:
            parsed = dateutil_parser.parse(text)
        except (ValueError, OverflowError) as error:
            raise ValueError(f"could not convert string to Timestamp: {value!r}") from error
    if not PANDAS_MIN_YEAR <= parsed.year <= PANDAS_MAX_YEAR:
        raise ValueError(f"Out of bounds nanosecond timestamp: {value!r}")
    return parsed


def is_valid_timestamp(value: object) -> bool:
    """True when pandas.Timestamp(value) would not raise ValueError or TypeError."""
    try:
        parse_timestamp(value)
    except (ValueError, TypeError):
        return False
    return True


def to_datetime(text: str) -> dt.datetime:
    """Parses a sandbox value already known to be "YYYY-MM-DD[ HH:MM:SS]"."""
    return dt.datetime.fromisoformat(text)


def format_timestamp(moment: dt.datetime) -> str:
    """The sandbox's timestamp text, e.g. "2023-11-30 23:59:00" (str(pd.Timestamp))."""
    return moment.strftime(TIMESTAMP_FORMAT)


def format_date(day: dt.date) -> str:
    """The sandbox's date text, e.g. "2023-11-30"."""
    return day.strftime(DATE_FORMAT)


def date_part(text: str) -> str:
    """"2023-11-30" from "2023-11-30 23:59:00" (or from "2023-11-30")."""
    return text[:len("YYYY-MM-DD")]
