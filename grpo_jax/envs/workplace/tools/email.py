"""Email toolkit: look up, search, send, delete, forward and reply.

Behaviour follows NeMo Gym's EmailTool (including its try/except that turns internal errors
into "Error ...: <exception>" strings); WorkBench differences are switched by the flavor.
"""
from __future__ import annotations

from typing import Any

from grpo_jax.envs.workplace import constants as C
from grpo_jax.envs.workplace.sandbox import World
from grpo_jax.envs.workplace.table import Table
from grpo_jax.envs.workplace.timestamps import format_timestamp, parse_timestamp
from grpo_jax.envs.workplace.tools.common import next_email_id, paginate
from grpo_jax.envs.workplace.tools.spec import INTEGER, Param, ToolSpec

_ID, _BOX, _PARTY, _SUBJECT, _SENT, _BODY = C.EMAIL_COLUMNS


def email_get_email_information_by_id(world: World, /, email_id: Any = None, field: Any = None) -> Any:
    if not email_id:
        return "Email ID not provided."
    if not field:
        return "Field not provided."
    emails = world.tables[C.EMAILS]
    try:
        position = emails.find(_ID, email_id)
        if position is None:
            return "Email not found."
        record = emails.record(position)
        if field in record:
            return {field: record[field]}
        if world.flavor is C.Flavor.WORKBENCH:
            return "Field not found."
        return f"Field '{field}' not found. Available fields: {', '.join(record)}"
    except Exception as error:  # noqa: BLE001 - the reference reports any failure as text
        return f"Error retrieving email information: {error}"


def email_search_emails(world: World, /, query: Any = "", date_min: Any = None, date_max: Any = None,
                        page: Any = C.DEFAULT_PAGE, page_size: Any = C.DEFAULT_PAGE_SIZE) -> Any:
    try:
        emails = world.tables[C.EMAILS]
        words = query.lower().split()
        matches = emails.records(_matching_positions(emails, words))
        sent_times = [parse_timestamp(record[_SENT]) for record in matches]
        order = sorted(range(len(matches)), key=sent_times.__getitem__, reverse=True)
        matches = [matches[i] for i in order]
        if date_min:
            first_day = parse_timestamp(date_min).date()
            matches = [m for m in matches if parse_timestamp(m[_SENT]).date() >= first_day]
        if date_max:
            last_day = parse_timestamp(date_max).date()
            matches = [m for m in matches if parse_timestamp(m[_SENT]).date() <= last_day]
        if not matches:
            return "No emails found."
        if world.flavor is C.Flavor.WORKBENCH:
            return matches[:C.WORKBENCH_RESULT_LIMIT]
        shown, pagination = paginate(matches, page, page_size)
        return {"emails": shown, "pagination": {"total_emails": len(matches), **pagination}}
    except Exception as error:  # noqa: BLE001
        return f"Error searching emails: {error}"


def email_send_email(world: World, /, recipient: Any = None, subject: Any = None, body: Any = None) -> Any:
    if not recipient or not subject or not body:
        return "Recipient, subject, or body not provided."
    if "@" not in recipient or "." not in recipient:
        return "Invalid recipient email address."
    try:
        emails = world.tables[C.EMAILS]
        row = (next_email_id(emails, _ID), C.OUTBOX, recipient.lower(), subject,
               format_timestamp(world.now), body)
        world.tables[C.EMAILS] = _append_email(emails, row, world.flavor)
        return "Email sent successfully."
    except Exception as error:  # noqa: BLE001
        return f"Error sending email: {error}"


def email_delete_email(world: World, /, email_id: Any = None) -> Any:
    if not email_id:
        return "Email ID not provided."
    try:
        emails = world.tables[C.EMAILS]
        if not emails.contains_value(_ID, email_id):
            return "Email not found."
        world.tables[C.EMAILS] = emails.without(_ID, email_id)
        return "Email deleted successfully."
    except Exception as error:  # noqa: BLE001
        return f"Error deleting email: {error}"


