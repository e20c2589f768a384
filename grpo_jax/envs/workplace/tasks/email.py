"""Email task families E1-E9.

"Newest" is the latest sent time (the last row of a sender, since emails are stored in time
order); "last N days" is sent at or after now minus N days; "last week" is the previous Monday
to Sunday.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from grpo_jax.envs.workplace.tasks.base import (
    Call, Chooser, Family, Solution, call, lookups, paged_search, stage, want_matches,
)
from grpo_jax.envs.workplace.tasks.facts import Facts, Record
from grpo_jax.envs.workplace.tasks.language import first_name
from grpo_jax.envs.workplace.timestamps import format_date, to_datetime

SEARCH = "email_search_emails"
# (subject, body) of emails the user asks to send; one line each so they can be quoted.
MESSAGES = (
    ("Lunch on Friday", "Are you free for lunch on Friday? My treat."),
    ("Slides for Monday", "Could you send me the slides before Monday's review?"),
    ("Quick favour", "Can you cover the support rotation on Wednesday afternoon?"),
    ("Welcome aboard", "Welcome to the team! Let me know if you need anything in your first week."),
    ("Expense report", "Please submit your expense report by the end of the month."),
    ("Thank you", "Thanks for staying late to finish the release. It made a real difference."),
    ("Offsite logistics", "The offsite starts at 10am and the bus leaves from the main entrance."),
    ("Timesheet reminder", "Friendly reminder to fill in your timesheet before Friday noon."),
    ("Interview panel", "Would you join the interview panel for the designer role next week?"),
    ("New dashboard", "The new sales dashboard is live. Tell me if any numbers look off."),
    ("Parking update", "From next month the east parking lot is closed for repairs."),
    ("Training budget", "You still have training budget left this year if you want to use it."),
)
TOPIC_REPLIES = ("Thanks, I'll look at this first thing tomorrow.", "Noted - let's discuss it at our next sync.")
QUICK_REPLIES = ("Got it, thanks for letting me know!", "Thanks, received.")
MAX_DAYS_BACK = 7
MIN_DAYS_BACK = 2
MAX_DELETES = 6
MAX_FORWARDS = 3


def _sent(email: Record) -> dt.datetime:
    return to_datetime(email["sent_datetime"])


def _newest(emails: list[Record]) -> Record | None:
    # max() keeps the first maximum; iterate backwards so a tie goes to the later row.
    return max(reversed(emails), key=_sent) if emails else None


def _from(facts: Facts, sender: str) -> list[Record]:
    return [e for e in facts.emails if e["sender/recipient"] == sender]


def _search_for(facts: Facts, targets: list[Record], **arguments: Any) -> list[Call] | None:
    return paged_search(facts, SEARCH, [e["email_id"] for e in targets], **arguments)


def delete_newest_from(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    sender = choose.one("sender", facts.email_senders)
    target = _newest(_from(facts, sender))
    search = target and _search_for(facts, [target], query=sender)
    if not search:
        return None
    return Solution({"name": first_name(sender)}, [call("email_delete_email", email_id=target["email_id"])],
                    [stage(*lookups(sender)), stage(search)])


def delete_recent_from(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    sender = choose.one("sender", facts.people)
    days = choose.integer("days", MIN_DAYS_BACK, MAX_DAYS_BACK)
    cutoff = facts.now - dt.timedelta(days=days)
    targets = [e for e in _from(facts, sender) if _sent(e) >= cutoff]
    writes = [call("email_delete_email", email_id=e["email_id"]) for e in targets]
    if not want_matches(want_empty, writes):
        return None
    search = _search_for(facts, targets, query=sender, date_min=format_date(cutoff.date()))
    if search is None:
        return None
    return Solution({"name": first_name(sender), "days": days}, writes, [stage(*lookups(sender)), stage(search)])


def send_message(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    recipient = choose.one("recipient", facts.people)
    subject, body = MESSAGES[choose.integer("message", 0, len(MESSAGES) - 1)]
    return Solution({"name": first_name(recipient), "subject": subject, "body": body},
                    [call("email_send_email", recipient=recipient, subject=subject, body=body)],
                    [stage(*lookups(recipient))])


def reply_on_topic(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    sender = choose.one("sender", facts.email_senders)
    mine = _from(facts, sender)
    subject = choose.one("subject", sorted({e["subject"] for e in mine if isinstance(e["subject"], str)}))
    target = _newest([e for e in mine if e["subject"] == subject])
    reply = choose.one("reply", TOPIC_REPLIES)
    search = target and _search_for(facts, [target], query=f"{subject} {sender}")
    if not search:
        return None
    return Solution({"name": first_name(sender), "subject": subject, "reply": reply},
                    [call("email_reply_email", email_id=target["email_id"], body=reply)],
                    [stage(*lookups(sender)), stage(search)])


def forward_last_week(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    monday = facts.today - dt.timedelta(days=facts.today.weekday() + 7)
    sunday = monday + dt.timedelta(days=6)
    last_week = [e for e in facts.emails if monday <= _sent(e).date() <= sunday
                 and e["sender/recipient"] in facts.people]
    sender = choose.one("sender", sorted({e["sender/recipient"] for e in last_week}))
    mine = [e for e in last_week if e["sender/recipient"] == sender]
    subject = choose.one("subject", sorted({e["subject"] for e in mine}))
    recipient = choose.one("recipient", [p for p in facts.people if p != sender])
    targets = [e for e in mine if e["subject"] == subject]
    if not targets:
        return None
    search = _search_for(facts, targets, query=f"{subject} {sender}", date_min=format_date(monday),
                         date_max=format_date(sunday))
    if search is None:
        return None
    writes = [call("email_forward_email", email_id=e["email_id"], recipient=recipient) for e in targets]
    return Solution({"name": first_name(sender), "subject": subject, "recipient": first_name(recipient)},
                    writes, [stage(*lookups(sender, recipient)), stage(search)])


def _newest_on_subject(facts: Facts, choose: Chooser) -> tuple[str, Record, list[Call]] | None:
    subject = choose.one("subject", facts.email_subjects)
    target = _newest([e for e in facts.emails if e["subject"] == subject])
    search = target and _search_for(facts, [target], query=subject)
    return (subject, target, search) if search else None


def forward_newest_on_topic(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    found = _newest_on_subject(facts, choose)
    if found is None:
        return None
    subject, target, search = found
    recipient = choose.one("recipient", [p for p in facts.people if p != target["sender/recipient"]])
    return Solution({"subject": subject, "recipient": first_name(recipient)},
                    [call("email_forward_email", email_id=target["email_id"], recipient=recipient)],
                    [stage(*lookups(recipient), search)])


def forward_newest_from(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    sender = choose.one("sender", facts.email_senders)
    recipient = choose.one("recipient", [p for p in facts.people if p != sender])
    target = _newest(_from(facts, sender))
    search = target and _search_for(facts, [target], query=sender)
    if not search:
        return None
    return Solution({"name": first_name(sender), "recipient": first_name(recipient)},
                    [call("email_forward_email", email_id=target["email_id"], recipient=recipient)],
                    [stage(*lookups(sender, recipient)), stage(search)])


def forward_newest_to_two(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    found = _newest_on_subject(facts, choose)
    if found is None:
        return None
    subject, target, search = found
    recipients = choose.several("recipients", [p for p in facts.people if p != target["sender/recipient"]], 2)
    first, second = recipients
    writes = [call("email_forward_email", email_id=target["email_id"], recipient=r) for r in recipients]
    return Solution({"subject": subject, "recipient1": first_name(first), "recipient2": first_name(second)},
                    writes, [stage(*lookups(first, second), search)])


def quick_reply_newest(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    sender = choose.one("sender", facts.email_senders)
    target = _newest(_from(facts, sender))
    reply = choose.one("reply", QUICK_REPLIES)
    search = target and _search_for(facts, [target], query=sender)
    if not search:
        return None
    return Solution({"name": first_name(sender), "reply": reply},
                    [call("email_reply_email", email_id=target["email_id"], body=reply)],
                    [stage(*lookups(sender)), stage(search)])


FAMILIES = (
    Family("E1", "email", "delete a colleague's newest message", (
        "Delete the most recent email I got from {name}.",
        "Please remove {name}'s latest email from my inbox.",
        "Get rid of the last message {name} sent me.",
    ), delete_newest_from),
    Family("E2", "email", "delete a colleague's messages from the last N days", (
        "Delete every email {name} sent me in the last {days} days.",
        "Clear out all of {name}'s emails from the past {days} days.",
        "Please remove the emails I received from {name} over the last {days} days.",
    ), delete_recent_from, empty_share=0.1, max_writes=MAX_DELETES),
    Family("E3", "email", "send a message with a given subject and body", (
        "Email {name} with the subject '{subject}' and the message '{body}'",
        "Send {name} an email titled '{subject}' that says '{body}'",
        "Write to {name}: subject '{subject}', body '{body}'",
    ), send_message),
    Family("E4", "email", "fixed reply to X's newest message on a subject", (
        "Reply '{reply}' to {name}'s latest email about '{subject}'.",
        "Answer the most recent email from {name} on '{subject}' with '{reply}'",
        "{name} wrote to me about '{subject}'. Reply to the newest of those emails saying '{reply}'",
    ), reply_on_topic),
    Family("E5", "email", "forward X's messages from last week on a subject to Y", (
        "Forward to {recipient} every email {name} sent me last week about '{subject}'.",
        "{recipient} needs the emails about '{subject}' that {name} sent last week. Please forward them.",
        "Send {recipient} all of last week's emails from {name} on '{subject}' as forwards.",
    ), forward_last_week, max_writes=MAX_FORWARDS),
    Family("E6", "email", "forward the newest message on a subject", (
        "Forward the latest email about '{subject}' to {recipient}.",
        "{recipient} should see the most recent email on '{subject}'. Can you forward it?",
        "Please pass the newest '{subject}' email on to {recipient}.",
    ), forward_newest_on_topic),
    Family("E7", "email", "forward X's newest message to Y", (
        "Forward {name}'s most recent email to {recipient}.",
        "Pass the last email I got from {name} on to {recipient}.",
        "{recipient} needs to see {name}'s latest email. Please forward it.",
    ), forward_newest_from),
    Family("E8", "email", "forward the newest message on a subject to two people, in order", (
        "Forward the latest email about '{subject}' to {recipient1} and then to {recipient2}.",
        "Send the most recent '{subject}' email to {recipient1} and {recipient2}, in that order.",
        "{recipient1} and {recipient2} both need the newest email on '{subject}'. Forward it to each of "
        "them, {recipient1} first.",
    ), forward_newest_to_two, max_writes=2),
    Family("E9", "email", "fixed thanks reply to X's newest message", (
        "Reply to {name}'s latest email with '{reply}'",
        "Answer the most recent message from {name} with: '{reply}'",
        "Send '{reply}' as a reply to the last email {name} sent me.",
    ), quick_reply_newest),
)
