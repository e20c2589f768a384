"""Customer relationship manager toolkit: search, update, add and delete customers.

Text filters are case-insensitive regular expressions, date filters compare strings. Updates
check the status and product value sets (case-sensitive); additions check nothing.
"""
from __future__ import annotations

from typing import Any

from grpo_jax.envs.workplace import constants as C
from grpo_jax.envs.workplace.sandbox import World
from grpo_jax.envs.workplace.tools.common import (
    lower, next_padded_id, paginate, regex_matches, set_cells, string_compare,
)
from grpo_jax.envs.workplace.tools.spec import INTEGER, Param, ToolSpec

_ID = "customer_id"
_EMAIL_FIELDS = ("customer_email", "assigned_to_email")
_UPDATABLE_FIELDS = ("customer_name", "assigned_to_email", "customer_email", "customer_phone",
                     "last_contact_date", "product_interest", "status", "notes", "follow_up_by")
_BAD_STATUS = "Status not valid. Please choose from: " + ", ".join(f"'{s}'" for s in C.STATUSES)
_BAD_PRODUCT = "Product interest not valid. Please choose from: " + ", ".join(f"'{p}'" for p in C.PRODUCTS)
_BAD_FIELD = "Field not valid. Please choose from: " + ", ".join(f"'{f}'" for f in _UPDATABLE_FIELDS)


def customer_relationship_manager_search_customers(
        world: World, /, customer_name: Any = None, customer_email: Any = None, product_interest: Any = None,
        status: Any = None, assigned_to_email: Any = None, last_contact_date_min: Any = None,
        last_contact_date_max: Any = None, follow_up_by_min: Any = None, follow_up_by_max: Any = None,
        page: Any = C.DEFAULT_PAGE, page_size: Any = C.DEFAULT_PAGE_SIZE) -> Any:
    text_filters = (("customer_name", customer_name), ("customer_email", customer_email),
                    ("product_interest", product_interest), ("status", status),
                    ("assigned_to_email", assigned_to_email))
    date_filters = (("last_contact_date", last_contact_date_min, True),
                    ("last_contact_date", last_contact_date_max, False),
                    ("follow_up_by", follow_up_by_min, True), ("follow_up_by", follow_up_by_max, False))
    if not any([value for _, value in text_filters] + [value for _, value, _ in date_filters]):
        return "No search parameters provided. Please provide at least one parameter."
    customers = world.tables[C.CUSTOMERS]
    positions = list(range(len(customers)))
    for column, pattern in text_filters:
        if pattern:
            mask = regex_matches(_cells(customers, column, positions), pattern)
            positions = [p for p, keep in zip(positions, mask) if keep]
    for column, bound, is_minimum in date_filters:
        if bound:
            mask = string_compare(_cells(customers, column, positions), bound, keep_greater_or_equal=is_minimum)
            positions = [p for p, keep in zip(positions, mask) if keep]
    found = customers.records(positions)
    if world.flavor is C.Flavor.WORKBENCH:
        return found[:C.WORKBENCH_RESULT_LIMIT]
    shown, pagination = paginate(found, page, page_size)
    if not found:
        return "No customers found."
    return {"customers": shown, "pagination": {"total_customers": len(found), **pagination}}


def customer_relationship_manager_update_customer(world: World, /, customer_id: Any = None, field: Any = None,
                                                  new_value: Any = None) -> Any:
    if not customer_id or not field or not new_value:
        return "Customer ID, field, or new value not provided."
    if field == "status" and new_value not in C.STATUSES:
        return _BAD_STATUS
    if field == "product_interest" and new_value not in C.PRODUCTS:
        return _BAD_PRODUCT
    if field in _EMAIL_FIELDS:
        new_value = lower(new_value)
    customers = world.tables[C.CUSTOMERS]
    if not customers.contains_value(_ID, customer_id):
        return "Customer not found."
    if field not in customers.columns:
        return _BAD_FIELD
    world.tables[C.CUSTOMERS] = set_cells(customers, _ID, customer_id, field, new_value)
    return "Customer updated successfully."


