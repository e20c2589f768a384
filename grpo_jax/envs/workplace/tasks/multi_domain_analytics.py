"""Multi-domain task families driven by the analytics: M10-M15 and M17-M21.

Each checks an analytics condition (a metric above or below a threshold since a date, or one
metric growing faster than another) and then emails, books a slot meeting, creates an
improvement task, or deletes / hands over a rep's CRM leads; some have an "otherwise" branch.
"""
from __future__ import annotations

from collections import Counter

from grpo_jax.envs.workplace import constants as C
from grpo_jax.envs.workplace.tasks.actions import TASKS, improve_task, message_fill, send, slot_meeting
from grpo_jax.envs.workplace.tasks.analytics import growth_race, threshold_condition
from grpo_jax.envs.workplace.tasks.base import Call, Chooser, Family, Solution, call, lookups, stage, want_matches
from grpo_jax.envs.workplace.tasks.crm import leads_of, search_for
from grpo_jax.envs.workplace.tasks.facts import Facts
from grpo_jax.envs.workplace.tasks.language import first_name


def email_if_threshold(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    condition = threshold_condition(facts, choose)
    recipient = choose.one("recipient", facts.people)
    if condition is None:
        return None
    fill = condition.fill
    message = (f"Question about {fill['metric']}",
               f"I noticed {fill['metric']} was {fill['more_or_less']} than {fill['threshold']} recently - "
               "could you look into it?")
    writes = [send(recipient, message)] if condition.holds else []
    if not want_matches(want_empty, writes):
        return None
    return Solution({**fill, "recipient": recipient, **message_fill(message)}, writes, [stage(*condition.reads)])


def meet_if_threshold(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    condition = threshold_condition(facts, choose)
    person = choose.one("person", facts.people)
    if condition is None:
        return None
    event_name = f"{condition.fill['metric']} review"
    meeting = slot_meeting(facts, event_name, person)
    if meeting is None or not want_matches(want_empty, [meeting[0]] if condition.holds else []):
        return None
    return Solution({**condition.fill, "name": first_name(person), "event_name": event_name},
                    [meeting[0]] if condition.holds else [],
                    [stage(*lookups(person), *condition.reads), stage(meeting[1] if condition.holds else None)])


def task_if_threshold(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    condition = threshold_condition(facts, choose)
    person = choose.one("person", facts.task_people)
    if condition is None:
        return None
    writes = [improve_task(facts, condition.fill["metric"], person)] if condition.holds else []
    if not want_matches(want_empty, writes):
        return None
    return Solution({**condition.fill, "name": first_name(person)}, writes,
                    [stage(*lookups(person), *condition.reads)])


def task_for_top_finisher_if_threshold(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    condition = threshold_condition(facts, choose)
    board = choose.one("board", C.BOARDS)
    done = Counter(t["assigned_to_email"] for t in facts.tasks if t["list_name"] == "Completed" and t["board"] == board)
    ranked = done.most_common(2)
    if condition is None or not ranked or (len(ranked) == 2 and ranked[0][1] == ranked[1][1]):
        return None  # no single top finisher on this board
    writes = [improve_task(facts, condition.fill["metric"], ranked[0][0], board)] if condition.holds else []
    if not want_matches(want_empty, writes):
        return None
    finished = call(TASKS, list_name="Completed", board=board)
    return Solution({**condition.fill, "board": board}, writes, [stage(*condition.reads, finished)])


def task_if_grew_faster(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    race = growth_race(facts, choose)
    person = choose.one("person", facts.task_people)
    if race is None:
        return None
    condition, _ = race
    writes = [improve_task(facts, condition.fill["metric2"], person)] if condition.holds else []
    if not want_matches(want_empty, writes):
        return None
    return Solution({**condition.fill, "name": first_name(person)}, writes, [stage(*lookups(person), *condition.reads)])


def _lead_deletions(facts: Facts, rep: str) -> tuple[list[Call], list[Call] | None]:
    leads = leads_of(facts, rep)
    writes = [call("customer_relationship_manager_delete_customer", customer_id=c["customer_id"]) for c in leads]
    return writes, search_for(facts, leads, assigned_to_email=rep, status="Lead")


def delete_leads_if_threshold(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    condition = threshold_condition(facts, choose)
    rep = choose.one("rep", facts.sales_reps)
    if condition is None:
        return None
    deletions, reads = _lead_deletions(facts, rep)
    writes = deletions if condition.holds else []
    if not want_matches(want_empty, writes) or reads is None:
        return None
    return Solution({**condition.fill, "name": first_name(rep)}, writes,
                    [stage(*lookups(rep), *condition.reads), stage(reads if writes else None)])


def _stable_message(metric_words: str) -> tuple[str, str]:
    return f"Steady {metric_words}", f"I noticed {metric_words} has been stable - nice work!"


def task_or_email_if_threshold(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    condition = threshold_condition(facts, choose)
    person = choose.one("person", facts.task_people)
    if condition is None:
        return None
    stable = _stable_message(condition.fill["metric"])
    writes = [improve_task(facts, condition.fill["metric"], person)] if condition.holds else [send(person, stable)]
    return Solution({**condition.fill, "name": first_name(person), **message_fill(stable)}, writes,
                    [stage(*lookups(person), *condition.reads)])


def task_and_meeting_if_grew_faster(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    race = growth_race(facts, choose)
    person = choose.one("person", facts.task_people)
    if race is None:
        return None
    condition, _ = race
    event_name = f"{condition.fill['metric']} discussion"
    meeting = slot_meeting(facts, event_name, person)
    if meeting is None:
        return None
    writes = [improve_task(facts, condition.fill["metric2"], person), meeting[0]] if condition.holds else []
    if not want_matches(want_empty, writes):
        return None
    return Solution({**condition.fill, "name": first_name(person), "event_name": event_name}, writes,
                    [stage(*lookups(person), *condition.reads), stage(meeting[1] if writes else None)])


def delete_leads_or_email(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    condition = threshold_condition(facts, choose)
    rep = choose.one("rep", facts.sales_reps)
    if condition is None:
        return None
    metric = condition.fill["metric"]
    done = ("Lead generation update",
            f"{metric.capitalize()} looks healthy, so no new leads are needed from you for now.")
    more = ("Lead generation update", f"We need more leads to lift {metric} - let's plan next steps.")
    deletions, reads = _lead_deletions(facts, rep)
    if reads is None:
        return None
    writes = deletions + [send(rep, done)] if condition.holds else [send(rep, more)]
    return Solution({**condition.fill, "name": first_name(rep), **message_fill(done), "body2": more[1]}, writes,
                    [stage(*lookups(rep), *condition.reads), stage(reads if condition.holds else None)])


def task_meeting_or_email(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    condition = threshold_condition(facts, choose)
    person = choose.one("person", facts.task_people)
    if condition is None:
        return None
    event_name = f"{condition.fill['metric']} discussion"
    meeting = slot_meeting(facts, event_name, person)
    if meeting is None:
        return None
    stable = _stable_message(condition.fill["metric"])
    writes = ([improve_task(facts, condition.fill["metric"], person), meeting[0]] if condition.holds
              else [send(person, stable)])
    return Solution({**condition.fill, "name": first_name(person), "event_name": event_name, **message_fill(stable)},
                    writes, [stage(*lookups(person), *condition.reads), stage(meeting[1] if condition.holds else None)])


def task_meeting_or_hand_over_leads(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    condition = threshold_condition(facts, choose)
    person = choose.one("person", facts.task_people)
    rep = choose.one("rep", [r for r in facts.sales_reps if r != person])
    if condition is None:
        return None
    metric = condition.fill["metric"]
    event_name = f"{metric} discussion"
    meeting = slot_meeting(facts, event_name, person)
    leads = leads_of(facts, rep)
    lead_reads = search_for(facts, leads, assigned_to_email=rep, status="Lead")
    if meeting is None or lead_reads is None:
        return None
    handed = ("New leads for you", f"{metric.capitalize()} looks good, so I've passed some leads to you.")
    if condition.holds:
        writes, second = [improve_task(facts, metric, person), meeting[0]], meeting[1]
    else:
        writes = [call("customer_relationship_manager_update_customer", customer_id=c["customer_id"],
                       field="assigned_to_email", new_value=person) for c in leads] + [send(person, handed)]
        second = lead_reads
    return Solution({**condition.fill, "name": first_name(person), "name2": first_name(rep), "event_name": event_name,
                     **message_fill(handed)}, writes,
                    [stage(*lookups(person, rep), *condition.reads), stage(second)])


_IF = "If {metric} was {more_or_less} than {threshold} at any point since {date}"
_CHECK = "Check whether {metric} went {more_or_less} than {threshold} at some point since {date}"
_WAS = "Was {metric} ever {more_or_less} than {threshold} since {date}?"
_TASK = "a backlog task 'Improve {metric}' on the Front end board due next Friday"
_BOARD_TASK = "a backlog task 'Improve {metric}' on the {board} board due next Friday"
_SLOT = "a 30-minute '{event_name}' at my first free slot tomorrow"

FAMILIES = (
    Family("M10", "multi_domain", "analytics condition: email a given address", (
        _IF + ", email {recipient} with the subject '{subject}' and the message '{body}'",
        _CHECK + ". If it did, send {recipient} an email titled '{subject}' saying '{body}'",
        _WAS + " If so, write to {recipient}: subject '{subject}', body '{body}'",
    ), email_if_threshold, empty_share=0.2),
    Family("M11", "multi_domain", "analytics condition: slot meeting with X", (
        _IF + ", book " + _SLOT + " with {name}.",
        _CHECK + ". If it did, schedule " + _SLOT + " with {name}.",
        _WAS + " If so, put " + _SLOT + " with {name}.",
    ), meet_if_threshold),
    Family("M12", "multi_domain", "analytics condition: improvement task for X", (
        _IF + ", create " + _TASK + " for {name}.",
        _CHECK + ". If it did, add " + _TASK + " assigned to {name}.",
        _WAS + " If so, give {name} " + _TASK + " please.",
    ), task_if_threshold, empty_share=0.3),
    Family("M13", "multi_domain", "analytics condition: improvement task for a board's top finisher", (
        _IF + ", create " + _BOARD_TASK + " for whoever has completed the most {board} tasks.",
        _CHECK + ". If it did, assign " + _BOARD_TASK + " to the person with the most completed {board} tasks.",
        _WAS + " If so, the colleague who finished the most {board} tasks gets " + _BOARD_TASK + " please.",
    ), task_for_top_finisher_if_threshold, empty_share=0.3),
    Family("M14", "multi_domain", "metric A grew more than metric B: improvement task for X", (
        "If {metric} has grown more than {metric2} since {weekday}, create a backlog task 'Improve {metric2}' "
        "for {name} on the Front end board, due next Friday.",
        "Compare the percent growth of {metric} and {metric2} since {weekday}. If {metric} grew more, give "
        "{name} a Front end backlog task 'Improve {metric2}' due next Friday.",
        "Has {metric} outgrown {metric2} since {weekday}? If so, add 'Improve {metric2}' to the Front end "
        "backlog for {name}, due next Friday.",
    ), task_if_grew_faster, empty_share=0.6),
    Family("M15", "multi_domain", "analytics condition: delete all of a rep's Leads", (
        _IF + ", delete all of {name}'s leads from the CRM.",
        _CHECK + ". If it did, remove every lead assigned to {name} in the CRM.",
        _WAS + " If so, clear out {name}'s leads in the CRM.",
    ), delete_leads_if_threshold, empty_share=0.1, max_writes=11),
    Family("M17", "multi_domain", "analytics condition: task, else a stable-metric email", (
        _IF + ", create " + _TASK + " for {name}; otherwise email {name} '{body}' with the subject '{subject}'.",
        _CHECK + ". If it did, give {name} " + _TASK + ". If not, send {name} an email titled '{subject}' saying "
        "'{body}'",
        _WAS + " If yes, add " + _TASK + " assigned to {name}; if no, email them '{subject}': '{body}'",
    ), task_or_email_if_threshold),
    Family("M18", "multi_domain", "growth comparison: task and slot meeting", (
        "If {metric} has grown more than {metric2} since {weekday}, give {name} a Front end backlog task "
        "'Improve {metric2}' due next Friday and book a 30-minute '{event_name}' with them at my first free "
        "slot tomorrow.",
        "Compare how much {metric} and {metric2} grew since {weekday}. If {metric} grew more, create the task "
        "'Improve {metric2}' for {name} (Front end backlog, due next Friday) and schedule a 30-minute "
        "'{event_name}' with {name} in my earliest free slot tomorrow.",
        "Has {metric} outgrown {metric2} since {weekday}? If so: backlog task 'Improve {metric2}' for {name} on "
        "the Front end board due next Friday, plus a 30-minute '{event_name}' with them at my first free time "
        "tomorrow.",
    ), task_and_meeting_if_grew_faster, empty_share=0.5, max_writes=2),
    Family("M19", "multi_domain", "analytics condition: delete a rep's Leads and email, else another email", (
        _IF + ", delete all of {name}'s leads in the CRM and email them '{body}' with the subject '{subject}'. "
        "Otherwise email them '{body2}' with the same subject.",
        _CHECK + ". If it did, remove {name}'s leads from the CRM and then send them an email titled "
        "'{subject}' saying '{body}'; if not, just send '{body2}' under that subject.",
        _WAS + " Yes: delete {name}'s leads from the CRM, then email them '{subject}' / '{body}'. No: email "
        "them '{subject}' / '{body2}'.",
    ), delete_leads_or_email, max_writes=12),
    Family("M20", "multi_domain", "analytics condition: task and slot meeting, else an email", (
        _IF + ", create " + _TASK + " for {name} and book " + _SLOT + " with them. Otherwise email {name} "
        "'{body}' with the subject '{subject}'.",
        _CHECK + ". If it did, give {name} " + _TASK + " and schedule " + _SLOT + " with {name}; if not, send "
        "{name} an email titled '{subject}' saying '{body}'",
        _WAS + " If yes: " + _TASK + " for {name} plus " + _SLOT + " with them. If no: email {name} "
        "'{subject}' / '{body}'.",
    ), task_meeting_or_email, max_writes=2),
    Family("M21", "multi_domain", "analytics condition: task and slot meeting, else a rep's Leads to X and email", (
        _IF + ", create " + _TASK + " for {name} and book " + _SLOT + " with them. Otherwise give all of "
        "{name2}'s leads in the CRM to {name} and email {name} '{body}' with the subject '{subject}'.",
        _CHECK + ". If it did, give {name} " + _TASK + " and schedule " + _SLOT + " with {name}. If not, "
        "reassign {name2}'s leads to {name}, then send {name} an email titled '{subject}' saying '{body}'",
        _WAS + " Yes: " + _TASK + " for {name} plus " + _SLOT + " with them. No: move every lead of {name2}'s "
        "to {name} in the CRM and email {name} '{subject}' / '{body}'.",
    ), task_meeting_or_hand_over_leads, max_writes=12),
)
