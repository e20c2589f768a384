"""How tasks talk about dates, times, durations, metrics and people."""
from __future__ import annotations

import datetime as dt

METRIC_WORDS = {
    "total_visits": "total visits",
    "session_duration_seconds": "average session duration",
    "user_engaged": "engaged users",
}
# The analytics tool that returns each metric per day.
METRIC_TOOLS = {
    "total_visits": "analytics_total_visits_count",
    "session_duration_seconds": "analytics_get_average_session_duration",
    "user_engaged": "analytics_engaged_users_count",
}
DURATION_WORDS = {30: "30-minute", 60: "one-hour", 90: "90-minute", 120: "two-hour"}
DELAY_WORDS = {30: "30 minutes", 60: "an hour", 90: "an hour and a half", 120: "two hours"}


def spoken_date(day: dt.date | str) -> str:
    """"December 1" for 2023-12-01."""
    if isinstance(day, str):
        day = dt.date.fromisoformat(day[:10])
    return f"{day:%B} {day.day}"


def spoken_time(clock: dt.time | str) -> str:
    """"9am", "1:30pm" for 09:00 and 13:30."""
    if isinstance(clock, str):
        clock = dt.time.fromisoformat(clock)
    hour = clock.hour % 12 or 12
    suffix = "am" if clock.hour < 12 else "pm"
    return f"{hour}{suffix}" if clock.minute == 0 else f"{hour}:{clock.minute:02d}{suffix}"


def first_name(email: str) -> str:
    """"Priya" for priya.raman@larkspur.co: how tasks name people."""
    return email.split("@")[0].split(".")[0].capitalize()


def source_metric(source: str) -> str:
    """The plot value of a traffic source: "visits_search_engine" for "search engine"."""
    return "visits_" + source.replace(" ", "_")


def percent(fraction: float) -> str:
    """"5%" for 0.05."""
    return f"{round(fraction * 100)}%"


def next_weekday_date(today: dt.date, weekday: int, weeks_ahead: int = 1) -> dt.date:
    """"Next Friday" as the reference computes it: the given weekday of the following week."""
    return today + dt.timedelta(days=7 * weeks_ahead + (weekday - today.weekday()))


WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
FRIDAY = WEEKDAYS.index("Friday")