def customer_relationship_manager_add_customer(
        world: World, /, customer_name: Any = None, assigned_to_email: Any = None, status: Any = None,
        customer_email: Any = None, customer_phone: Any = None, last_contact_date: Any = None,
        product_interest: Any = None, notes: Any = "", follow_up_by: Any = None) -> Any:
    if not all([customer_name, assigned_to_email, status]):
        return "Please provide all required fields: customer_name, assigned_to_email, status."
    assigned_to_email = lower(assigned_to_email)
    if customer_email:
        customer_email = lower(customer_email)
    customers = world.tables[C.CUSTOMERS]
    new_id = next_padded_id(customers, _ID)
    record = {
        "customer_id": new_id, "customer_name": customer_name, "customer_email": customer_email,
        "customer_phone": customer_phone, "last_contact_date": last_contact_date,
        "product_interest": product_interest, "status": status, "assigned_to_email": assigned_to_email,
        "notes": notes, "follow_up_by": follow_up_by,
    }
    # pd.concat aligns the new row to the table's columns; a column it lacks stays missing.
    row = tuple(record.get(column) for column in customers.columns)
    world.tables[C.CUSTOMERS] = customers.appended_renumbered(row)
    return new_id


def customer_relationship_manager_delete_customer(world: World, /, customer_id: Any = None) -> Any:
    if not customer_id:
        return "Customer ID not provided."
    customers = world.tables[C.CUSTOMERS]
    if not customers.contains_value(_ID, customer_id):
        return "Customer not found."
    world.tables[C.CUSTOMERS] = customers.without(_ID, customer_id)
    return "Customer deleted successfully."


def _cells(table: Any, column: str, positions: list[int]) -> list[Any]:
    index = table.column_index(column)
    return [table.rows[p][index] for p in positions]


TOOLS = (
    ToolSpec("customer_relationship_manager_search_customers", customer_relationship_manager_search_customers,
             "Searches customers matching all the given filters (give at least one), in pages.", (
                 Param("customer_name", "Text to find in the customer's name"),
                 Param("customer_email", "Text to find in the customer's email address"),
                 Param("product_interest", "Product the customer is interested in"),
                 Param("status", "Sales status of the customer"),
                 Param("assigned_to_email", "Email address of the account owner"),
                 Param("last_contact_date_min", "Earliest last contact date. Format: YYYY-MM-DD"),
                 Param("last_contact_date_max", "Latest last contact date. Format: YYYY-MM-DD"),
                 Param("follow_up_by_min", "Earliest follow-up date. Format: YYYY-MM-DD"),
                 Param("follow_up_by_max", "Latest follow-up date. Format: YYYY-MM-DD"),
                 Param("page", "Page of results to return, starting at 1", INTEGER),
                 Param("page_size", "Number of customers per page", INTEGER),
             )),
    ToolSpec("customer_relationship_manager_update_customer", customer_relationship_manager_update_customer,
             "Changes one field of a customer record.", (
                 Param("customer_id", "ID of the customer", required=True),
                 Param("field", "The field to change: 'customer_name', 'assigned_to_email', 'customer_email', "
                                "'customer_phone', 'last_contact_date', 'product_interest', 'status', "
                                "'notes' or 'follow_up_by'", required=True),
                 Param("new_value", "The new value of the field", required=True),
             ), writes=True),
    ToolSpec("customer_relationship_manager_add_customer", customer_relationship_manager_add_customer,
             "Adds a customer record and returns its ID.", (
                 Param("customer_name", "Name of the customer", required=True),
                 Param("assigned_to_email", "Email address of the account owner", required=True),
                 Param("status", "One of 'Qualified', 'Won', 'Lost', 'Lead', 'Proposal'", required=True),
                 Param("customer_email", "Email address of the customer"),
                 Param("customer_phone", "Phone number of the customer"),
                 Param("last_contact_date", "Date of the last contact. Format: YYYY-MM-DD"),
                 Param("product_interest", "One of 'Software', 'Hardware', 'Services', 'Consulting', 'Training'"),
                 Param("notes", "Free-text notes"),
                 Param("follow_up_by", "Date to follow up by. Format: YYYY-MM-DD"),
             ), writes=True),
    ToolSpec("customer_relationship_manager_delete_customer", customer_relationship_manager_delete_customer,
             "Deletes the customer record with the given ID.", (
                 Param("customer_id", "ID of the customer", required=True),
             ), writes=True),
)
