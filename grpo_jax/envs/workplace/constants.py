"""Fixed facts of the workplace sandbox: table layouts, value sets, ID rules and clocks.

Everything here is shared by the tools, the CSV loader, our company generator and the task
families, so that a value set or a column order is written down exactly once.
"""
from __future__ import annotations

import enum


class Flavor(str, enum.Enum):
    """Whose tool semantics to follow where NeMo Gym and WorkBench differ.

    NEMO: replies are titled "RE: <subject>", searches return pages of 5 with a pagination
    dict, calendar writes validate their values. WORKBENCH: replies keep the subject, searches
    return the first 5 as a list, calendar writes store anything, and a sent email is written at
    row label len(table) (which can overwrite a row after a delete).
    """

    NEMO = "nemo"
    WORKBENCH = "workbench"


# Clocks. NeMo Gym's tools and prompts say 23:59; WorkBench's HARDCODED_CURRENT_TIME is midnight.
NEMO_NOW = "2023-11-30 23:59:00"
WORKBENCH_NOW = "2023-11-30 00:00:00"
DEFAULT_NOW = NEMO_NOW
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
DATE_FORMAT = "%Y-%m-%d"

# IDs are zero-padded to this width, except the IDs of sent emails (str(max + 1)).
ID_WIDTH = 8

# Search pagination defaults of NeMo Gym (WorkBench always returns the first 5).
DEFAULT_PAGE = 1
DEFAULT_PAGE_SIZE = 5
WORKBENCH_RESULT_LIMIT = 5

# Working hours used by the system prompt and by "first free slot" tasks.
WORKDAY_START_HOUR = 9
WORKDAY_END_HOUR = 18
SLOT_MINUTES = 30
EVENT_DURATIONS = (30, 60, 90, 120)

# Table names of the world. The first five are the state the verifier compares.
EMAILS = "emails"
EVENTS = "calendar_events"
PLOTS = "plots"
TASKS = "project_tasks"
CUSTOMERS = "customers"
STATE_TABLES = (EVENTS, EMAILS, PLOTS, TASKS, CUSTOMERS)

EMAIL_COLUMNS = ("email_id", "inbox/outbox", "sender/recipient", "subject", "sent_datetime", "body")
EVENT_COLUMNS = ("event_id", "event_name", "participant_email", "event_start", "duration")
PLOT_COLUMNS = ("file_path",)
TASK_COLUMNS = ("task_id", "task_name", "assigned_to_email", "list_name", "due_date", "board")
CUSTOMER_COLUMNS = (
    "customer_id", "assigned_to_email", "customer_name", "customer_email", "customer_phone",
    "last_contact_date", "product_interest", "status", "follow_up_by", "notes",
)
ANALYTICS_COLUMNS = (
    "date_of_visit", "visitor_id", "page_views", "session_duration_seconds", "traffic_source",
    "user_engaged",
)

# CSV file names of the public WorkBench / NeMo Gym layout.
CSV_FILES = {
    EMAILS: "emails.csv",
    EVENTS: "calendar_events.csv",
    TASKS: "project_tasks.csv",
    CUSTOMERS: "customer_relationship_manager_data.csv",
}
ANALYTICS_CSV = "analytics_data.csv"
DIRECTORY_CSV = "email_addresses.csv"

# Value sets. list_name, board and status are compared case-sensitively by the verifier.
LIST_NAMES = ("Backlog", "In Progress", "In Review", "Completed")
BOARDS = ("Back end", "Front end", "Design")
STATUSES = ("Qualified", "Won", "Lost", "Lead", "Proposal")
PRODUCTS = ("Software", "Hardware", "Services", "Consulting", "Training")
CASE_SENSITIVE_COLUMNS = frozenset({"status", "list_name", "board"})

TRAFFIC_SOURCES = ("direct", "referral", "search engine", "social media")
METRICS = ("total_visits", "session_duration_seconds", "user_engaged")
PLOT_VALUES = METRICS + tuple("visits_" + source.replace(" ", "_") for source in TRAFFIC_SOURCES)
PLOT_TYPES = ("bar", "line", "scatter", "histogram")

INBOX = "inbox"
OUTBOX = "outbox"
