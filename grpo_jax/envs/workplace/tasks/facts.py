"""What task families know about a sandbox: its rows as records, its people, its calendar gaps
and its metric series, computed once per sandbox.

Metric series come from the analytics tools themselves, so a task's condition is decided on
exactly the numbers an agent sees when it calls those tools.
"""
from __future__ import annotations

import datetime as dt
import functools
from collections import Counter
from typing import Any

from grpo_jax.envs.workplace import constants as C
from grpo_jax.envs.workplace.sandbox import Sandbox, World
from grpo_jax.envs.workplace.tasks.language import METRIC_TOOLS, first_name
from grpo_jax.envs.workplace.timestamps import format_date, parse_timestamp, to_datetime
from grpo_jax.envs.workplace.tools import TOOLS_BY_NAME

Record = dict[str, Any]


class Facts:
    """Read-only views of one sandbox for the task families."""

    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox
        self.world: World = sandbox.world()
        self._results: dict[tuple, Any] = {}
        self.now: dt.datetime = sandbox.now
        self.today: dt.date = sandbox.now.date()
        self.emails: list[Record] = sandbox.tables[C.EMAILS].records()
        self.events: list[Record] = sandbox.tables[C.EVENTS].records()
        self.tasks: list[Record] = sandbox.tables[C.TASKS].records()
        self.customers: list[Record] = sandbox.tables[C.CUSTOMERS].records()
        self.last_visit_date: str = sandbox.last_analytics_date
        self.visit_dates: list[str] = sorted(set(sandbox.analytics.column_values("date_of_visit")))
        first_names = Counter(first_name(address) for address in sandbox.directory)
        # People a task can name by first name: the directory finds exactly one address for them.
        self.people: list[str] = [a for a in sandbox.directory if first_names[first_name(a)] == 1
                                  and sum(first_name(a).lower() in b for b in sandbox.directory) == 1]
        self.email_senders: list[str] = sorted({e["sender/recipient"] for e in self.emails} & set(self.people))
        self.task_people: list[str] = sorted({t["assigned_to_email"] for t in self.tasks} & set(self.people))
        self.sales_reps: list[str] = sorted({c["assigned_to_email"] for c in self.customers} & set(self.people))
        name_counts = Counter(c["customer_name"] for c in self.customers)
        self.unique_customers: list[Record] = [c for c in self.customers if name_counts[c["customer_name"]] == 1]

    @functools.cached_property
    def event_names(self) -> list[str]:
        return sorted({e["event_name"] for e in self.events if isinstance(e["event_name"], str)})

    @functools.cached_property
    def email_subjects(self) -> list[str]:
        return sorted({e["subject"] for e in self.emails if isinstance(e["subject"], str)})

    def run(self, tool_name: str, **arguments: Any) -> Any:
        """The result of a read-only tool on the sandbox's initial state (memoised; do not mutate)."""
        key = (tool_name, tuple(sorted(arguments.items())))
        if key not in self._results:
            self._results[key] = TOOLS_BY_NAME[tool_name].function(self.world, **arguments)
        return self._results[key]

    def metric_series(self, metric: str, date_min: str | None = None, date_max: str | None = None) -> dict[str, float]:
        """{date: value} of a metric as its analytics tool reports it."""
        return self.run(METRIC_TOOLS[metric], time_min=date_min, time_max=date_max)

    def source_series(self, source: str, date_min: str | None = None) -> dict[str, int]:
        return self.run("analytics_traffic_source_count", time_min=date_min, traffic_source=source)

    def events_on(self, day: dt.date) -> list[Record]:
        """The day's events in start order."""
        prefix = format_date(day)
        return sorted((e for e in self.events if str(e["event_start"]).startswith(prefix)),
                      key=lambda e: e["event_start"])

    def future_events(self) -> list[Record]:
        """Events starting after now, in start order."""
        return sorted((e for e in self.events if _start(e) is not None and _start(e) > self.now),
                      key=lambda e: e["event_start"])

    def first_free_slot(self, day: dt.date, minutes: int = C.SLOT_MINUTES) -> dt.datetime | None:
        """The earliest :00/:30 start on `day` where a meeting of `minutes` fits within working
        hours without overlapping an event."""
        busy = []
        for event in self.events_on(day):
            start = _start(event)
            if start is not None and str(event["duration"]).isdigit():
                busy.append((start, start + dt.timedelta(minutes=int(event["duration"]))))
        start = dt.datetime.combine(day, dt.time(C.WORKDAY_START_HOUR))
        closing = dt.datetime.combine(day, dt.time(C.WORKDAY_END_HOUR))
        length = dt.timedelta(minutes=minutes)
        while start + length <= closing:
            if all(end <= start or begin >= start + length for begin, end in busy):
                return start
            start += dt.timedelta(minutes=C.SLOT_MINUTES)
        return None

    def overdue_tasks(self, assignee: str, *, lists: tuple[str, ...] | None = None) -> list[Record]:
        """Tasks of `assignee` due before today and not Completed (or within `lists`)."""
        today = format_date(self.today)
        return [t for t in self.tasks if t["assigned_to_email"] == assignee and t["due_date"] < today
                and (t["list_name"] in lists if lists else t["list_name"] != "Completed")]


def _start(event: Record) -> dt.datetime | None:
    try:
        return to_datetime(event["event_start"]) if isinstance(event["event_start"], str) else parse_timestamp(
            event["event_start"])
    except (TypeError, ValueError):
        return None


@functools.lru_cache(maxsize=16)
def facts_of(sandbox: Sandbox) -> Facts:
    """The Facts of a sandbox, built once."""
    return Facts(sandbox)
