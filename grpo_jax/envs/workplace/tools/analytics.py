"""Analytics toolkit: read-only visit statistics per day, and plots (the only analytics state).

Dates are compared as strings, like the reference (`df["date_of_visit"] >= time_min`); the
per-day results are keyed and ordered by date, like `groupby("date_of_visit")`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from grpo_jax.envs.workplace import constants as C
from grpo_jax.envs.workplace.sandbox import World
from grpo_jax.envs.workplace.tools.common import string_compare
from grpo_jax.envs.workplace.tools.spec import Param, ToolSpec

_DATE, _VISITOR, _PAGE_VIEWS, _SESSION_SECONDS, _SOURCE, _ENGAGED = C.ANALYTICS_COLUMNS


def analytics_get_visitor_information_by_id(world: World, /, visitor_id: Any = None) -> Any:
    if not visitor_id:
        return "Visitor ID not provided."
    analytics = world.sandbox.analytics
    visits = [record for record in analytics.records() if record[_VISITOR] == visitor_id]
    return visits if visits else "Visitor not found."


def analytics_create_plot(world: World, /, time_min: Any = None, time_max: Any = None,
                          value_to_plot: Any = None, plot_type: Any = None) -> Any:
    if not time_min:
        return "Start date not provided."
    if not time_max:
        return "End date not provided."
    if value_to_plot not in C.PLOT_VALUES:
        return "Value to plot must be one of " + ", ".join(f"'{value}'" for value in C.PLOT_VALUES)
    if plot_type not in C.PLOT_TYPES:
        return "Plot type must be one of 'bar', 'line', 'scatter', or 'histogram'"
    file_path = f"plots/{time_min}_{time_max}_{value_to_plot}_{plot_type}.png"
    plots = world.tables[C.PLOTS]
    world.tables[C.PLOTS] = plots.set_at_label(len(plots), (file_path,))
    return file_path


def analytics_total_visits_count(world: World, /, time_min: Any = None, time_max: Any = None) -> Any:
    return _per_day(world, time_min, time_max, _DATE, len)


def analytics_engaged_users_count(world: World, /, time_min: Any = None, time_max: Any = None) -> Any:
    return _per_day(world, time_min, time_max, _ENGAGED, lambda engaged: sum(map(bool, engaged)))


def analytics_traffic_source_count(world: World, /, time_min: Any = None, time_max: Any = None,
                                   traffic_source: Any = None) -> Any:
    if not traffic_source:
        return _per_day(world, time_min, time_max, _DATE, len)
    return _per_day(world, time_min, time_max, _SOURCE,
                    lambda sources: sum(int(source == traffic_source) for source in sources))


def analytics_get_average_session_duration(world: World, /, time_min: Any = None, time_max: Any = None) -> Any:
    return _per_day(world, time_min, time_max, _SESSION_SECONDS,
                    lambda seconds: sum(float(s) for s in seconds) / len(seconds))


def _per_day(world: World, time_min: Any, time_max: Any, column: str,
             aggregate: Callable[[list[Any]], Any]) -> dict[str, Any]:
    """`aggregate` of one column's values per day, for the days within [time_min, time_max]."""
    analytics = world.sandbox.analytics
    dates = analytics.column_values(_DATE)
    keep = [True] * len(analytics)
    if time_min:
        keep = string_compare(dates, time_min, keep_greater_or_equal=True)
    if time_max:
        below = string_compare(dates, time_max, keep_greater_or_equal=False)
        keep = [a and b for a, b in zip(keep, below)]
    by_day: dict[str, list[Any]] = {}
    for day, value, kept in zip(dates, analytics.column_values(column), keep):
        if kept:
            by_day.setdefault(day, []).append(value)
    return {day: aggregate(by_day[day]) for day in sorted(by_day)}


TOOLS = (
    ToolSpec("analytics_get_visitor_information_by_id", analytics_get_visitor_information_by_id,
             "Returns every recorded visit of one visitor.", (
                 Param("visitor_id", "ID of the visitor", required=True),
             )),
    ToolSpec("analytics_create_plot", analytics_create_plot,
             "Plots a website metric over a date range and returns the image path.", (
                 Param("time_min", "First date of the range. Format: YYYY-MM-DD", required=True),
                 Param("time_max", "Last date of the range. Format: YYYY-MM-DD", required=True),
                 Param("value_to_plot", "The metric: 'total_visits', 'session_duration_seconds', "
                                        "'user_engaged', 'visits_direct', 'visits_referral', "
                                        "'visits_search_engine' or 'visits_social_media'", required=True),
                 Param("plot_type", "The chart: 'bar', 'line', 'scatter' or 'histogram'", required=True),
             ), writes=True),
    ToolSpec("analytics_total_visits_count", analytics_total_visits_count,
             "Counts visits per day in a date range.", (
                 Param("time_min", "First date. Format: YYYY-MM-DD"),
                 Param("time_max", "Last date. Format: YYYY-MM-DD"),
             )),
    ToolSpec("analytics_engaged_users_count", analytics_engaged_users_count,
             "Counts engaged visitors per day in a date range.", (
                 Param("time_min", "First date. Format: YYYY-MM-DD"),
                 Param("time_max", "Last date. Format: YYYY-MM-DD"),
             )),
    ToolSpec("analytics_traffic_source_count", analytics_traffic_source_count,
             "Counts visits per day from one traffic source (all visits when no source is given).", (
                 Param("time_min", "First date. Format: YYYY-MM-DD"),
                 Param("time_max", "Last date. Format: YYYY-MM-DD"),
                 Param("traffic_source", "'direct', 'referral', 'search engine' or 'social media'"),
             )),
    ToolSpec("analytics_get_average_session_duration", analytics_get_average_session_duration,
             "Average session length in seconds per day in a date range.", (
                 Param("time_min", "First date. Format: YYYY-MM-DD"),
                 Param("time_max", "Last date. Format: YYYY-MM-DD"),
             )),
)
