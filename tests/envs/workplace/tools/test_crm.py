"""CRM and directory tools: normal behaviour and every error path."""
from __future__ import annotations

import pytest

from grpo_jax.envs.workplace import constants as C
from grpo_jax.envs.workplace.tools.crm import (
    customer_relationship_manager_add_customer, customer_relationship_manager_delete_customer,
    customer_relationship_manager_search_customers, customer_relationship_manager_update_customer,
)
from grpo_jax.envs.workplace.tools.directory import company_directory_find_email_address
from tests.envs.tiny_sandbox import ALICE, BOB

search = customer_relationship_manager_search_customers


def names(result):
    return [c["customer_name"] for c in (result["customers"] if isinstance(result, dict) else result)]


def test_search_customers(tiny):
    world = tiny.world()
    assert names(search(world, customer_name="iris")) == ["Iris Vale"]
    assert names(search(world, status="proposal", product_interest="hard")) == ["Omar Quist"]
    assert names(search(world, assigned_to_email="bob")) == ["Omar Quist"]
    assert names(search(world, last_contact_date_min="2023-11-01")) == ["Iris Vale"]
    assert names(search(world, follow_up_by_max="2023-11-01")) == ["Omar Quist"]
    assert search(world, customer_name="nobody") == "No customers found."
    assert search(world) == "No search parameters provided. Please provide at least one parameter."
    assert search(world, status="a", page_size=1, page=2)["pagination"] == {
        "total_customers": 2, "page": 2, "page_size": 1, "total_pages": 2}


def test_search_over_missing_cells_raises_like_pandas(tiny):
    world = tiny.world()
    customer_relationship_manager_add_customer(world, "No Mail", ALICE, "Lead")
    with pytest.raises(ValueError, match="non-boolean"):
        search(world, customer_email="acme")


def test_update_customer(tiny):
    world = tiny.world()
    assert customer_relationship_manager_update_customer(world, "00000001", "assigned_to_email", BOB.upper()) == \
        "Customer updated successfully."
    assert world.tables[C.CUSTOMERS].record(0)["assigned_to_email"] == BOB
    assert customer_relationship_manager_update_customer(world, "00000001", "status") == \
        "Customer ID, field, or new value not provided."
    assert customer_relationship_manager_update_customer(world, "00000001", "status", "won").startswith(
        "Status not valid.")
    assert customer_relationship_manager_update_customer(world, "00000001", "product_interest", "Cloud").startswith(
        "Product interest not valid.")
    assert customer_relationship_manager_update_customer(world, "00000009", "status", "Won") == "Customer not found."
    assert customer_relationship_manager_update_customer(world, "00000001", "rating", "5").startswith(
        "Field not valid.")


def test_add_customer_has_no_validation_and_renumbers(tiny):
    world = tiny.world()
    new_id = customer_relationship_manager_add_customer(world, "Nia Moss", ALICE.upper(), "anything",
                                                        customer_email="NIA@MOSS.COM")
    assert new_id == "00000002"
    record = world.tables[C.CUSTOMERS].record(2)
    assert (record["assigned_to_email"], record["customer_email"], record["status"], record["notes"],
            record["customer_phone"]) == (ALICE, "nia@moss.com", "anything", "", None)
    assert customer_relationship_manager_add_customer(world, "Nia Moss", ALICE) == (
        "Please provide all required fields: customer_name, assigned_to_email, status.")


def test_delete_customer(tiny):
    world = tiny.world()
    assert customer_relationship_manager_delete_customer(world, "00000001") == "Customer deleted successfully."
    assert customer_relationship_manager_delete_customer(world, "00000001") == "Customer not found."
    assert customer_relationship_manager_delete_customer(world) == "Customer ID not provided."


def test_workbench_search_returns_five_as_a_list(tiny_workbench):
    assert names(search(tiny_workbench.world(), status="a")) == ["Iris Vale", "Omar Quist"]


def test_directory(tiny):
    world = tiny.world()
    assert company_directory_find_email_address(world, "ALICE") == [ALICE]
    assert company_directory_find_email_address(world, "example") == list(tiny.directory)
    assert company_directory_find_email_address(world, "zed") == []
    assert company_directory_find_email_address(world) == "Name not provided."
    with pytest.raises(AttributeError):
        company_directory_find_email_address(world, None)
