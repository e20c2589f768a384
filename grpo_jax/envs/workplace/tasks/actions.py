"""Writes the multi-domain families share: a slot meeting, an improvement task, an email."""
from __future__ import annotations

import datetime as dt

from grpo_jax.envs.workplace import constants as C
from grpo_jax.envs.workplace.tasks.base import Call, call
from grpo_jax.envs.workplace.tasks.calendar import day_reads
from grpo_jax.envs.workplace.tasks.facts import Facts
from grpo_jax.envs.workplace.tasks.language import FRIDAY, next_weekday_date
from grpo_jax.envs.workplace.timestamps import format_date, format_timestamp

TASKS = "project_management_search_tasks"
SEND = "email_send_email"
CREATE_EVENT = "calendar_create_event"


def slot_meeting(facts: Facts, event_name: str, person: str) -> tuple[Call, list[Call]] | None:
    """The create call of a 30-minute meeting at tomorrow's first free slot, with the reads that
    show tomorrow's calendar."""
    tomorrow = facts.today + dt.timedelta(days=1)
    slot = facts.first_free_slot(tomorrow)
    reads = day_reads(facts, tomorrow)
    if slot is None or reads is None:
        return None
    return call(CREATE_EVENT, event_name=event_name, participant_email=person, event_start=format_timestamp(slot),
                duration=str(C.SLOT_MINUTES)), reads


def improve_task(facts: Facts, metric_words: str, person: str, board: str = "Front end") -> Call:
    """The Backlog task "Improve <metric>" due next Friday."""
    return call("project_management_create_task", task_name=f"Improve {metric_words}", assigned_to_email=person,
                list_name="Backlog", due_date=format_date(next_weekday_date(facts.today, FRIDAY)), board=board)


def send(recipient: str, message: tuple[str, str]) -> Call:
    """Sending `message` = (subject, body) to `recipient`."""
    return call(SEND, recipient=recipient, subject=message[0], body=message[1])


def message_fill(message: tuple[str, str], suffix: str = "") -> dict[str, str]:
    """Phrasing values of an email: {subject, body} (or {subject2, body2} with suffix "2")."""
    return {f"subject{suffix}": message[0], f"body{suffix}": message[1]}
