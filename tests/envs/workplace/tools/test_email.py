"""Email tools: normal behaviour and every error path."""
from __future__ import annotations

import pytest

from grpo_jax.envs.workplace import constants as C
from grpo_jax.envs.workplace.tools.email import (
    email_delete_email, email_forward_email, email_get_email_information_by_id, email_reply_email,
    email_search_emails, email_send_email,
)
from tests.envs.tiny_sandbox import ALICE, BOB


def ids(result):
    return [email["email_id"] for email in (result["emails"] if isinstance(result, dict) else result)]


def test_get_email_information(tiny):
    world = tiny.world()
    assert email_get_email_information_by_id(world, "00000000", "subject") == {"subject": "Launch plan"}
    assert email_get_email_information_by_id(world) == "Email ID not provided."
    assert email_get_email_information_by_id(world, "00000000") == "Field not provided."
    assert email_get_email_information_by_id(world, "99999999", "subject") == "Email not found."
    assert email_get_email_information_by_id(world, "00000000", "sender").startswith("Field 'sender' not found.")


def test_search_is_newest_first_and_needs_every_word(tiny):
    world = tiny.world()
    assert ids(email_search_emails(world, query="budget")) == ["00000001", "00000002"]
    assert ids(email_search_emails(world, query="BUDGET alice")) == ["00000001", "00000002"]
    assert email_search_emails(world, query="budget bob") == "No emails found."
    assert ids(email_search_emails(world, date_min="2023-11-28", date_max="2023-11-28")) == ["00000000"]
    assert email_search_emails(world, query="budget", date_min="garbage").startswith("Error searching emails:")
    assert email_search_emails(world, query=5).startswith("Error searching emails:")


def test_search_pages(tiny):
    result = email_search_emails(tiny.world(), page=2, page_size=2)
    assert ids(result) == ["00000002"]
    assert result["pagination"] == {"total_emails": 3, "page": 2, "page_size": 2, "total_pages": 2}
    assert email_search_emails(tiny.world(), page=9, page_size=2)["pagination"]["page"] == 2
    assert email_search_emails(tiny.world(), page_size=0).startswith("Error searching emails:")


def test_workbench_search_returns_the_first_five_as_a_list(tiny_workbench):
    assert ids(email_search_emails(tiny_workbench.world(), query="budget")) == ["00000001", "00000002"]


def test_send_appends_an_outbox_row_with_an_unpadded_id(tiny):
    world = tiny.world()
    assert email_send_email(world, "Carol@Example.com", "Hi", "Hello") == "Email sent successfully."
    table = world.tables[C.EMAILS]
    assert table.rows[-1] == ("3", "outbox", "carol@example.com", "Hi", "2023-11-30 23:59:00", "Hello")
    assert table.has_range_labels
    assert email_send_email(world, "x@y.z", "Again", "Body") == "Email sent successfully."
    assert world.tables[C.EMAILS].rows[-1][0] == "4"
    assert tiny.tables[C.EMAILS] is not world.tables[C.EMAILS]  # the sandbox itself never changes


@pytest.mark.parametrize("recipient, subject, body, message", [
    (None, "s", "b", "Recipient, subject, or body not provided."),
    ("a@b.c", "", "b", "Recipient, subject, or body not provided."),
    ("nobody", "s", "b", "Invalid recipient email address."),
    ("a@bc", "s", "b", "Invalid recipient email address."),
])
def test_send_rejects(tiny, recipient, subject, body, message):
    world = tiny.world()
    assert email_send_email(world, recipient, subject, body) == message
    assert world.tables == tiny.world().tables


def test_send_raises_for_a_non_text_recipient(tiny):
    with pytest.raises(TypeError):
        email_send_email(tiny.world(), 5, "s", "b")


def test_delete_keeps_the_other_row_labels(tiny):
    world = tiny.world()
    assert email_delete_email(world, "00000000") == "Email deleted successfully."
    assert world.tables[C.EMAILS].labels == (0, 2)
    assert email_delete_email(world, "00000000") == "Email not found."
    assert email_delete_email(world) == "Email ID not provided."


def test_forward_sends_fw_subject_and_body(tiny):
    world = tiny.world()
    assert email_forward_email(world, "00000000", ALICE.upper()) == "Email forwarded successfully."
    new = world.tables[C.EMAILS].record(3)
    original_body = tiny.tables[C.EMAILS].record(1)["body"]
    assert (new["sender/recipient"], new["subject"], new["body"]) == (ALICE, "FW: Launch plan", original_body)
    assert email_forward_email(world) == "Email ID or recipient not provided."
    assert email_forward_email(world, "00000000", "nobody") == "Invalid recipient email address."
    assert email_forward_email(world, "12345678", ALICE) == "Email not found."


def test_reply_goes_to_the_sender_with_re_subject(tiny):
    world = tiny.world()
    assert email_reply_email(world, "00000000", "Thanks") == "Email replied successfully."
    new = world.tables[C.EMAILS].record(3)
    assert (new["sender/recipient"], new["subject"], new["body"]) == (BOB, "RE: Launch plan", "Thanks")
    assert email_reply_email(world, "00000000") == "Email ID or body not provided."
    assert email_reply_email(world, "12345678", "x") == "Email not found."


def test_workbench_reply_keeps_the_subject_and_send_writes_at_label_len(tiny_workbench):
    world = tiny_workbench.world()
    email_delete_email(world, "00000002")  # labels become 1, 2
    email_reply_email(world, "00000000", "Thanks")  # written at label len == 2: overwrites row 00000001
    table = world.tables[C.EMAILS]
    assert table.labels == (1, 2)
    assert table.record(1)["subject"] == "Launch plan"
    assert table.record(1)["email_id"] == "2"  # max("00000000", "00000001") + 1


def test_internal_failures_are_reported_as_text_like_the_reference(tiny):
    world = tiny.world()
    odd_address = {"@": 1, ".": 2}  # passes the "@"/"." check but has no .lower()
    assert email_send_email(world, odd_address, "s", "b").startswith("Error sending email:")
    assert email_forward_email(world, "00000000", odd_address).startswith("Error forwarding email:")
    assert email_get_email_information_by_id(world, "00000000", ["subject"]).startswith(
        "Error retrieving email information:")
    assert world.tables == tiny.world().tables
