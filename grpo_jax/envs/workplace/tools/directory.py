"""Company directory: find staff email addresses by (part of a) name."""
from __future__ import annotations

from typing import Any

from grpo_jax.envs.workplace.sandbox import World
from grpo_jax.envs.workplace.tools.common import regex_matches
from grpo_jax.envs.workplace.tools.spec import Param, ToolSpec


def company_directory_find_email_address(world: World, /, name: Any = "") -> Any:
    if name == "":
        return "Name not provided."
    addresses = world.sandbox.directory
    mask = regex_matches(addresses, name.lower())
    return [address for address, keep in zip(addresses, mask) if keep]


TOOLS = (
    ToolSpec("company_directory_find_email_address", company_directory_find_email_address,
             "Finds the staff email addresses that contain the given name (case-insensitive).", (
                 Param("name", "A first name, last name or part of one"),
             )),
)
