"""Analytics tools: per-day statistics (read-only) and plots (the analytics state)."""
from __future__ import annotations

import pytest

from grpo_jax.envs.workplace import constants as C
from grpo_jax.envs.workplace.tools.analytics import (
    analytics_create_plot, analytics_engaged_users_count, analytics_get_average_session_duration,
    analytics_get_visitor_information_by_id, analytics_total_visits_count, analytics_traffic_source_count,
)


def test_visitor_information(tiny):
    world = tiny.world()
    visits = analytics_get_visitor_information_by_id(world, "0001")
    assert [v["date_of_visit"] for v in visits] == ["2023-11-27", "2023-11-28"]
    assert visits[0]["user_engaged"] is True
    assert analytics_get_visitor_information_by_id(world) == "Visitor ID not provided."
    assert analytics_get_visitor_information_by_id(world, "9999") == "Visitor not found."


def test_per_day_statistics_compare_dates_as_text(tiny):
    world = tiny.world()
    assert analytics_total_visits_count(world) == {"2023-11-27": 2, "2023-11-28": 1, "2023-11-29": 1}
    assert analytics_total_visits_count(world, "2023-11-28", "2023-11-28") == {"2023-11-28": 1}
    assert analytics_engaged_users_count(world, "2023-11-27") == {"2023-11-27": 1, "2023-11-28": 1, "2023-11-29": 0}
    assert analytics_traffic_source_count(world, traffic_source="direct") == {"2023-11-27": 1, "2023-11-28": 1,
                                                                             "2023-11-29": 0}
    assert analytics_traffic_source_count(world, time_max="2023-11-27") == {"2023-11-27": 2}
    assert analytics_get_average_session_duration(world, time_max="2023-11-27") == {"2023-11-27": 20.0}
    assert analytics_total_visits_count(world, "2024-01-01") == {}
    with pytest.raises(TypeError):
        analytics_total_visits_count(world, 20231127)


def test_create_plot_appends_the_path(tiny):
    world = tiny.world()
    path = analytics_create_plot(world, "2023-11-01", "2023-11-29", "visits_direct", "bar")
    assert path == "plots/2023-11-01_2023-11-29_visits_direct_bar.png"
    assert world.tables[C.PLOTS].rows == ((path,),)


@pytest.mark.parametrize("args, message", [
    ((None, "b", "total_visits", "bar"), "Start date not provided."),
    (("a", None, "total_visits", "bar"), "End date not provided."),
    (("a", "b", "visits", "bar"), "Value to plot must be one of 'total_visits'"),
    (("a", "b", "total_visits", "Bar"), "Plot type must be one of 'bar', 'line', 'scatter', or 'histogram'"),
])
def test_create_plot_rejects(tiny, args, message):
    world = tiny.world()
    assert analytics_create_plot(world, *args).startswith(message)
    assert len(world.tables[C.PLOTS]) == 0
