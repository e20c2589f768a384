"""Analytics task families A1-A12, and the conditions the multi-domain families reuse.

"Since <date>" plots run from that date to the latest date in the data. A threshold condition
holds when the metric's daily value was above (below) the threshold on some day since the
date; growth is (latest - then) / then. Traffic sources are compared by their mean daily visits.
"""
from __future__ import annotations

import dataclasses
import datetime as dt

from grpo_jax.envs.workplace import constants as C
from grpo_jax.envs.workplace.tasks.base import Call, Chooser, Family, Solution, call, stage, want_matches
from grpo_jax.envs.workplace.tasks.facts import Facts
from grpo_jax.envs.workplace.tasks.language import (
    METRIC_TOOLS, METRIC_WORDS, WEEKDAYS, percent, source_metric, spoken_date,
)
from grpo_jax.envs.workplace.timestamps import format_date

PLOT = "analytics_create_plot"
TRAFFIC = "analytics_traffic_source_count"
GROWTH_THRESHOLDS = (0.05, 0.1, 0.2, 0.5)
WEEKS_BACK = (1, 2, 3, 4, 5, 6)
SOURCE_WEEKS_BACK = (2, 3, 4, 5, 6)
DAYS_BACK_IN_LAST_WEEK = (1, 2, 3, 4, 5, 6)
# The last few dates leave too short a series to plot "since" them.
MIN_DAYS_OF_HISTORY = 3


def plot(date_min: str, date_max: str, value: str, kind: str) -> Call:
    return call(PLOT, time_min=date_min, time_max=date_max, value_to_plot=value, plot_type=kind)


def metric_read(metric: str, date_min: str, date_max: str | None = None) -> Call:
    return call(METRIC_TOOLS[metric], time_min=date_min, time_max=date_max)


def _start_dates(facts: Facts) -> list[str]:
    return facts.visit_dates[:-MIN_DAYS_OF_HISTORY]


def _days_back(facts: Facts, days: int) -> str:
    return format_date(facts.today - dt.timedelta(days=days))


@dataclasses.dataclass(frozen=True)
class Condition:
    """A yes/no fact about the analytics, what to call to check it, and how to say it."""

    holds: bool
    reads: list[Call]
    fill: dict[str, str]
    metric: str
    date_min: str


