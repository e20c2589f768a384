"""Multi-domain task families on records: M1-M9 and M16 (CRM, email, calendar and project
conditions driving writes in another toolkit).

A "slot meeting" is a 30-minute event at tomorrow's first free slot; "overdue" means due before
today and not Completed.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter

from grpo_jax.envs.workplace import constants as C
from grpo_jax.envs.workplace.tasks.actions import CREATE_EVENT, SEND, TASKS, message_fill, send, slot_meeting
from grpo_jax.envs.workplace.tasks.base import (
    Call, Chooser, Family, Solution, call, lookups, paged_search, stage, want_matches,
)
from grpo_jax.envs.workplace.tasks.crm import new_customer_names, search_for
from grpo_jax.envs.workplace.tasks.facts import Facts
from grpo_jax.envs.workplace.tasks.language import DURATION_WORDS, WEEKDAYS, first_name, spoken_date, spoken_time
from grpo_jax.envs.workplace.timestamps import date_part, format_date, format_timestamp, to_datetime

STALE_CONTACT_DAYS = 14
SILENT_EMAIL_DAYS = (2, 4)
MEETING_GAP_DAYS = (2, 14)
LOOKAHEAD_DAYS = (2, 4)
DAYS_AHEAD_TO_BOOK = 14
CANDIDATES_FOR_NEW_LEAD = 3
REMINDER_BODY = "Just a reminder that this event is coming up - please be there."
CATCH_UP = ("Time to catch up?",
            "It has been a while since we last met - could you share some times that work next week?")
NO_PLANS = ("Let's find time",
            "I don't see anything on our calendars for the next few days - do you have time for a short chat?")
OVERDUE = ("Past-due tasks", "Some of your tasks are past their due date - can we go through them?")
ON_TRACK = ("Great work this sprint", "Thanks for keeping all your tasks on schedule this sprint!")
OVERDUE_MEETING = "overdue task review"


def _booking(facts: Facts, choose: Chooser) -> tuple[dt.datetime, int]:
    minutes = choose.one("duration", list(DURATION_WORDS))
    days = [facts.today + dt.timedelta(days=i) for i in range(1, DAYS_AHEAD_TO_BOOK + 1)]
    day = dt.date.fromisoformat(choose.one("date", [format_date(d) for d in days if d.weekday() < 5]))
    last_start = (C.WORKDAY_END_HOUR - C.WORKDAY_START_HOUR) * 60 - minutes
    offset = choose.one("start_minutes", list(range(0, last_start + 1, C.SLOT_MINUTES)))
    return dt.datetime.combine(day, dt.time(C.WORKDAY_START_HOUR)) + dt.timedelta(minutes=offset), minutes


def meet_owner_of_stale_customer(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    name = choose.one("customer", [c["customer_name"] for c in facts.unique_customers])
    customer = next(c for c in facts.customers if c["customer_name"] == name)
    cutoff = format_date(facts.today - dt.timedelta(days=STALE_CONTACT_DAYS))
    event_name = f"{name} account review"
    meeting = slot_meeting(facts, event_name, customer["assigned_to_email"])
    lookup = search_for(facts, [customer], customer_name=name)
    if meeting is None or lookup is None:
        return None
    stale = date_part(customer["last_contact_date"]) < cutoff
    writes = [meeting[0]] if stale else []
    if not want_matches(want_empty, writes):
        return None
    return Solution({"customer": name, "event_name": event_name}, writes,
                    [stage(lookup, meeting[1] if stale else None)])


def lead_for_least_busy(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    people = choose.several("people", facts.task_people, CANDIDATES_FOR_NEW_LEAD)
    name = choose.one("customer", new_customer_names(facts))
    load = Counter(t["assigned_to_email"] for t in facts.tasks)
    fewest = min(load[p] for p in people)
    chosen = [p for p in people if load[p] == fewest]
    if len(chosen) != 1:
        return None
    fill = {"customer": name, "name": first_name(people[0]), "name2": first_name(people[1]),
            "name3": first_name(people[2])}
    return Solution(fill, [call("customer_relationship_manager_add_customer", customer_name=name,
                                assigned_to_email=chosen[0], status="Lead")],
                    [stage(*lookups(*people)), stage(*[call(TASKS, assigned_to_email=p) for p in people])])


def meet_sender_of_email(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    keys = Counter((e["sent_datetime"][:10], e["subject"]) for e in facts.emails)
    candidates = [e["email_id"] for e in facts.emails
                  if keys[(e["sent_datetime"][:10], e["subject"])] == 1 and e["sender/recipient"] in facts.people]
    email_id = choose.one("email", candidates)
    email = next(e for e in facts.emails if e["email_id"] == email_id)
    start, minutes = _booking(facts, choose)
    day = email["sent_datetime"][:10]
    reads = paged_search(facts, "email_search_emails", [email_id], query=email["subject"], date_min=day, date_max=day)
    if reads is None:
        return None
    fill = {"subject": email["subject"], "email_date": spoken_date(day), "duration": DURATION_WORDS[minutes],
            "date": spoken_date(start.date()), "time": spoken_time(start.time())}
    return Solution(fill, [call(CREATE_EVENT, event_name=email["subject"], participant_email=email["sender/recipient"],
                                event_start=format_timestamp(start), duration=str(minutes))], [stage(reads)])


def remind_first_attendee(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    days = sorted({e["event_start"][:10] for e in facts.future_events()})
    day = dt.date.fromisoformat(choose.one("date", days))
    first = facts.events_on(day)[0]
    reads = paged_search(facts, "calendar_search_events", [first["event_id"]], time_min=f"{day} 00:00:00",
                         time_max=f"{day} 23:59:59")
    if reads is None:
        return None
    return Solution({"date": spoken_date(day), "body": REMINDER_BODY},
                    [call(SEND, recipient=first["participant_email"], subject=first["event_name"], body=REMINDER_BODY)],
                    [stage(reads)])


def meet_if_no_recent_email(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    person = choose.one("person", facts.people)
    days = choose.integer("days", *SILENT_EMAIL_DAYS)
    coming = [facts.today + dt.timedelta(days=i) for i in range(1, 7)]
    weekday = choose.one("weekday", sorted({WEEKDAYS[d.weekday()] for d in coming if d.weekday() < 5}))
    day = next(d for d in coming if WEEKDAYS[d.weekday()] == weekday)
    workday_minutes = (C.WORKDAY_END_HOUR - C.WORKDAY_START_HOUR) * 60
    offset = choose.one("start_minutes", list(range(0, workday_minutes, C.SLOT_MINUTES)))
    start = dt.datetime.combine(day, dt.time(C.WORKDAY_START_HOUR)) + dt.timedelta(minutes=offset)
    cutoff = facts.now - dt.timedelta(days=days)
    recent = [e for e in facts.emails if e["sender/recipient"] == person and to_datetime(e["sent_datetime"]) > cutoff]
    event_name = f"{first_name(person)} catch-up"
    writes = [] if recent else [call(CREATE_EVENT, event_name=event_name, participant_email=person,
                                     event_start=format_timestamp(start), duration=str(C.SLOT_MINUTES))]
    if not want_matches(want_empty, writes):
        return None
    reads = paged_search(facts, "email_search_emails", [e["email_id"] for e in recent][:1], query=person,
                         date_min=format_date(cutoff.date()))
    if reads is None:
        return None
    return Solution({"name": first_name(person), "days": days, "weekday": weekday, "time": spoken_time(start.time()),
                     "event_name": event_name}, writes, [stage(*lookups(person)), stage(reads)])


def email_if_no_recent_meeting(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    person = choose.one("person", facts.people)
    days = choose.integer("days", *MEETING_GAP_DAYS)
    past = [e["event_start"][:10] for e in facts.events
            if e["participant_email"] == person and to_datetime(e["event_start"]) < facts.now]
    threshold = format_date(facts.today - dt.timedelta(days=days))
    writes = [send(person, CATCH_UP)] if not past or max(past) < threshold else []
    if not want_matches(want_empty, writes):
        return None
    latest = [e for e in facts.events
              if past and e["participant_email"] == person and e["event_start"][:10] == max(past)][:1]
    reads = paged_search(facts, "calendar_search_events", [e["event_id"] for e in latest], query=person,
                         time_max=format_timestamp(facts.now))
    if reads is None:
        return None
    return Solution({"name": first_name(person), "days": days, **message_fill(CATCH_UP)}, writes,
                    [stage(*lookups(person)), stage(reads)])


def email_if_nothing_planned(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    person = choose.one("person", facts.people)
    days = choose.integer("days", *LOOKAHEAD_DAYS)
    horizon = f"{format_date(facts.today + dt.timedelta(days=days))} 23:59:59"
    planned = [e for e in facts.future_events() if e["participant_email"] == person and e["event_start"] <= horizon]
    writes = [] if planned else [send(person, NO_PLANS)]
    if not want_matches(want_empty, writes):
        return None
    reads = paged_search(facts, "calendar_search_events", [e["event_id"] for e in planned][:1], query=person,
                         time_min=format_timestamp(facts.now), time_max=horizon)
    if reads is None:
        return None
    return Solution({"name": first_name(person), "days": days, **message_fill(NO_PLANS)}, writes,
                    [stage(*lookups(person)), stage(reads)])


def _overdue_person(facts: Facts, choose: Chooser) -> tuple[str, bool, list[Call]]:
    person = choose.one("person", facts.task_people)
    return person, bool(facts.overdue_tasks(person)), [call(TASKS, assigned_to_email=person)]


def email_about_overdue(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    person, overdue, reads = _overdue_person(facts, choose)
    message = OVERDUE if overdue else ON_TRACK
    return Solution({"name": first_name(person), **message_fill(OVERDUE), **message_fill(ON_TRACK, "2")},
                    [send(person, message)], [stage(*lookups(person)), stage(*reads)])


def meet_about_overdue(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    person, overdue, reads = _overdue_person(facts, choose)
    meeting = slot_meeting(facts, OVERDUE_MEETING, person)
    if meeting is None or not want_matches(want_empty, [meeting[0]] if overdue else []):
        return None
    return Solution({"name": first_name(person), "event_name": OVERDUE_MEETING}, [meeting[0]] if overdue else [],
                    [stage(*lookups(person)), stage(*reads, meeting[1] if overdue else None)])


def overdue_meeting_and_email(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    person, overdue, reads = _overdue_person(facts, choose)
    meeting = slot_meeting(facts, OVERDUE_MEETING, person)
    if meeting is None:
        return None
    writes = [meeting[0], send(person, OVERDUE)] if overdue else [send(person, ON_TRACK)]
    return Solution({"name": first_name(person), "event_name": OVERDUE_MEETING, **message_fill(OVERDUE),
                     **message_fill(ON_TRACK, "2")}, writes,
                    [stage(*lookups(person)), stage(*reads, meeting[1] if overdue else None)])


_SLOT = "a 30-minute '{event_name}' at my first free slot tomorrow"

FAMILIES = (
    Family("M1", "multi_domain", "customer not contacted for 14+ days: slot meeting with their owner", (
        "If we haven't been in touch with {customer} for more than two weeks, book a 30-minute '{event_name}' "
        "with their account owner at my first free slot tomorrow.",
        "Check when we last contacted {customer}. If it was over 14 days ago, schedule a 30-minute meeting "
        "called '{event_name}' with whoever owns the account, in my earliest free slot tomorrow.",
        "{customer} may have gone quiet: if their last contact is more than 14 days old, set up a 30-minute "
        "'{event_name}' with their owner tomorrow at my first free time.",
    ), meet_owner_of_stale_customer, empty_share=0.4),
    Family("M2", "multi_domain", "add a Lead owned by whichever named colleague has the fewest tasks", (
        "Add {customer} to the CRM as a lead and assign them to whichever of {name}, {name2} and {name3} has "
        "the fewest tasks.",
        "New lead: {customer}. Give it to the person with the fewest project tasks among {name}, {name2} and "
        "{name3}.",
        "Of {name}, {name2} and {name3}, find who has the fewest tasks assigned and make them the owner of a "
        "new CRM lead, {customer}.",
    ), lead_for_least_busy),
    Family("M3", "multi_domain", "dated message on a subject: meeting with its sender at a given time", (
        "Find the email from {email_date} about '{subject}' and book a {duration} meeting called '{subject}' "
        "with its sender on {date} at {time}.",
        "Someone emailed me on {email_date} about '{subject}'. Schedule a {duration} meeting with them named "
        "'{subject}' for {date} at {time}.",
        "Set up a {duration} '{subject}' meeting on {date} at {time} with whoever sent me the '{subject}' "
        "email on {email_date}.",
    ), meet_sender_of_email),
    Family("M4", "multi_domain", "email the participant of a date's first event (subject = event name)", (
        "Email the participant of my first event on {date}: use the event's name as the subject and write "
        "'{body}'",
        "Send '{body}' to whoever is in my first meeting on {date}, with the meeting name as the subject line.",
        "For the first event on {date}, email its participant with the event name as the title and the "
        "message '{body}'",
    ), remind_first_attendee),
    Family("M5", "multi_domain", "no email from X in N days: 30-minute meeting on a weekday", (
        "If {name} hasn't emailed me in the last {days} days, book a 30-minute '{event_name}' with them on "
        "{weekday} at {time}.",
        "Check whether {name} sent me anything in the past {days} days; if not, schedule a 30-minute meeting "
        "called '{event_name}' with them for {weekday} at {time}.",
        "No email from {name} for {days} days? Then set up a 30-minute '{event_name}' with them this coming "
        "{weekday} at {time}.",
    ), meet_if_no_recent_email, empty_share=0.7),
    Family("M6", "multi_domain", "no meeting with X in the past N days: fixed email", (
        "If I haven't met {name} in the past {days} days, email them with the subject '{subject}' saying "
        "'{body}'",
        "Check my calendar for meetings with {name} in the last {days} days. If there were none, send them an "
        "email titled '{subject}': '{body}'",
        "It may have been a while since I saw {name}. If we haven't met in {days} days, write to them with "
        "subject '{subject}' and the message '{body}'",
    ), email_if_no_recent_meeting, empty_share=0.2),
    Family("M7", "multi_domain", "nothing with X in the next N days: fixed email", (
        "If I have no meetings with {name} in the next {days} days, email them '{body}' with the subject "
        "'{subject}'.",
        "Do I have anything scheduled with {name} in the coming {days} days? If not, send them an email titled "
        "'{subject}' that says '{body}'",
        "Unless I'm meeting {name} within the next {days} days, write to them: subject '{subject}', message "
        "'{body}'",
    ), email_if_nothing_planned, empty_share=0.4),
    Family("M8", "multi_domain", "X has overdue tasks: email A, else email B", (
        "If {name} has any overdue tasks, email them '{body}' with the subject '{subject}'. Otherwise send them "
        "'{body2}' titled '{subject2}'.",
        "Check {name}'s tasks. If any are overdue, send an email titled '{subject}' saying '{body}'; if none "
        "are, send '{body2}' with the subject '{subject2}'.",
        "{name} either has overdue tasks or not. Overdue: email '{subject}' / '{body}'. All on time: email "
        "'{subject2}' / '{body2}'.",
    ), email_about_overdue),
    Family("M9", "multi_domain", "X has overdue tasks: slot meeting", (
        "If {name} has overdue tasks, book " + _SLOT + " with them.",
        "Check whether any of {name}'s tasks are overdue; if so, schedule " + _SLOT + " with {name}.",
        "Does {name} have tasks past their due date? If yes, put " + _SLOT + " with them.",
    ), meet_about_overdue, empty_share=0.4),
    Family("M16", "multi_domain", "overdue: slot meeting and email, else another email", (
        "If {name} has overdue tasks, book a 30-minute '{event_name}' with them at my first free slot tomorrow "
        "and email them '{body}' with the subject '{subject}'. Otherwise email them '{body2}' titled '{subject2}'.",
        "Check {name}'s tasks. Overdue ones mean: schedule a 30-minute '{event_name}' in my first free slot "
        "tomorrow, then send '{subject}' / '{body}'. None overdue: send '{subject2}' / '{body2}'.",
        "Does {name} have overdue tasks? If so, set up a 30-minute '{event_name}' with them tomorrow at my first "
        "free time and send them an email titled '{subject}' saying '{body}'; if not, send '{body2}' titled "
        "'{subject2}'.",
    ), overdue_meeting_and_email, max_writes=2),
)
