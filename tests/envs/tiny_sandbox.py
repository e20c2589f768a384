"""A tiny hand-made sandbox (a handful of rows per table) that tool and verifier tests assert on."""
from __future__ import annotations

import datetime as dt

from grpo_jax.envs.workplace import Sandbox
from grpo_jax.envs.workplace import constants as C
from grpo_jax.envs.workplace.table import Table

TINY_NOW = dt.datetime(2023, 11, 30, 23, 59)
ALICE, BOB, CARA = "alice.stone@example.com", "bob.reyes@example.com", "cara.lind@example.com"


def tiny_sandbox(flavor: C.Flavor = C.Flavor.NEMO) -> Sandbox:
    """A handful of rows per table, with the reference's formats, to assert on exactly."""
    emails = Table(C.EMAIL_COLUMNS, [
        ("00000002", "inbox", ALICE, "Budget review", "2023-11-20 09:00:00", "Hi,\\n\\nBudget attached.\\n\\nAlice"),
        ("00000000", "inbox", BOB, "Launch plan", "2023-11-28 10:30:00", "Hi,\\n\\nThe launch plan is ready.\\n\\nBob"),
        ("00000001", "inbox", ALICE, "Budget review", "2023-11-29 16:45:00", "Hi,\\n\\nUpdated budget.\\n\\nAlice"),
    ])
    events = Table(C.EVENT_COLUMNS, [
        ("00000001", "design review", ALICE, "2023-11-29 10:00:00", "60"),
        ("00000002", "weekly sync", BOB, "2023-12-01 09:00:00", "30"),
        ("00000000", "weekly sync", CARA, "2023-12-01 11:00:00", "90"),
    ])
    tasks = Table(C.TASK_COLUMNS, [
        ("00000003", "Fix login page", ALICE, "Backlog", "2023-11-28", "Front end"),
        ("00000001", "Audit cache layer", BOB, "In Progress", "2023-12-02", "Back end"),
        ("00000000", "Design pricing page", ALICE, "In Review", "2023-12-04", "Design"),
        ("00000002", "Test invoice export", CARA, "Completed", "2023-11-27", "Back end"),
    ])
    customers = Table.from_records(C.CUSTOMER_COLUMNS, [
        {"customer_id": "00000001", "assigned_to_email": ALICE, "customer_name": "Iris Vale",
         "customer_email": "iris.vale@acme.com", "customer_phone": None, "last_contact_date": "2023-11-25",
         "product_interest": "Software", "status": "Lead", "follow_up_by": "2023-12-10", "notes": None},
        {"customer_id": "00000000", "assigned_to_email": BOB, "customer_name": "Omar Quist",
         "customer_email": "omar.quist@globex.com", "customer_phone": "555-0101", "last_contact_date": "2023-10-01",
         "product_interest": "Hardware", "status": "Proposal", "follow_up_by": "2023-10-20", "notes": "Sent a quote."},
    ])
    analytics = Table(C.ANALYTICS_COLUMNS, [
        ("2023-11-27", "0001", "3", "30", "direct", True),
        ("2023-11-27", "0002", "1", "10", "referral", False),
        ("2023-11-28", "0001", "5", "50", "direct", True),
        ("2023-11-29", "0003", "2", "20", "social media", False),
    ])
    tables = {C.EMAILS: emails, C.EVENTS: events, C.PLOTS: Table(C.PLOT_COLUMNS, []), C.TASKS: tasks,
              C.CUSTOMERS: customers}
    return Sandbox(tables, analytics, (ALICE, BOB, CARA), TINY_NOW, flavor, {"kind": "tiny", "flavor": flavor.value})
