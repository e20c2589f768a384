"""Our own synthetic company with the reference sandbox's schema, ID formats, value sets and date
ranges, laid out around a configurable "now".

What it guarantees (and tests check):
- staff have unique first names, none contained in another staff address;
- emails are inbox messages from staff, ordered by sent time, before now;
- events fall on weekdays, start on :00 or :30 within working hours, never overlap, last 30, 60,
  90 or 120 minutes, and some lie after now;
- tasks use the list and board value sets, assigned to a fixed team; CRM owners are sales reps
  from the staff; customer names are unique; CRM rows are ordered by last contact, newest first;
- IDs are 8-digit zero-padded strings in shuffled order (rows are ordered by date, not ID).
The same seed and now always give the same tables.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import random

from grpo_jax.envs.workplace import company_text as T
from grpo_jax.envs.workplace import constants as C
from grpo_jax.envs.workplace.table import Table
from grpo_jax.envs.workplace.timestamps import format_date, format_timestamp


# Emails are sent during an extended office day, 07:30 to 19:30 (in seconds after midnight).
EMAIL_HOURS_SECONDS = (7 * 3600 + 1800, 19 * 3600 + 1800)


@dataclasses.dataclass(frozen=True)
class CompanyShape:
    """Sizes and time spans of a generated company (defaults mirror the reference sandbox)."""

    staff: int = 20
    sales_reps: int = 5
    task_assignees: int = 15
    emails: int = 500
    events: int = 300
    visits: int = 1000
    tasks: int = 300
    customers: int = 200
    email_days_back: int = 60
    event_days_back: int = 121
    event_days_ahead: int = 21
    future_event_share: float = 0.19
    visit_days_back: int = 90
    task_due_days: tuple[int, int] = (-2, 13)
    customer_contact_days_back: int = 60
    follow_up_days: tuple[int, int] = (7, 30)
    list_weights: tuple[float, ...] = (0.64, 0.04, 0.15, 0.17)  # C.LIST_NAMES order
    status_weights: tuple[float, ...] = (0.16, 0.23, 0.21, 0.21, 0.19)  # C.STATUSES order
    source_weights: tuple[float, ...] = (0.52, 0.10, 0.11, 0.27)  # C.TRAFFIC_SOURCES order
    phone_share: float = 0.5
    notes_share: float = 0.8


@dataclasses.dataclass(frozen=True)
class Person:
    first_name: str
    last_name: str
    email: str


@dataclasses.dataclass(frozen=True)
class Company:
    """The generated tables plus the people behind them."""

    user_name: str
    staff: tuple[Person, ...]
    directory: tuple[str, ...]
    emails: Table
    events: Table
    analytics: Table
    tasks: Table
    customers: Table


def generate_company(seed: int, now: dt.datetime, shape: CompanyShape = CompanyShape()) -> Company:
    """A company for `seed`; deterministic in (seed, now, shape)."""
    rng = random.Random(seed)
    domain = rng.choice(T.COMPANY_DOMAINS)
    staff = _staff(rng, shape.staff, domain)
    user_name = rng.choice(T.USER_FIRST_NAMES)
    directory = tuple(person.email for person in rng.sample(staff, len(staff)))
    reps = staff[:shape.sales_reps]
    team = staff[shape.sales_reps:shape.sales_reps + shape.task_assignees]
    task_names = [f"{verb} {obj}" for verb in T.TASK_VERBS for obj in T.TASK_OBJECTS]
    return Company(
        user_name=user_name,
        staff=tuple(staff),
        directory=directory,
        emails=_emails(rng, shape, now, staff, user_name, task_names),
        events=_events(rng, shape, now, staff),
        analytics=_visits(rng, shape, now),
        tasks=_tasks(rng, shape, now, team, task_names),
        customers=_customers(rng, shape, now, reps),
    )


def _staff(rng: random.Random, count: int, domain: str) -> list[Person]:
    while True:
        firsts = rng.sample(T.STAFF_FIRST_NAMES, count)
        lasts = rng.sample(T.STAFF_LAST_NAMES, count)
        people = [Person(f, l, f"{f.lower()}.{l.lower()}@{domain}") for f, l in zip(firsts, lasts)]
        # A directory search by first name must find exactly one address.
        if all(sum(p.first_name.lower() in q.email for q in people) == 1 for p in people):
            return people


def _shuffled_ids(rng: random.Random, count: int) -> list[str]:
    ids = [str(i).zfill(C.ID_WIDTH) for i in range(count)]
    rng.shuffle(ids)
    return ids


def _emails(rng: random.Random, shape: CompanyShape, now: dt.datetime, staff: list[Person],
            user_name: str, task_names: list[str]) -> Table:
    first_day = now.date() - dt.timedelta(days=shape.email_days_back)
    times = sorted(_office_time(rng, first_day, now) for _ in range(shape.emails))
    rows = []
    for email_id, sent in zip(_shuffled_ids(rng, shape.emails), times):
        sender = rng.choice(staff)
        kind = rng.choice(sorted(T.SUBJECTS))
        fill = {"task": rng.choice(task_names), "event": rng.choice(T.EVENT_NAMES),
                "topic": rng.choice(T.EMAIL_TOPICS)}
        subject = T.SUBJECTS[kind].format(**fill)
        sentence = rng.choice(T.SENTENCES[kind]).format(**fill)
        greeting = rng.choice(T.GREETINGS).format(user=user_name)
        sign_off = rng.choice(T.SIGN_OFFS)
        br = T.BODY_LINE_BREAK
        body = f"{greeting},{br}{br}{sentence}{br}{br}{sign_off},{br}{sender.first_name}"
        rows.append((email_id, C.INBOX, sender.email, subject, format_timestamp(sent), body))
    return Table(C.EMAIL_COLUMNS, rows)


def _office_time(rng: random.Random, first_day: dt.date, now: dt.datetime) -> dt.datetime:
    """A random time between 07:30 and 19:30 on a day from `first_day`, strictly before `now`."""
    while True:
        day = first_day + dt.timedelta(days=rng.randrange((now.date() - first_day).days + 1))
        moment = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=rng.randint(*EMAIL_HOURS_SECONDS))
        if moment < now:
            return moment


def _events(rng: random.Random, shape: CompanyShape, now: dt.datetime, staff: list[Person]) -> Table:
    today = now.date()
    past_days = _weekdays(today - dt.timedelta(days=shape.event_days_back), today)
    future_days = _weekdays(today + dt.timedelta(days=1), today + dt.timedelta(days=shape.event_days_ahead))
    future_count = round(shape.events * shape.future_event_share)
    counts = _spread(rng, shape.events - future_count, past_days) | _spread(rng, future_count, future_days)
    starts = []
    for day in sorted(counts):
        starts.extend(_day_schedule(rng, day, counts[day]))
    rows = []
    for event_id, (start, minutes) in zip(_shuffled_ids(rng, len(starts)), starts):
        rows.append((event_id, rng.choice(T.EVENT_NAMES), rng.choice(staff).email, format_timestamp(start),
                     str(minutes)))
    return Table(C.EVENT_COLUMNS, rows)


def _weekdays(first: dt.date, last: dt.date) -> list[dt.date]:
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    return [day for day in days if day.weekday() < 5]


def _spread(rng: random.Random, total: int, days: list[dt.date]) -> dict[dt.date, int]:
    counts = dict.fromkeys(days, 0)
    for _ in range(total):
        counts[rng.choice(days)] += 1
    return counts


def _day_schedule(rng: random.Random, day: dt.date, count: int) -> list[tuple[dt.datetime, int]]:
    """`count` non-overlapping meetings on `day` on a :00/:30 grid inside working hours."""
    slots = (C.WORKDAY_END_HOUR - C.WORKDAY_START_HOUR) * 60 // C.SLOT_MINUTES
    for _ in range(100):
        durations = [rng.choice(C.EVENT_DURATIONS) for _ in range(count)]
        lengths = [minutes // C.SLOT_MINUTES for minutes in durations]
        free = slots - sum(lengths)
        if free >= 0:
            break
        count -= 1  # the day is too full: drop a meeting
    gaps = [0] * (count + 1)
    for _ in range(free):
        gaps[rng.randrange(count + 1)] += 1
    schedule, slot = [], 0
    opening = dt.datetime.combine(day, dt.time(C.WORKDAY_START_HOUR))
    for gap, length, minutes in zip(gaps, lengths, durations):
        slot += gap
        schedule.append((opening + dt.timedelta(minutes=slot * C.SLOT_MINUTES), minutes))
        slot += length
    return schedule


def _visits(rng: random.Random, shape: CompanyShape, now: dt.datetime) -> Table:
    last_day = now.date() - dt.timedelta(days=1)
    days = [last_day - dt.timedelta(days=i) for i in range(shape.visit_days_back)]
    # Weekdays see more traffic than weekends.
    weights = [1.0 if day.weekday() < 5 else 0.6 for day in days]
    rows = []
    for _ in range(shape.visits):
        day = rng.choices(days, weights)[0]
        page_views = min(10, 1 + int(rng.expovariate(0.45)))
        seconds = max(1, int(rng.gauss(20 * page_views, 15)))
        engaged = page_views >= 3 or rng.random() < 0.2
        source = rng.choices(C.TRAFFIC_SOURCES, shape.source_weights)[0]
        rows.append((format_date(day), f"{rng.randrange(10_000):04d}", str(page_views), str(seconds),
                     source, engaged))
    return Table(C.ANALYTICS_COLUMNS, rows)


def _tasks(rng: random.Random, shape: CompanyShape, now: dt.datetime, team: list[Person],
           task_names: list[str]) -> Table:
    low, high = shape.task_due_days
    drafts = []
    for _ in range(shape.tasks):
        due = now.date() + dt.timedelta(days=rng.randint(low, high))
        drafts.append((rng.choice(task_names), rng.choice(team).email,
                       rng.choices(C.LIST_NAMES, shape.list_weights)[0], format_date(due), rng.choice(C.BOARDS)))
    drafts.sort(key=lambda draft: draft[3])
    rows = [(task_id, *draft) for task_id, draft in zip(_shuffled_ids(rng, shape.tasks), drafts)]
    return Table(C.TASK_COLUMNS, rows)


def _customers(rng: random.Random, shape: CompanyShape, now: dt.datetime, reps: list[Person]) -> Table:
    names = rng.sample([f"{f} {l}" for f in T.CUSTOMER_FIRST_NAMES for l in T.CUSTOMER_LAST_NAMES], shape.customers)
    drafts = []
    for name in names:
        last_contact = now.date() - dt.timedelta(days=rng.randrange(shape.customer_contact_days_back + 1))
        follow_up = last_contact + dt.timedelta(days=rng.randint(*shape.follow_up_days))
        email = f"{name.lower().replace(' ', '.')}@{rng.choice(T.CUSTOMER_ORGANISATIONS)}.com"
        phone = (f"{rng.randint(200, 989)}-555-{rng.randint(0, 9999):04d}"
                 if rng.random() < shape.phone_share else None)
        drafts.append({
            "assigned_to_email": rng.choice(reps).email, "customer_name": name, "customer_email": email,
            "customer_phone": phone, "last_contact_date": format_date(last_contact),
            "product_interest": rng.choice(C.PRODUCTS), "status": rng.choices(C.STATUSES, shape.status_weights)[0],
            "follow_up_by": format_date(follow_up), "notes": _notes(rng, last_contact, shape.notes_share),
        })
    drafts.sort(key=lambda draft: draft["last_contact_date"], reverse=True)
    for customer_id, draft in zip(_shuffled_ids(rng, shape.customers), drafts):
        draft["customer_id"] = customer_id
    return Table.from_records(C.CUSTOMER_COLUMNS, drafts)


def _notes(rng: random.Random, last_contact: dt.date, share: float) -> str | None:
    if rng.random() >= share:
        return None
    entries = []
    for back in sorted(rng.sample(range(0, 30), rng.randint(1, 3))):
        entries.append(f"{format_date(last_contact - dt.timedelta(days=back))}: {rng.choice(T.CUSTOMER_NOTES)}.")
    return " ".join(entries)
