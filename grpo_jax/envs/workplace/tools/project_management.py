"""Project management toolkit: look up, search, create, delete and update tasks.

List and board names are case-sensitive value sets; a new assignee must already own a task.
NeMo Gym matches the assignee of a search exactly (case-insensitive) after checking it looks like
an address; WorkBench matches it as a substring.
"""
from __future__ import annotations

import re
from typing import Any

from grpo_jax.envs.workplace import constants as C
from grpo_jax.envs.workplace.sandbox import World
from grpo_jax.envs.workplace.table import Table
from grpo_jax.envs.workplace.tools.common import lower, next_padded_id, regex_matches, set_cells
from grpo_jax.envs.workplace.tools.spec import Param, ToolSpec

_ID, _NAME, _ASSIGNEE, _LIST, _DUE, _BOARD = C.TASK_COLUMNS
_EMAIL_PATTERN = re.compile(r"^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}$")
_BAD_LIST = "List not valid. Please choose from: 'Backlog', 'In Progress', 'In Review', 'Completed'."
_BAD_BOARD = "Board not valid. Please choose from: 'Back end', 'Front end', 'Design'."
_BAD_ASSIGNEE = "Assignee email not valid. Please choose from the list of team members."


def project_management_get_task_information_by_id(world: World, /, task_id: Any = None, field: Any = None) -> Any:
    if not task_id:
        return "Task ID not provided."
    if not field:
        return "Field not provided."
    tasks = world.tables[C.TASKS]
    position = tasks.find(_ID, task_id)
    if position is None:
        return "Task not found."
    record = tasks.record(position)
    return {field: record[field]} if field in record else "Field not found."


def project_management_search_tasks(world: World, /, task_name: Any = None, assigned_to_email: Any = None,
                                    list_name: Any = None, due_date: Any = None, board: Any = None) -> Any:
    if not any([task_name, assigned_to_email, list_name, due_date, board]):
        return "No search parameters provided."
    nemo = world.flavor is C.Flavor.NEMO
    if assigned_to_email and nemo and not _EMAIL_PATTERN.match(assigned_to_email):
        return "Invalid email format for assigned_to_email."
    tasks = world.tables[C.TASKS]
    positions = list(range(len(tasks)))
    for column, pattern in ((_NAME, task_name), (_ASSIGNEE, assigned_to_email), (_LIST, list_name),
                            (_DUE, due_date), (_BOARD, board)):
        if not pattern:
            continue
        values = [tasks.rows[p][tasks.column_index(column)] for p in positions]
        if column == _ASSIGNEE and nemo:
            wanted = lower(assigned_to_email)
            mask = [isinstance(value, str) and value.lower() == wanted for value in values]
        else:
            mask = regex_matches(values, pattern)
        positions = [p for p, keep in zip(positions, mask) if keep]
    return tasks.records(positions)


def project_management_create_task(world: World, /, task_name: Any = None, assigned_to_email: Any = None,
                                   list_name: Any = None, due_date: Any = None, board: Any = None) -> Any:
    if not all([task_name, assigned_to_email, list_name, due_date, board]):
        return "Missing task details."
    tasks = world.tables[C.TASKS]
    assigned_to_email = lower(assigned_to_email)
    if assigned_to_email not in _team(tasks):
        return _BAD_ASSIGNEE
    if list_name not in C.LIST_NAMES:
        return _BAD_LIST
    if board not in C.BOARDS:
        return _BAD_BOARD
    task_id = next_padded_id(tasks, _ID)
    row = (task_id, task_name, assigned_to_email, list_name, due_date, board)
    world.tables[C.TASKS] = tasks.appended_renumbered(row)
    return task_id


def project_management_delete_task(world: World, /, task_id: Any = None) -> Any:
    if not task_id:
        return "Task ID not provided."
    tasks = world.tables[C.TASKS]
    if not tasks.contains_value(_ID, task_id):
        return "Task not found."
    world.tables[C.TASKS] = tasks.without(_ID, task_id)
    return "Task deleted successfully."


def project_management_update_task(world: World, /, task_id: Any = None, field: Any = None,
                                   new_value: Any = None) -> Any:
    if not task_id or not field or not new_value:
        return "Task ID, field, or new value not provided."
    tasks = world.tables[C.TASKS]
    if field == _ASSIGNEE:
        new_value = lower(new_value)
    if field == _BOARD and new_value not in C.BOARDS:
        return _BAD_BOARD
    if field == _LIST and new_value not in C.LIST_NAMES:
        return _BAD_LIST
    if field == _ASSIGNEE and new_value not in _team(tasks):
        return _BAD_ASSIGNEE
    if not tasks.contains_value(_ID, task_id):
        return "Task not found."
    if field not in tasks.columns:
        return "Field not valid."
    world.tables[C.TASKS] = set_cells(tasks, _ID, task_id, field, new_value)
    return "Task updated successfully."


def _team(tasks: Table) -> set[str]:
    return {value.lower() for value in tasks.column_values(_ASSIGNEE) if isinstance(value, str)}


TOOLS = (
    ToolSpec("project_management_get_task_information_by_id", project_management_get_task_information_by_id,
             "Returns one field of the task with the given ID.", (
                 Param("task_id", "8-digit ID of the task", required=True),
                 Param("field", "The field to return: 'task_id', 'task_name', 'assigned_to_email', "
                                "'list_name', 'due_date' or 'board'", required=True),
             )),
    ToolSpec("project_management_search_tasks", project_management_search_tasks,
             "Lists every task matching all the given filters (give at least one).", (
                 Param("task_name", "Text to find in the task name"),
                 Param("assigned_to_email", "Email address of the assignee"),
                 Param("list_name", "List of the task, e.g. 'In Progress'"),
                 Param("due_date", "Due date. Format: YYYY-MM-DD"),
                 Param("board", "Board of the task, e.g. 'Design'"),
             )),
    ToolSpec("project_management_create_task", project_management_create_task,
             "Creates a task and returns its ID.", (
                 Param("task_name", "Name of the task", required=True),
                 Param("assigned_to_email", "Email address of the assignee", required=True),
                 Param("list_name", "One of 'Backlog', 'In Progress', 'In Review', 'Completed'", required=True),
                 Param("due_date", "Due date. Format: YYYY-MM-DD", required=True),
                 Param("board", "One of 'Back end', 'Front end', 'Design'", required=True),
             ), writes=True),
    ToolSpec("project_management_delete_task", project_management_delete_task,
             "Deletes the task with the given ID.", (
                 Param("task_id", "8-digit ID of the task", required=True),
             ), writes=True),
    ToolSpec("project_management_update_task", project_management_update_task,
             "Changes one field of a task.", (
                 Param("task_id", "8-digit ID of the task", required=True),
                 Param("field", "The field to change: 'task_name', 'assigned_to_email', 'list_name', "
                                "'due_date' or 'board'", required=True),
                 Param("new_value", "The new value of the field", required=True),
             ), writes=True),
)
