"""The sandbox: the five state tables, the read-only analytics and directory, and the clock.

A `Sandbox` is immutable and shared by every episode and verification on it. `sandbox.world()`
gives a `World`, the mutable view the tools write to: it only maps table names to immutable
Tables, so making one costs a dict copy.

Two sources:
- `Sandbox.from_csv_dir(path)`: the public WorkBench / NeMo Gym CSVs, every value read as a
  string and an empty cell as a missing value (pandas `read_csv(dtype=str)`).
- `Sandbox.generate(seed)`: our own synthetic company (see company.py).
"""
from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import pathlib
from collections.abc import Mapping
from typing import Any

from grpo_jax.envs.workplace import constants as C
from grpo_jax.envs.workplace.table import Table
from grpo_jax.envs.workplace.timestamps import parse_timestamp

NowLike = str | dt.datetime

# The cell texts pandas.read_csv reads as NaN by default, even with dtype=str.
PANDAS_NA_STRINGS = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
})


@dataclasses.dataclass(frozen=True, eq=False)
class Sandbox:
    """An immutable starting state plus the facts every tool reads.

    Attributes:
      tables: the five state tables by name (constants.STATE_TABLES).
      analytics: website visits, read-only; `user_engaged` holds booleans like the reference.
      directory: the staff email addresses, in the directory's order.
      now: the current time of the sandbox (tools stamp sent emails with it).
      flavor: NeMo Gym or WorkBench tool semantics where the two differ.
      spec: a JSON-able description that rebuilds this sandbox (written into task rows).
    """

    tables: Mapping[str, Table]
    analytics: Table
    directory: tuple[str, ...]
    now: dt.datetime
    flavor: C.Flavor = C.Flavor.NEMO
    spec: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_csv_dir(cls, path: str | pathlib.Path, now: NowLike = C.DEFAULT_NOW,
                     flavor: C.Flavor | str = "auto") -> Sandbox:
        """Loads a WorkBench / NeMo Gym CSV directory (the folder holding emails.csv, ...).

        The directory file email_addresses.csv is looked up beside the tables, then in ../raw/.
        `flavor="auto"` picks WorkBench semantics for WorkBench's own tables (CRM dates without a
        time of day) and NeMo Gym's otherwise (NeMo Gym appends " 23:59:00" to those dates).
        """
        folder = pathlib.Path(path)
        tables = {name: _read_csv_table(folder / file_name) for name, file_name in C.CSV_FILES.items()}
        tables[C.PLOTS] = Table(C.PLOT_COLUMNS, [])
        analytics = _read_csv_table(folder / C.ANALYTICS_CSV)
        engaged = analytics.column_index("user_engaged")
        analytics = Table(analytics.columns, [
            row[:engaged] + (row[engaged] == "True",) + row[engaged + 1:] for row in analytics.rows])
        directory = _read_directory(folder)
        resolved_flavor = _detect_flavor(tables[C.CUSTOMERS]) if flavor == "auto" else C.Flavor(flavor)
        moment = _as_datetime(now)
        spec = {"kind": "csv", "path": str(folder), "now": _format_now(moment), "flavor": resolved_flavor.value}
        return cls(tables, analytics, directory, moment, resolved_flavor, spec)

    @classmethod
    def generate(cls, seed: int, now: NowLike = C.DEFAULT_NOW) -> Sandbox:
        """Our own seeded company with the reference's schema; the same seed gives the same tables."""
        from grpo_jax.envs.workplace.company import generate_company  # company imports this module

        moment = _as_datetime(now)
        company = generate_company(seed, moment)
        tables = {
            C.EMAILS: company.emails, C.EVENTS: company.events, C.PLOTS: Table(C.PLOT_COLUMNS, []),
            C.TASKS: company.tasks, C.CUSTOMERS: company.customers,
        }
        spec = {"kind": "generated", "seed": seed, "now": _format_now(moment), "flavor": C.Flavor.NEMO.value}
        return cls(tables, company.analytics, company.directory, moment, C.Flavor.NEMO, spec)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Sandbox:
        """Rebuilds the sandbox a task row names in its `sandbox` field."""
        if spec.get("kind") == "generated":
            return cls.generate(int(spec["seed"]), now=spec.get("now", C.DEFAULT_NOW))
        if spec.get("kind") == "csv":
            return cls.from_csv_dir(spec["path"], now=spec.get("now", C.DEFAULT_NOW),
                                    flavor=spec.get("flavor", "auto"))
        raise ValueError(f"unknown sandbox spec {dict(spec)!r}; expected kind 'generated' or 'csv'")

    def world(self) -> World:
        """A fresh, private copy of the state for one episode or one replay."""
        return World(self, dict(self.tables))

    @property
    def fingerprint(self) -> str:
        """A short stable hash of the spec: part of task keys and cache keys."""
        text = repr(sorted(self.spec.items()))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def last_analytics_date(self) -> str:
        """The latest date_of_visit (the end of "since <date>" plots)."""
        return max(self.analytics.column_values("date_of_visit"))


class World:
    """The mutable state one episode (or one replay) writes to."""

    __slots__ = ("sandbox", "tables")

    def __init__(self, sandbox: Sandbox, tables: dict[str, Table]):
        self.sandbox = sandbox
        self.tables = tables

    def copy(self) -> World:
        return World(self.sandbox, dict(self.tables))

    @property
    def now(self) -> dt.datetime:
        return self.sandbox.now

    @property
    def flavor(self) -> C.Flavor:
        return self.sandbox.flavor


def _read_csv_table(path: pathlib.Path) -> Table:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        columns = next(reader)
        rows = [tuple(None if cell in PANDAS_NA_STRINGS else cell for cell in row) for row in reader if row]
    return Table(columns, rows)


def _read_directory(folder: pathlib.Path) -> tuple[str, ...]:
    for candidate in (folder / C.DIRECTORY_CSV, folder.parent / "raw" / C.DIRECTORY_CSV):
        if candidate.is_file():
            with candidate.open(newline="", encoding="utf-8") as handle:
                return tuple(row[0] for row in csv.reader(handle) if row and row[0])
    raise FileNotFoundError(f"{C.DIRECTORY_CSV} not found in {folder} or {folder.parent / 'raw'}")


def _detect_flavor(customers: Table) -> C.Flavor:
    dates = [value for value in customers.column_values("last_contact_date") if value]
    has_time = any(len(value) > len("YYYY-MM-DD") for value in dates)
    return C.Flavor.NEMO if has_time or not dates else C.Flavor.WORKBENCH


def _as_datetime(now: NowLike) -> dt.datetime:
    if isinstance(now, dt.datetime):
        return now
    try:
        return parse_timestamp(now)
    except (TypeError, ValueError) as error:
        raise ValueError(f"now={now!r} is not a time; expected 'YYYY-MM-DD HH:MM:SS' or a datetime") from error


def _format_now(moment: dt.datetime) -> str:
    return moment.strftime(C.TIMESTAMP_FORMAT)
