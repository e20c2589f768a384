"""All task families, by id (E1-E9, C1-C11, A1-A12, P1-P8, R1-R8, M1-M21)."""
from __future__ import annotations

from collections.abc import Sequence

from grpo_jax.envs.workplace.tasks import (
    analytics, calendar, crm, email, multi_domain, multi_domain_analytics, project_management,
)
from grpo_jax.envs.workplace.tasks.base import Family

_MULTI_DOMAIN = sorted(multi_domain.FAMILIES + multi_domain_analytics.FAMILIES, key=lambda f: int(f.id[1:]))
FAMILIES: tuple[Family, ...] = (
    email.FAMILIES + calendar.FAMILIES + analytics.FAMILIES + project_management.FAMILIES + crm.FAMILIES
    + tuple(_MULTI_DOMAIN)
)
FAMILIES_BY_ID: dict[str, Family] = {family.id: family for family in FAMILIES}


def select_families(ids: Sequence[str] | None = None) -> tuple[Family, ...]:
    """The families with the given ids (all when None or empty), in registry order."""
    if not ids:
        return FAMILIES
    unknown = sorted(set(ids) - set(FAMILIES_BY_ID))
    if unknown:
        raise ValueError(f"unknown task families {unknown}; expected ids from {list(FAMILIES_BY_ID)}")
    return tuple(FAMILIES_BY_ID[i] for i in FAMILIES_BY_ID if i in set(ids))
