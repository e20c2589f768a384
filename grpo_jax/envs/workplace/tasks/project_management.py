"""Project management task families P1-P8.

Overdue means due before today; "not started" means in the Backlog; "working on" means In
Progress; the most urgent task is the Backlog task due first (families skip people whose
earliest due date is shared by two tasks, since then there is no single answer).
"""
from __future__ import annotations

import datetime as dt

from grpo_jax.envs.workplace import constants as C
from grpo_jax.envs.workplace.tasks.base import Call, Chooser, Family, Solution, call, lookups, stage, want_matches
from grpo_jax.envs.workplace.tasks.facts import Facts, Record
from grpo_jax.envs.workplace.tasks.language import first_name, spoken_date
from grpo_jax.envs.workplace.timestamps import format_date

SEARCH = "project_management_search_tasks"
UPDATE = "project_management_update_task"
NEW_TASK_DAYS_AHEAD = (1, 7)
MAX_MOVES = 3
MAX_CLOSURES = 4


def _tasks_of(facts: Facts, person: str, list_name: str) -> list[Record]:
    return [t for t in facts.tasks if t["assigned_to_email"] == person and t["list_name"] == list_name]


def _move(tasks: list[Record], field: str, value: str) -> list[Call]:
    return [call(UPDATE, task_id=t["task_id"], field=field, new_value=value) for t in tasks]


def _bulk(facts: Facts, choose: Chooser, want_empty: bool | None, list_name: str, field: str,
          value_of: str | None, overdue: bool) -> Solution | None:
    """Moves (or reassigns) one person's tasks from `list_name`; `value_of` names the new value
    (a list name) or, when None, a second person who receives them."""
    person = choose.one("person", facts.task_people)
    receiver = None if value_of else choose.one("receiver", [p for p in facts.task_people if p != person])
    tasks = _tasks_of(facts, person, list_name)
    if overdue:
        today = format_date(facts.today)
        tasks = [t for t in tasks if t["due_date"] < today]
    writes = _move(tasks, field, value_of or receiver)
    if not want_matches(want_empty, writes):
        return None
    search = call(SEARCH, assigned_to_email=person, list_name=list_name)
    fill = {"name": first_name(person)}
    if receiver:
        fill["name2"] = first_name(receiver)
    return Solution(fill, writes, [stage(*lookups(*[p for p in (person, receiver) if p])), stage(search)])


def in_progress_to_review(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    return _bulk(facts, choose, want_empty, "In Progress", "list_name", "In Review", False)


def create_backlog_task(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    person = choose.one("person", facts.task_people)
    name = choose.one("task_name", sorted({t["task_name"] for t in facts.tasks}))
    board = choose.one("board", C.BOARDS)
    due = facts.today + dt.timedelta(days=choose.integer("days_ahead", *NEW_TASK_DAYS_AHEAD))
    return Solution({"name": first_name(person), "task_name": name, "board": board, "date": spoken_date(due)},
                    [call("project_management_create_task", task_name=name, assigned_to_email=person,
                          list_name="Backlog", due_date=format_date(due), board=board)],
                    [stage(*lookups(person))])


def start_overdue_backlog(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    return _bulk(facts, choose, want_empty, "Backlog", "list_name", "In Progress", True)


def complete_in_review(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    return _bulk(facts, choose, None if want_empty is None else False, "In Review", "list_name", "Completed", False)


def reassign_in_progress(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    return _bulk(facts, choose, want_empty, "In Progress", "assigned_to_email", None, False)


def in_progress_to_backlog(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    return _bulk(facts, choose, want_empty, "In Progress", "list_name", "Backlog", False)


def reassign_overdue_backlog(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    return _bulk(facts, choose, want_empty, "Backlog", "assigned_to_email", None, True)


def reassign_most_urgent(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    person = choose.one("person", facts.task_people)
    receiver = choose.one("receiver", [p for p in facts.task_people if p != person])
    backlog = _tasks_of(facts, person, "Backlog")
    if not backlog:
        return None
    first_due = min(t["due_date"] for t in backlog)
    urgent = [t for t in backlog if t["due_date"] == first_due]
    if len(urgent) != 1:
        return None
    return Solution({"name": first_name(person), "name2": first_name(receiver)},
                    _move(urgent, "assigned_to_email", receiver),
                    [stage(*lookups(person, receiver)),
                     stage(call(SEARCH, assigned_to_email=person, list_name="Backlog"))])


FAMILIES = (
    Family("P1", "project_management", "X's In Progress tasks to In Review", (
        "Move all of {name}'s in-progress tasks to In Review.",
        "{name} has finished the work in progress; put those tasks in review.",
        "Shift every task {name} has in progress over to In Review.",
    ), in_progress_to_review, empty_share=0.6, max_writes=MAX_MOVES),
    Family("P2", "project_management", "create a Backlog task (board, name, assignee, due date)", (
        "Add a task called '{task_name}' to the {board} backlog for {name}, due {date}.",
        "Create a new {board} backlog task '{task_name}', assign it to {name} and set the due date to {date}.",
        "{name} should pick up '{task_name}' on the {board} board; add it to the backlog, due on {date}.",
    ), create_backlog_task),
    Family("P3", "project_management", "X's overdue Backlog tasks to In Progress", (
        "Move {name}'s overdue backlog tasks to In Progress.",
        "{name} has backlog tasks that are past due; start them by moving them to In Progress.",
        "Take every overdue task in {name}'s backlog and set it to In Progress.",
    ), start_overdue_backlog, empty_share=0.5, max_writes=MAX_MOVES),
    Family("P4", "project_management", "X's In Review tasks to Completed", (
        "Mark all of {name}'s tasks in review as Completed.",
        "I've reviewed everything {name} submitted; move their In Review tasks to Completed.",
        "Close out {name}'s tasks that are waiting in review.",
    ), complete_in_review, max_writes=MAX_CLOSURES),
    Family("P5", "project_management", "X is sick: their In Progress tasks to Y", (
        "{name} is off sick, so give their in-progress tasks to {name2}.",
        "Reassign every task {name} has in progress to {name2}.",
        "{name2} will cover for {name}: move {name}'s in-progress tasks to {name2}.",
    ), reassign_in_progress, empty_share=0.4, max_writes=MAX_MOVES),
    Family("P6", "project_management", "X is away: their unfinished tasks to Backlog", (
        "{name} is on leave; move the tasks they're working on back to the backlog.",
        "Put all of {name}'s in-progress tasks back in the Backlog.",
        "{name} is away this week, so send everything they have in progress back to the backlog.",
    ), in_progress_to_backlog, empty_share=0.3, max_writes=MAX_MOVES),
    Family("P7", "project_management", "X's overdue, unstarted tasks to Y", (
        "Give {name}'s overdue tasks that haven't been started to {name2}.",
        "{name2} has time to spare: hand them all of {name}'s overdue backlog tasks.",
        "Reassign {name}'s overdue, not-yet-started tasks to {name2}.",
    ), reassign_overdue_backlog, empty_share=0.3, max_writes=MAX_MOVES),
    Family("P8", "project_management", "X's most urgent task to Y", (
        "Give {name}'s most urgent backlog task to {name2}.",
        "Take the backlog task of {name}'s that is due soonest and reassign it to {name2}.",
        "{name2} should take over {name}'s most urgent task in the backlog.",
    ), reassign_most_urgent),
)
