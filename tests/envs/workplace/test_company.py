"""Our generated company: deterministic, realistic, and shaped like the reference sandbox."""
from __future__ import annotations

import datetime as dt
from collections import Counter

from grpo_jax.envs.workplace import Sandbox
from grpo_jax.envs.workplace import constants as C
from grpo_jax.envs.workplace.tasks.language import first_name


def test_same_seed_same_tables_other_seed_other_tables(company):
    again = Sandbox.generate(0)
    assert all(again.tables[n].rows == company.tables[n].rows for n in C.STATE_TABLES)
    assert again.analytics.rows == company.analytics.rows and again.directory == company.directory
    assert Sandbox.generate(1).tables[C.EMAILS].rows != company.tables[C.EMAILS].rows


def test_sizes_ids_and_people(company):
    assert len(company.directory) == 20 and len(company.tables[C.EMAILS]) == 500
    assert 280 <= len(company.tables[C.EVENTS]) <= 300
    assert len(company.tables[C.TASKS]) == 300 and len(company.tables[C.CUSTOMERS]) == 200
    assert len(company.analytics) == 1000
    firsts = [first_name(a) for a in company.directory]
    assert len(set(firsts)) == 20
    assert all(sum(f.lower() in a for a in company.directory) == 1 for f in firsts)
    id_columns = ((C.EMAILS, "email_id"), (C.EVENTS, "event_id"), (C.TASKS, "task_id"), (C.CUSTOMERS, "customer_id"))
    for name, column in id_columns:
        ids = company.tables[name].column_values(column)
        assert len(set(ids)) == len(ids) and all(len(i) == C.ID_WIDTH and i.isdigit() for i in ids)
        assert ids != sorted(ids)  # rows are ordered by date, not by ID


def test_emails_are_inbox_messages_from_staff_in_time_order(company):
    emails = company.tables[C.EMAILS].records()
    times = [e["sent_datetime"] for e in emails]
    assert times == sorted(times) and max(times) < "2023-11-30 23:59:00"
    assert {e["inbox/outbox"] for e in emails} == {"inbox"}
    assert {e["sender/recipient"] for e in emails} <= set(company.directory)
    assert all("\\n" in e["body"] for e in emails)


def test_events_are_weekday_half_hour_non_overlapping(company):
    events = company.tables[C.EVENTS].records()
    starts = [dt.datetime.fromisoformat(e["event_start"]) for e in events]
    assert starts == sorted(starts)
    assert sum(s > company.now for s in starts) >= 40
    spans = []
    for event, start in zip(events, starts):
        minutes = int(event["duration"])
        assert minutes in C.EVENT_DURATIONS and start.weekday() < 5 and start.minute in (0, 30)
        assert start.hour >= C.WORKDAY_START_HOUR
        assert start + dt.timedelta(minutes=minutes) <= start.replace(hour=C.WORKDAY_END_HOUR, minute=0)
        spans.append((start, start + dt.timedelta(minutes=minutes)))
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:]))


def test_tasks_and_customers_use_the_value_sets(company):
    tasks = company.tables[C.TASKS].records()
    assert {t["list_name"] for t in tasks} == set(C.LIST_NAMES) and {t["board"] for t in tasks} == set(C.BOARDS)
    assert len({t["assigned_to_email"] for t in tasks}) == 15
    assert [t["due_date"] for t in tasks] == sorted(t["due_date"] for t in tasks)
    customers = company.tables[C.CUSTOMERS].records()
    assert {c["status"] for c in customers} == set(C.STATUSES)
    assert {c["product_interest"] for c in customers} == set(C.PRODUCTS)
    owners = Counter(c["assigned_to_email"] for c in customers)
    assert len(owners) == 5 and set(owners) <= set(company.directory)
    assert len({c["customer_name"] for c in customers}) == 200
    contacts = [c["last_contact_date"] for c in customers]
    assert contacts == sorted(contacts, reverse=True)
    assert all(c["follow_up_by"] > c["last_contact_date"] for c in customers)


def test_now_moves_the_whole_company():
    later = Sandbox.generate(0, now="2024-03-15 12:00:00")
    assert max(later.tables[C.EMAILS].column_values("sent_datetime")) < "2024-03-15 12:00:00"
    assert later.last_analytics_date == "2024-03-14"