def email_forward_email(world: World, /, email_id: Any = None, recipient: Any = None) -> Any:
    if not email_id or not recipient:
        return "Email ID or recipient not provided."
    emails = world.tables[C.EMAILS]
    if world.flavor is C.Flavor.WORKBENCH and not emails.contains_value(_ID, email_id):
        return "Email not found."
    if "@" not in recipient or "." not in recipient:
        return "Invalid recipient email address."
    try:
        position = emails.find(_ID, email_id)
        if position is None:
            return "Email not found."
        original = emails.record(position)
        subject = f"FW: {_as_text(original[_SUBJECT])}"
        result = email_send_email(world, recipient.lower(), subject, original[_BODY])
        return result if _is_failure(result) else "Email forwarded successfully."
    except Exception as error:  # noqa: BLE001
        return f"Error forwarding email: {error}"


def email_reply_email(world: World, /, email_id: Any = None, body: Any = None) -> Any:
    if not email_id or not body:
        return "Email ID or body not provided."
    try:
        emails = world.tables[C.EMAILS]
        position = emails.find(_ID, email_id)
        if position is None:
            return "Email not found."
        original = emails.record(position)
        subject = _as_text(original[_SUBJECT])
        if world.flavor is C.Flavor.NEMO:
            subject = f"RE: {subject}"
        result = email_send_email(world, original[_PARTY], subject, body)
        return result if _is_failure(result) else "Email replied successfully."
    except Exception as error:  # noqa: BLE001
        return f"Error replying to email: {error}"


def _matching_positions(emails: Table, words: list[str]) -> list[int]:
    """Rows whose "subject body sender" text contains every word (case-insensitive)."""
    columns = [emails.column_index(column) for column in (_SUBJECT, _BODY, _PARTY)]
    positions = []
    for position, row in enumerate(emails.rows):
        # f-string formatting renders a missing cell as "nan", as it does for pandas' NaN.
        text = " ".join(_as_text(row[i]) for i in columns).lower()
        if all(word in text for word in words):
            positions.append(position)
    return positions


def _as_text(value: Any) -> str:
    return "nan" if value is None else f"{value}"


def _append_email(emails: Table, row: tuple, flavor: C.Flavor) -> Table:
    if flavor is C.Flavor.WORKBENCH:
        # EMAILS.loc[len(EMAILS)] = row: after a delete this label may already exist.
        return emails.set_at_label(len(emails), row)
    return emails.appended_renumbered(row)


def _is_failure(result: Any) -> bool:
    return isinstance(result, str) and ("Error" in result or "Invalid" in result)


TOOLS = (
    ToolSpec("email_get_email_information_by_id", email_get_email_information_by_id,
             "Returns one field of the email with the given ID.", (
                 Param("email_id", "ID of the email, e.g. '00000042'", required=True),
                 Param("field", "The field to return: 'email_id', 'inbox/outbox', 'sender/recipient', "
                                "'subject', 'sent_datetime' or 'body'", required=True),
             )),
    ToolSpec("email_search_emails", email_search_emails,
             "Searches emails, newest first. An email matches when every word of the query occurs "
             "in its subject, body or sender/recipient.", (
                 Param("query", "Words to look for in the subject, body and sender/recipient"),
                 Param("date_min", "Earliest sent date, inclusive. Format: YYYY-MM-DD"),
                 Param("date_max", "Latest sent date, inclusive. Format: YYYY-MM-DD"),
                 Param("page", "Page of results to return, starting at 1", INTEGER),
                 Param("page_size", "Number of emails per page", INTEGER),
             )),
    ToolSpec("email_send_email", email_send_email, "Sends a new email.", (
        Param("recipient", "Email address of the recipient", required=True),
        Param("subject", "Subject line", required=True),
        Param("body", "Text of the email", required=True),
    ), writes=True),
    ToolSpec("email_delete_email", email_delete_email, "Deletes the email with the given ID.", (
        Param("email_id", "ID of the email to delete", required=True),
    ), writes=True),
    ToolSpec("email_forward_email", email_forward_email, "Forwards an email to a recipient.", (
        Param("email_id", "ID of the email to forward", required=True),
        Param("recipient", "Email address to forward it to", required=True),
    ), writes=True),
    ToolSpec("email_reply_email", email_reply_email, "Replies to the sender of an email.", (
        Param("email_id", "ID of the email to reply to", required=True),
        Param("body", "Text of the reply", required=True),
    ), writes=True),
)
