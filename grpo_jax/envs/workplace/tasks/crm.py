"""Customer relationship manager task families R1-R8.

Customers are named by their (unique) names; reps by first name. "No contact for N weeks"
means the last contact date is before today minus N weeks.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from grpo_jax.envs.workplace import company_text
from grpo_jax.envs.workplace import constants as C
from grpo_jax.envs.workplace.tasks.base import (
    Call, Chooser, Family, Solution, call, lookups, paged_search, stage, want_matches,
)
from grpo_jax.envs.workplace.tasks.facts import Facts, Record
from grpo_jax.envs.workplace.tasks.language import first_name
from grpo_jax.envs.workplace.timestamps import date_part, format_date

SEARCH = "customer_relationship_manager_search_customers"
UPDATE = "customer_relationship_manager_update_customer"
DELETE = "customer_relationship_manager_delete_customer"
SILENT_WEEKS = (3, 4, 5, 6)
MAX_REASSIGNMENTS = 4
MAX_PIPELINE_REASSIGNMENTS = 6
MAX_DELETIONS = 3
MAX_LOST = 5


def search_for(facts: Facts, targets: list[Record], **arguments: Any) -> list[Call] | None:
    return paged_search(facts, SEARCH, [c["customer_id"] for c in targets], **arguments)


def new_customer_names(facts: Facts) -> list[str]:
    """Names of people not yet in the CRM, for families that add one."""
    taken = {c["customer_name"] for c in facts.customers}
    names = (f"{f} {l}" for f in company_text.CUSTOMER_FIRST_NAMES for l in company_text.CUSTOMER_LAST_NAMES)
    return [name for name in names if name not in taken]


def leads_of(facts: Facts, rep: str) -> list[Record]:
    return [c for c in facts.customers if c["assigned_to_email"] == rep and c["status"] == "Lead"]


def _named_customer(facts: Facts, choose: Chooser) -> tuple[Record, list[Call]] | None:
    name = choose.one("customer", [c["customer_name"] for c in facts.unique_customers])
    customer = next(c for c in facts.customers if c["customer_name"] == name)
    reads = search_for(facts, [customer], customer_name=name)
    return (customer, reads) if reads else None


def set_status(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    found = _named_customer(facts, choose)
    if found is None:
        return None
    customer, reads = found
    status = choose.one("status", [s for s in C.STATUSES if s != customer["status"]])
    return Solution({"customer": customer["customer_name"], "status": status.lower()},
                    [call(UPDATE, customer_id=customer["customer_id"], field="status", new_value=status)],
                    [stage(reads)])


def remove_customer(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    found = _named_customer(facts, choose)
    if found is None:
        return None
    customer, reads = found
    return Solution({"customer": customer["customer_name"]}, [call(DELETE, customer_id=customer["customer_id"])],
                    [stage(reads)])


def add_lead(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    rep = choose.one("rep", facts.sales_reps)
    name = choose.one("customer", new_customer_names(facts))
    return Solution({"customer": name, "name": first_name(rep)},
                    [call("customer_relationship_manager_add_customer", customer_name=name, assigned_to_email=rep,
                          status="Lead")], [stage(*lookups(rep))])


def change_owner(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    found = _named_customer(facts, choose)
    if found is None:
        return None
    customer, reads = found
    rep = choose.one("rep", [r for r in facts.sales_reps if r != customer["assigned_to_email"]])
    return Solution({"customer": customer["customer_name"], "name": first_name(rep)},
                    [call(UPDATE, customer_id=customer["customer_id"], field="assigned_to_email", new_value=rep)],
                    [stage(*lookups(rep), reads)])


def _hand_over(facts: Facts, choose: Chooser, want_empty: bool | None, statuses: tuple[str, ...]) -> Solution | None:
    rep = choose.one("rep", facts.sales_reps)
    receiver = choose.one("receiver", [r for r in facts.sales_reps if r != rep])
    product = choose.one("product", C.PRODUCTS)
    targets = [c for c in facts.customers if c["assigned_to_email"] == rep and c["status"] in statuses
               and c["product_interest"] == product]
    writes = [call(UPDATE, customer_id=c["customer_id"], field="assigned_to_email", new_value=receiver)
              for c in targets]
    if not want_matches(want_empty, writes):
        return None
    searches = [search_for(facts, [c for c in targets if c["status"] == s], assigned_to_email=rep, status=s,
                           product_interest=product) for s in statuses]
    if None in searches:
        return None
    return Solution({"name": first_name(rep), "name2": first_name(receiver), "product": product.lower()}, writes,
                    [stage(*lookups(rep, receiver)), stage(*searches)])


def hand_over_leads(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    return _hand_over(facts, choose, want_empty, ("Lead",))


def hand_over_pipeline(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    return _hand_over(facts, choose, None if want_empty is None else False, ("Qualified", "Proposal"))


def delete_stage(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    rep = choose.one("rep", facts.sales_reps)
    status = choose.one("status", C.STATUSES)
    product = choose.one("product", C.PRODUCTS)
    targets = [c for c in facts.customers if c["assigned_to_email"] == rep and c["status"] == status
               and c["product_interest"] == product]
    writes = [call(DELETE, customer_id=c["customer_id"]) for c in targets]
    if not want_matches(want_empty, writes):
        return None
    reads = search_for(facts, targets, assigned_to_email=rep, status=status, product_interest=product)
    if reads is None:
        return None
    return Solution({"name": first_name(rep), "status": status.lower(), "product": product.lower()}, writes,
                    [stage(*lookups(rep)), stage(reads)])


def close_silent_proposals(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    product = choose.one("product", C.PRODUCTS)
    weeks = choose.one("weeks", SILENT_WEEKS)
    cutoff = format_date(facts.today - dt.timedelta(weeks=weeks))
    targets = [c for c in facts.customers if c["status"] == "Proposal" and c["product_interest"] == product
               and date_part(c["last_contact_date"]) < cutoff]
    writes = [call(UPDATE, customer_id=c["customer_id"], field="status", new_value="Lost") for c in targets]
    if not want_matches(want_empty, writes):
        return None
    reads = search_for(facts, targets, product_interest=product, status="Proposal", last_contact_date_max=cutoff)
    if reads is None:
        return None
    return Solution({"product": product.lower(), "weeks": weeks}, writes, [stage(reads)])


FAMILIES = (
    Family("R1", "customer_relationship_manager", "set a named customer's status", (
        "Change {customer}'s status to {status} in the CRM.",
        "{customer} has moved to the {status} stage; update the CRM.",
        "Update the CRM so that {customer} shows as {status}.",
    ), set_status),
    Family("R2", "customer_relationship_manager", "remove a named customer", (
        "Remove {customer} from the CRM.",
        "{customer} is no longer a prospect; delete them from the CRM.",
        "Delete the CRM record for {customer}.",
    ), remove_customer),
    Family("R3", "customer_relationship_manager", "add a customer as a Lead owned by a rep", (
        "Add {customer} to the CRM as a new lead owned by {name}.",
        "We have a new lead, {customer}. Put them in the CRM and assign them to {name}.",
        "Create a CRM entry for {customer} as a lead and give it to {name}.",
    ), add_lead),
    Family("R4", "customer_relationship_manager", "move a named customer to another rep", (
        "Reassign {customer} to {name} in the CRM.",
        "{name} is taking over {customer}; update the account owner in the CRM.",
        "Make {name} the owner of {customer} in the CRM.",
    ), change_owner),
    Family("R5", "customer_relationship_manager", "rep A's Leads for a product to rep B", (
        "Hand all of {name}'s leads interested in {product} over to {name2}.",
        "{name2} is taking over {name}'s {product} leads; reassign them in the CRM.",
        "Move every lead of {name}'s with an interest in {product} to {name2}.",
    ), hand_over_leads, empty_share=0.1, max_writes=MAX_REASSIGNMENTS),
    Family("R6", "customer_relationship_manager", "rep A's Qualified or Proposal customers for a product to rep B", (
        "Give {name2} all of {name}'s {product} customers that are qualified or at the proposal stage.",
        "Reassign {name}'s qualified and proposal-stage customers interested in {product} to {name2}.",
        "{name2} now owns {name}'s {product} deals in Qualified or Proposal; update the CRM.",
    ), hand_over_pipeline, max_writes=MAX_PIPELINE_REASSIGNMENTS),
    Family("R7", "customer_relationship_manager", "delete rep A's customers at a status for a product", (
        "Delete all of {name}'s {status} customers interested in {product} from the CRM.",
        "Remove every {product} customer of {name}'s that is in the {status} stage.",
        "Clean up the CRM: delete {name}'s customers with status {status} and an interest in {product}.",
    ), delete_stage, empty_share=0.2, max_writes=MAX_DELETIONS),
    Family("R8", "customer_relationship_manager", "silent Proposal customers for a product to Lost", (
        "Mark as lost every {product} customer who hasn't answered our proposal in {weeks} weeks.",
        "Any customer with a {product} proposal and no contact for {weeks} weeks should move to lost in the CRM.",
        "Move the {product} proposals we haven't heard back on in {weeks} weeks to lost.",
    ), close_silent_proposals, empty_share=0.5, max_writes=MAX_LOST),
)
