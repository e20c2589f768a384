"""Sandbox loading (CSV directories) and fresh worlds."""
from __future__ import annotations

import datetime as dt
import shutil

import pytest

from grpo_jax.envs.workplace import Flavor, Sandbox
from grpo_jax.envs.workplace import constants as C


def test_nemo_csv_directory(nemo_sandbox):
    assert nemo_sandbox.flavor is Flavor.NEMO
    assert nemo_sandbox.now == dt.datetime(2023, 11, 30, 23, 59)
    sizes = {name: len(nemo_sandbox.tables[name]) for name in C.STATE_TABLES}
    assert sizes == {C.EVENTS: 300, C.EMAILS: 500, C.PLOTS: 0, C.TASKS: 300, C.CUSTOMERS: 200}
    assert len(nemo_sandbox.directory) == 20 and len(nemo_sandbox.analytics) == 1000
    customers = nemo_sandbox.tables[C.CUSTOMERS]
    assert all(isinstance(v, str) for row in customers.rows for v in row if v is not None)
    assert None in customers.column_values("customer_phone")  # empty cells are missing values
    assert {type(v) for v in nemo_sandbox.analytics.column_values("user_engaged")} == {bool}
    assert nemo_sandbox.last_analytics_date == "2023-11-30"


def test_flavor_detection_and_directory_beside_the_tables(nemo_gym_workplace_dir, tmp_path):
    processed = nemo_gym_workplace_dir / "csv_data" / "processed"
    for name in C.CSV_FILES.values():
        shutil.copy(processed / name, tmp_path / name)
    shutil.copy(processed / C.ANALYTICS_CSV, tmp_path / C.ANALYTICS_CSV)
    with pytest.raises(FileNotFoundError, match="email_addresses.csv"):
        Sandbox.from_csv_dir(tmp_path)
    shutil.copy(processed.parent / "raw" / C.DIRECTORY_CSV, tmp_path / C.DIRECTORY_CSV)
    crm = tmp_path / C.CSV_FILES[C.CUSTOMERS]
    crm.write_text(crm.read_text().replace(" 23:59:00", ""))
    sandbox = Sandbox.from_csv_dir(tmp_path, now=C.WORKBENCH_NOW)
    assert sandbox.flavor is Flavor.WORKBENCH and sandbox.now.hour == 0
    assert Sandbox.from_csv_dir(tmp_path, flavor="nemo").flavor is Flavor.NEMO


def test_bad_now_is_rejected(nemo_gym_workplace_dir):
    with pytest.raises(ValueError, match="now="):
        Sandbox.from_csv_dir(nemo_gym_workplace_dir / "csv_data" / "processed", now="someday")


def test_worlds_are_private_copies(company):
    first, second = company.world(), company.world()
    first.tables[C.EMAILS] = first.tables[C.EMAILS].without("email_id", company.tables[C.EMAILS].rows[0][0])
    assert len(second.tables[C.EMAILS]) == len(company.tables[C.EMAILS]) == len(first.tables[C.EMAILS]) + 1
    assert first.copy().tables == first.tables


def test_spec_rebuilds_the_sandbox(company, nemo_sandbox):
    assert Sandbox.from_spec(company.spec).tables[C.EMAILS].rows == company.tables[C.EMAILS].rows
    assert Sandbox.from_spec(nemo_sandbox.spec).fingerprint == nemo_sandbox.fingerprint
    with pytest.raises(ValueError, match="unknown sandbox spec"):
        Sandbox.from_spec({"kind": "cloud"})
