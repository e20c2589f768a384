"""Train / validation split by construction.

Every task has a canonical key: its family, its sandbox and the parameters its family chose
(never the phrasing). A stable hash of the key decides the split, and each generator rejects
the keys of the other split, so no task (in any phrasing) can be in both.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

TRAIN = "train"
VALIDATION = "validation"
SPLITS = (TRAIN, VALIDATION)
VALIDATION_FRACTION = 0.15
_HASH_HEX_DIGITS = 12


def task_key(family_id: str, sandbox_fingerprint: str, params: Mapping[str, Any]) -> str:
    """The canonical identity of a task."""
    return json.dumps([family_id, sandbox_fingerprint, params], sort_keys=True, default=str)


def split_of(key: str, validation_fraction: float = VALIDATION_FRACTION) -> str:
    """The split a task key belongs to, from a hash that is stable across runs and machines."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:_HASH_HEX_DIGITS]
    position = int(digest, 16) / 16 ** _HASH_HEX_DIGITS
    return VALIDATION if position < validation_fraction else TRAIN
