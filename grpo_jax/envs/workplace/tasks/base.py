"""The building blocks of task families.

A family is data (id, domain, phrasings, share of empty answers) plus one small function that
draws parameters from a sandbox and solves the task: it returns a `Solution` with the ground
truth (the state-changing calls, in order) and the reads an expert makes before writing. The
generator turns a Solution into a NeMo Gym row and an expert trajectory.
"""
from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from grpo_jax.envs.workplace import constants as C
from grpo_jax.envs.workplace.tasks.facts import Facts
from grpo_jax.envs.workplace.tasks.language import first_name
from grpo_jax.envs.workplace.tools import TOOLS_BY_NAME

Call = dict[str, Any]  # {"name": tool name, "arguments": {...}}
DIRECTORY_TOOL = "company_directory_find_email_address"
# How many read turns an expert may take: with one turn of writes and a final answer it stays
# within NeMo Gym's 6 model calls.
MAX_READ_TURNS = 4


def call(tool: str, /, **arguments: Any) -> Call:
    """A tool call with its arguments (None values dropped, as the server drops them)."""
    if tool not in TOOLS_BY_NAME:
        raise ValueError(f"unknown tool {tool!r}")
    return {"name": tool, "arguments": {k: v for k, v in arguments.items() if v is not None}}


class NoChoice(LookupError):
    """A family found nothing to choose from (e.g. no future events); the draw is abandoned."""


class Chooser:
    """Makes a family's choices: at random, or as given (to solve a task with known parameters).

    Every choice is recorded under its key; the record is the task's parameters, which with the
    family and the sandbox identify the task.
    """

    def __init__(self, rng: random.Random, given: Mapping[str, Any] | None = None):
        self.rng = rng
        self.given = dict(given or {})
        self.params: dict[str, Any] = {}

    def one(self, key: str, options: Sequence[Any]) -> Any:
        """One of `options`; raises NoChoice when there are none."""
        if key in self.given:
            value = self.given[key]
        elif options:
            value = self.rng.choice(options)
        else:
            raise NoChoice(key)
        self.params[key] = value
        return value

    def integer(self, key: str, low: int, high: int) -> int:
        """An integer in [low, high]."""
        value = int(self.given[key]) if key in self.given else self.rng.randint(low, high)
        self.params[key] = value
        return value

    def several(self, key: str, options: Sequence[Any], count: int) -> list[Any]:
        """`count` distinct options in a random order; raises NoChoice when there are too few."""
        if key in self.given:
            value = list(self.given[key])
        elif len(options) >= count:
            value = self.rng.sample(list(options), count)
        else:
            raise NoChoice(key)
        self.params[key] = value
        return value


@dataclasses.dataclass
class Solution:
    """One task instance (its parameters are the Chooser's record).

    fill: the values the phrasings are formatted with.
    writes: the ground truth, the state-changing calls in order (empty: change nothing).
    reads: the expert's reads before writing, as stages; a stage holds groups of calls that can
      start together (a group is one call, or the pages of one search, shown page by page).
    final: the expert's closing message when it differs from the default summary.
    """

    fill: dict[str, Any]
    writes: list[Call]
    reads: list[list[list[Call]]] = dataclasses.field(default_factory=list)
    final: str | None = None


Sampler = Callable[[Facts, Chooser, "bool | None"], "Solution | None"]


@dataclasses.dataclass(frozen=True)
class Family:
    """A task family: how to phrase it and how to draw and solve an instance.

    `sample(facts, choose, want_empty)` returns a Solution, or None when the draw did not work
    out (the generator draws again). want_empty=True asks for an instance whose answer is to
    change nothing, False for one that changes something, None for either; families that are
    never empty ignore it.
    """

    id: str
    domain: str
    ask: str
    phrasings: tuple[str, ...]
    sample: Sampler
    empty_share: float = 0.0
    max_writes: int = 1

    @property
    def category(self) -> str:
        return f"workplace_assistant_{self.domain}"

    def solve(self, facts: Facts, params: Mapping[str, Any]) -> Solution | None:
        """The instance with the given parameters (e.g. read off a task's text)."""
        try:
            return self.sample(facts, Chooser(random.Random(0), params), None)
        except NoChoice:
            return None


# ---------------------------------------------------------------------------------------------
# Expert reads.

def lookups(*emails: str) -> list[Call]:
    """Directory look-ups that reveal each person's address from their first name."""
    seen, calls = set(), []
    for email in emails:
        name = first_name(email)
        if name not in seen:
            seen.add(name)
            calls.append(call(DIRECTORY_TOOL, name=name))
    return calls


_LIST_KEYS = {
    "email_search_emails": ("emails", "email_id"),
    "calendar_search_events": ("events", "event_id"),
    "customer_relationship_manager_search_customers": ("customers", "customer_id"),
}


def paged_search(facts: Facts, tool_name: str, wanted: Iterable[str], **arguments: Any) -> list[Call] | None:
    """The search calls, page by page, until every wanted ID has been shown; None if some never is.

    Pages hold the default 5 results, so an expert only acts on IDs it has seen.
    """
    list_key, id_key = _LIST_KEYS[tool_name]
    missing = set(wanted)
    calls, page = [], C.DEFAULT_PAGE
    while True:
        args = dict(arguments, page=page) if page > C.DEFAULT_PAGE else dict(arguments)
        calls.append(call(tool_name, **args))
        result = facts.run(tool_name, **args)
        if isinstance(result, dict):
            rows, total_pages = result[list_key], result["pagination"]["total_pages"]
        elif isinstance(result, list):  # WorkBench: the first 5, no pages
            rows, total_pages = result, 1
        else:
            rows, total_pages = [], 0
        missing -= {row[id_key] for row in rows}
        if not missing:
            return calls
        if page >= total_pages:
            return None
        page += 1


def stage(*items: Call | list[Call] | None) -> list[list[Call]]:
    """A stage of reads from single calls and call groups (None items are skipped)."""
    return [item if isinstance(item, list) else [item] for item in items if item is not None]


def want_matches(want_empty: bool | None, writes: Sequence[Call]) -> bool:
    """Whether an instance has the emptiness the generator asked for (None: either)."""
    return want_empty is None or want_empty == (not writes)


def describe_writes(writes: Sequence[Call]) -> str:
    """A short closing message summarising what the expert did."""
    if not writes:
        return "I checked, and nothing needs to change, so I left everything as it is."
    counts: dict[str, int] = {}
    for write in writes:
        counts[write["name"]] = counts.get(write["name"], 0) + 1
    parts = [_ACTION_WORDS[name].format(n=n, s="" if n == 1 else "s") for name, n in counts.items()]
    return "Done: I " + _join(parts) + "."


_ACTION_WORDS: Mapping[str, str] = {
    "email_send_email": "sent {n} email{s}",
    "email_delete_email": "deleted {n} email{s}",
    "email_forward_email": "forwarded {n} email{s}",
    "email_reply_email": "replied to {n} email{s}",
    "calendar_create_event": "scheduled {n} event{s}",
    "calendar_delete_event": "cancelled {n} event{s}",
    "calendar_update_event": "updated {n} event{s}",
    "analytics_create_plot": "created {n} plot{s}",
    "project_management_create_task": "created {n} task{s}",
    "project_management_update_task": "updated {n} task{s}",
    "project_management_delete_task": "deleted {n} task{s}",
    "customer_relationship_manager_add_customer": "added {n} customer{s}",
    "customer_relationship_manager_update_customer": "updated {n} customer record{s}",
    "customer_relationship_manager_delete_customer": "deleted {n} customer record{s}",
}


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
