"""Project management tools: normal behaviour and every error path."""
from __future__ import annotations

import pytest

from grpo_jax.envs.workplace import constants as C
from grpo_jax.envs.workplace.tools.project_management import (
    project_management_create_task, project_management_delete_task, project_management_get_task_information_by_id,
    project_management_search_tasks, project_management_update_task,
)
from tests.envs.tiny_sandbox import ALICE, BOB


def test_get_task_information(tiny):
    world = tiny.world()
    assert project_management_get_task_information_by_id(world, "00000001", "board") == {"board": "Back end"}
    assert project_management_get_task_information_by_id(world) == "Task ID not provided."
    assert project_management_get_task_information_by_id(world, "00000001") == "Field not provided."
    assert project_management_get_task_information_by_id(world, "00000009", "board") == "Task not found."
    assert project_management_get_task_information_by_id(world, "00000001", "owner") == "Field not found."


def test_search_tasks(tiny, tiny_workbench):
    world = tiny.world()
    found = project_management_search_tasks(world, assigned_to_email=ALICE.upper())
    assert [t["task_id"] for t in found] == ["00000003", "00000000"]
    assert [t["task_id"] for t in project_management_search_tasks(world, list_name="in review")] == ["00000000"]
    assert project_management_search_tasks(world, board="Front", due_date="2023-11-28")[0]["task_id"] == "00000003"
    assert project_management_search_tasks(world, task_name="nothing like it") == []
    assert project_management_search_tasks(world) == "No search parameters provided."
    assert project_management_search_tasks(world, assigned_to_email="alice") == \
        "Invalid email format for assigned_to_email."
    # WorkBench matches the assignee as a substring.
    assert len(project_management_search_tasks(tiny_workbench.world(), assigned_to_email="alice")) == 2


def test_create_task_renumbers_labels(tiny):
    world = tiny.world()
    world.tables[C.TASKS] = world.tables[C.TASKS].without("task_id", "00000003")
    task_id = project_management_create_task(world, "Write docs", BOB.upper(), "Backlog", "2023-12-08", "Design")
    assert task_id == "00000003"
    table = world.tables[C.TASKS]
    assert table.rows[-1] == ("00000003", "Write docs", BOB, "Backlog", "2023-12-08", "Design")
    assert table.has_range_labels


@pytest.mark.parametrize("args, message", [
    (("x", BOB, "Backlog", "2023-12-08", None), "Missing task details."),
    (("x", "zed@example.com", "Backlog", "2023-12-08", "Design"), "Assignee email not valid."),
    (("x", BOB, "backlog", "2023-12-08", "Design"), "List not valid."),
    (("x", BOB, "Backlog", "2023-12-08", "design"), "Board not valid."),
])
def test_create_task_rejects(tiny, args, message):
    world = tiny.world()
    assert project_management_create_task(world, *args).startswith(message)
    assert world.tables[C.TASKS] is tiny.tables[C.TASKS]


def test_delete_task(tiny):
    world = tiny.world()
    assert project_management_delete_task(world, "00000001") == "Task deleted successfully."
    assert project_management_delete_task(world, "00000001") == "Task not found."
    assert project_management_delete_task(world) == "Task ID not provided."


def test_update_task(tiny):
    world = tiny.world()
    assert project_management_update_task(world, "00000001", "assigned_to_email", ALICE.upper()) == \
        "Task updated successfully."
    assert world.tables[C.TASKS].record(1)["assigned_to_email"] == ALICE
    assert project_management_update_task(world, "00000001", "list_name") == \
        "Task ID, field, or new value not provided."
    assert project_management_update_task(world, "00000001", "board", "UI").startswith("Board not valid.")
    assert project_management_update_task(world, "00000001", "list_name", "Done").startswith("List not valid.")
    assert project_management_update_task(world, "00000001", "assigned_to_email", "zed@example.com").startswith(
        "Assignee email not valid.")
    assert project_management_update_task(world, "00000009", "list_name", "Backlog") == "Task not found."
    assert project_management_update_task(world, "00000001", "priority", "high") == "Field not valid."
    with pytest.raises(AttributeError):
        project_management_update_task(world, "00000001", "assigned_to_email", 7)