def threshold_condition(facts: Facts, choose: Chooser, date_min: str | None = None) -> Condition | None:
    """"<metric> was more/less than <threshold> at some point since <date>"."""
    metric = choose.one("metric", C.METRICS)
    date_min = date_min or choose.one("date", _start_dates(facts))
    series = facts.metric_series(metric, date_min=date_min)
    if not series:
        return None
    values = sorted(series.values())
    # Like the reference: the minimum, median or maximum of the series, as a whole number >= 1.
    quantiles = (values[0], values[len(values) // 2], values[-1])
    threshold = choose.one("threshold", sorted({max(1, int(v)) for v in quantiles}))
    direction = choose.one("more_or_less", ["more", "less"])
    holds = any(v > threshold for v in values) if direction == "more" else any(v < threshold for v in values)
    unit = " seconds" if metric == "session_duration_seconds" else ""
    fill = {"metric": METRIC_WORDS[metric], "more_or_less": direction, "threshold": f"{threshold}{unit}",
            "date": spoken_date(date_min)}
    return Condition(holds, [metric_read(metric, date_min)], fill, metric, date_min)


def change_condition(facts: Facts, choose: Chooser, date_min: str, date_max: str | None = None,
                     metric: str | None = None) -> Condition | None:
    """"<metric> moved more than <x>% higher/lower from <date_min> to <date_max> (or the latest day)"."""
    metric = metric or choose.one("metric", C.METRICS)
    series = facts.metric_series(metric, date_min=date_min, date_max=date_max)
    last = date_max or facts.last_visit_date
    if not series.get(date_min) or last not in series:
        return None
    change = (series[last] - series[date_min]) / series[date_min]
    growth = choose.one("growth", GROWTH_THRESHOLDS)
    direction = choose.one("higher_or_lower", ["higher", "lower"])
    holds = change > growth if direction == "higher" else change < -growth
    fill = {"metric": METRIC_WORDS[metric], "growth": percent(growth), "higher_or_lower": direction,
            "date": spoken_date(date_min)}
    return Condition(holds, [metric_read(metric, date_min, date_max)], fill, metric, date_min)


def growth_race(facts: Facts, choose: Chooser) -> tuple[Condition, str] | None:
    """"<metric> grew more than <metric2> since <weekday>"; also returns metric2."""
    days = choose.one("days_back", DAYS_BACK_IN_LAST_WEEK)
    date_min = _days_back(facts, days)
    metric, metric2 = choose.several("metrics", C.METRICS, 2)
    growths = []
    for name in (metric, metric2):
        series = facts.metric_series(name, date_min=date_min)
        if not series.get(date_min):
            return None
        growths.append((series[facts.last_visit_date] - series[date_min]) / series[date_min])
    fill = {"metric": METRIC_WORDS[metric], "metric2": METRIC_WORDS[metric2],
            "weekday": WEEKDAYS[(facts.today - dt.timedelta(days=days)).weekday()]}
    reads = [metric_read(metric, date_min), metric_read(metric2, date_min)]
    return Condition(growths[0] > growths[1], reads, fill, metric, date_min), metric2


def chart_since(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    metric = choose.one("metric", C.METRICS)
    date_min = choose.one("date", _start_dates(facts))
    kind = choose.one("plot_type", C.PLOT_TYPES)
    return Solution({"metric": METRIC_WORDS[metric], "date": spoken_date(date_min), "plot_type": kind},
                    [plot(date_min, facts.last_visit_date, metric, kind)], [stage(metric_read(metric, date_min))])


def histogram_on_day(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    metric = choose.one("metric", C.METRICS)
    day = choose.one("date", facts.visit_dates)
    return Solution({"metric": METRIC_WORDS[metric], "date": spoken_date(day)}, [plot(day, day, metric, "histogram")])


def two_histograms(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    metrics = choose.several("metrics", C.METRICS, 2)
    first = choose.one("date", facts.visit_dates[:-1])
    last = choose.one("date2", [d for d in facts.visit_dates if d > first])
    return Solution({"metric": METRIC_WORDS[metrics[0]], "metric2": METRIC_WORDS[metrics[1]],
                     "date": spoken_date(first), "date2": spoken_date(last)},
                    [plot(first, last, m, "histogram") for m in metrics])


def _line_if(condition: Condition | None, facts: Facts, want_empty: bool | None, extra_fill: dict[str, object],
             date_max: str | None = None) -> Solution | None:
    if condition is None:
        return None
    end = date_max or facts.last_visit_date
    writes = [plot(condition.date_min, end, condition.metric, "line")] if condition.holds else []
    if not want_matches(want_empty, writes):
        return None
    return Solution({**condition.fill, **extra_fill}, writes, [stage(*condition.reads)])


def line_if_threshold(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    return _line_if(threshold_condition(facts, choose), facts, want_empty, {})


def two_bar_charts(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    metrics = choose.several("metrics", C.METRICS, 2)
    date_min = choose.one("date", _start_dates(facts))
    return Solution({"metric": METRIC_WORDS[metrics[0]], "metric2": METRIC_WORDS[metrics[1]],
                     "date": spoken_date(date_min)},
                    [plot(date_min, facts.last_visit_date, m, "bar") for m in metrics],
                    [stage(metric_read(metrics[0], date_min))])


def line_if_threshold_recent_weeks(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    weeks = choose.one("weeks", WEEKS_BACK)
    return _line_if(threshold_condition(facts, choose, _days_back(facts, 7 * weeks)), facts, want_empty,
                    {"weeks": weeks})


def line_if_changed_since_date(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    date_min = choose.one("date", _start_dates(facts))
    return _line_if(change_condition(facts, choose, date_min), facts, want_empty, {})


def line_if_changed_since_weekday(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    days = choose.one("days_back", DAYS_BACK_IN_LAST_WEEK)
    weekday = WEEKDAYS[(facts.today - dt.timedelta(days=days)).weekday()]
    return _line_if(change_condition(facts, choose, _days_back(facts, days)), facts, want_empty, {"weekday": weekday})


def line_if_week_over_week(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    days = choose.one("days_back", DAYS_BACK_IN_LAST_WEEK)
    recent = _days_back(facts, days)
    weekday = WEEKDAYS[(facts.today - dt.timedelta(days=days)).weekday()]
    condition = change_condition(facts, choose, _days_back(facts, days + 7), date_max=recent)
    return _line_if(condition, facts, want_empty, {"weekday": weekday}, date_max=recent)


def both_lines_if_grew_faster(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    race = growth_race(facts, choose)
    if race is None:
        return None
    condition, metric2 = race
    last = facts.last_visit_date
    writes = [plot(condition.date_min, last, m, "line") for m in (condition.metric, metric2)] if condition.holds else []
    if not want_matches(want_empty, writes):
        return None
    return Solution(condition.fill, writes, [stage(*condition.reads)])


def _mean_visits(facts: Facts, source: str, date_min: str) -> float:
    series = facts.source_series(source, date_min)
    return sum(series.values()) / len(series) if series else 0.0


def line_of_extreme_source(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    date_min = choose.one("date", _start_dates(facts))
    extreme = choose.one("most_or_least", ["most", "least"])
    means = {source: _mean_visits(facts, source, date_min) for source in C.TRAFFIC_SOURCES}
    ranked = sorted(means.values())
    if len(set(ranked)) < len(ranked):
        return None  # a tie has no single answer
    wanted = max(means, key=means.get) if extreme == "most" else min(means, key=means.get)
    reads = [call(TRAFFIC, time_min=date_min, traffic_source=s) for s in C.TRAFFIC_SOURCES]
    return Solution({"date": spoken_date(date_min), "most_or_least": extreme},
                    [plot(date_min, facts.last_visit_date, source_metric(wanted), "line")], [stage(*reads)])


def bars_if_source_won(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    weeks = choose.one("weeks", SOURCE_WEEKS_BACK)
    sources = choose.several("sources", C.TRAFFIC_SOURCES, 2)
    date_min = _days_back(facts, 7 * weeks)
    won = _mean_visits(facts, sources[0], date_min) > _mean_visits(facts, sources[1], date_min)
    writes = [plot(date_min, facts.last_visit_date, source_metric(s), "bar") for s in sources] if won else []
    if not want_matches(want_empty, writes):
        return None
    reads = [call(TRAFFIC, time_min=date_min, traffic_source=s) for s in sources]
    return Solution({"source": sources[0], "source2": sources[1], "weeks": weeks}, writes, [stage(*reads)])


FAMILIES = (
    Family("A1", "analytics", "chart of a given type for a metric since a date", (
        "Make a {plot_type} chart of {metric} since {date}.",
        "Plot {metric} from {date} onwards as a {plot_type} chart.",
        "I need a {plot_type} chart showing {metric} since {date}.",
    ), chart_since),
    Family("A2", "analytics", "histogram of a metric on one day", (
        "Plot the distribution of {metric} on {date}.",
        "Make a histogram of {metric} for {date}.",
        "Show me how {metric} was distributed on {date} with a histogram.",
    ), histogram_on_day),
    Family("A3", "analytics", "histograms of two metrics between two dates", (
        "Make histograms of {metric} and {metric2} between {date} and {date2}.",
        "Plot the distributions of {metric} and of {metric2} from {date} to {date2}.",
        "I need two histograms covering {date} to {date2}: first {metric}, then {metric2}.",
    ), two_histograms, max_writes=2),
    Family("A4", "analytics", "metric above/below a threshold since a date: line plot", (
        "If {metric} was {more_or_less} than {threshold} at any point since {date}, make a line plot of it since then.",
        "Was {metric} ever {more_or_less} than {threshold} since {date}? If so, plot it as a line chart from "
        "that date.",
        "Check whether {metric} went {more_or_less} than {threshold} at some point since {date}; if it did, "
        "draw a line plot of it since {date}.",
    ), line_if_threshold, empty_share=0.2),
    Family("A5", "analytics", "bar charts of two metrics since a date", (
        "Make bar charts of {metric} and {metric2} since {date}.",
        "Plot {metric} and then {metric2} since {date}, each as a bar chart.",
        "I need bar charts showing {metric} and {metric2} from {date} onwards.",
    ), two_bar_charts, max_writes=2),
    Family("A6", "analytics", "as A4, over the last N weeks", (
        "If {metric} was {more_or_less} than {threshold} at any time in the last {weeks} weeks, make a line plot "
        "of it over that period.",
        "Was {metric} {more_or_less} than {threshold} at some point in the past {weeks} weeks? If yes, plot it as "
        "a line chart for those weeks.",
        "Look at {metric} over the last {weeks} weeks; if it ever went {more_or_less} than {threshold}, draw a "
        "line plot of that period.",
    ), line_if_threshold_recent_weeks, empty_share=0.6),
    Family("A7", "analytics", "now vs a date differs by more than X%: line plot", (
        "If {metric} is now more than {growth} {higher_or_lower} than on {date}, make a line plot of it since {date}.",
        "Compare the latest {metric} with {date}: if it is over {growth} {higher_or_lower}, plot it as a line "
        "chart since then.",
        "Has {metric} gone {higher_or_lower} by more than {growth} since {date}? If so, draw a line plot of it "
        "from {date}.",
    ), line_if_changed_since_date, empty_share=0.5),
    Family("A8", "analytics", "as A7, relative to the last named weekday", (
        "If {metric} is now more than {growth} {higher_or_lower} than it was on {weekday}, make a line plot of "
        "it since {weekday}.",
        "Compare the latest {metric} with last {weekday}: if it has moved more than {growth} {higher_or_lower}, "
        "plot it as a line chart since then.",
        "Is {metric} over {growth} {higher_or_lower} than on {weekday}? If so, draw it as a line plot starting "
        "{weekday}.",
    ), line_if_changed_since_weekday, empty_share=0.8),
    Family("A9", "analytics", "a weekday vs the same day a week earlier: line plot over that week", (
        "If {metric} on {weekday} was more than {growth} {higher_or_lower} than on the {weekday} before, make a "
        "line plot of it between those two days.",
        "Compare {metric} on {weekday} with the previous {weekday}; if it was over {growth} {higher_or_lower}, "
        "plot that week as a line chart.",
        "Was {metric} on {weekday} more than {growth} {higher_or_lower} than a week earlier? If so, draw a line "
        "plot covering that week.",
    ), line_if_week_over_week, empty_share=0.5),
    Family("A10", "analytics", "metric A grew more than metric B since a weekday: line plots of both", (
        "Check how much {metric} has grown since {weekday}. If it grew more than {metric2}, make line plots of "
        "both since then.",
        "If {metric} has grown faster than {metric2} since {weekday}, plot both as line charts from {weekday}, "
        "{metric} first.",
        "Compare the percent growth of {metric} and {metric2} since {weekday}; if {metric} grew more, draw a "
        "line plot of each since then.",
    ), both_lines_if_grew_faster, empty_share=0.8, max_writes=2),
    Family("A11", "analytics", "line plot since a date of the most (least) visited traffic source", (
        "Make a line plot of our {most_or_least} popular traffic source since {date}.",
        "Which traffic source brought the {most_or_least} visits since {date}? Plot it as a line chart over "
        "that period.",
        "Plot the {most_or_least} common traffic source since {date} as a line chart.",
    ), line_of_extreme_source),
    Family("A12", "analytics", "source 1 beat source 2 over the last N weeks: bar charts of both", (
        "If we got more visits from {source} than from {source2} in the last {weeks} weeks, make bar charts of "
        "both over that period.",
        "Did {source} bring more traffic than {source2} over the past {weeks} weeks? If so, plot each of them "
        "as a bar chart for that period, {source} first.",
        "Compare {source} and {source2} traffic for the last {weeks} weeks; if {source} won, draw bar charts "
        "of both for those weeks.",
    ), bars_if_source_won, empty_share=0.6, max_writes=2),
)
