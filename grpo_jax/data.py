"""Tasks: an unlimited, deterministic, resumable stream of training tasks and a fixed validation set.

Training tasks come in blocks generated on demand. Block b is drawn with its own seed on one of
`env.train_sandboxes` generated companies (or on the CSV sandbox), so the stream never runs dry
and any position can be regenerated after a restart: the position ({"block", "offset"}) is all
a checkpoint needs to store. Validation tasks come from the validation split of the default
sandbox (or of the first `validation.sandboxes` generated ones), which the task generator keeps
disjoint from every training split by construction.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
from typing import Any

from grpo_jax.envs.workplace import Sandbox, generate_tasks


def _families(env_config) -> list[str] | None:
    names = [name.strip() for name in str(env_config.families).split(",") if name.strip()]
    return names or None


def _mix(*parts) -> int:
    """A stable 63-bit seed from several parts (Python's hash() is salted per process)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generated_sandbox(env_config, index: int) -> Sandbox:
    """Generated company number `index` (0 is the default one; training uses the first
    `env.train_sandboxes`)."""
    return Sandbox.generate(int(env_config.sandbox_seed) + index, now=env_config.now)


def default_sandbox(env_config) -> Sandbox:
    if env_config.sandbox == "csv":
        return Sandbox.from_csv_dir(env_config.csv_dir, now=env_config.now)
    if env_config.sandbox == "generated":
        return generated_sandbox(env_config, 0)
    raise ValueError(f"env.sandbox={env_config.sandbox!r}; expected 'generated' or 'csv'")


@dataclasses.dataclass
class StreamPosition:
    block: int = 0
    offset: int = 0

    def to_json(self) -> dict[str, int]:
        return {"block": self.block, "offset": self.offset}

    @classmethod
    def from_json(cls, value: Any) -> "StreamPosition":
        if not value:
            return cls()
        return cls(block=int(value["block"]), offset=int(value["offset"]))


class TaskStream:
    """Training tasks by position; `take(count)` returns the next tasks and advances."""

    def __init__(self, env_config, *, seed: int, block_size: int = 256,
                 position: StreamPosition | None = None):
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.env_config = env_config
        self.seed = seed
        self.block_size = block_size
        self.families = _families(env_config)
        self.position = position or StreamPosition()
        self._block_index: int | None = None
        self._block: list[dict] = []
        self._csv_sandbox = default_sandbox(env_config) if env_config.sandbox == "csv" else None

    def _sandbox_for_block(self, block: int) -> Sandbox:
        if self._csv_sandbox is not None:
            return self._csv_sandbox
        count = max(1, int(self.env_config.train_sandboxes))
        return generated_sandbox(self.env_config, block % count)

    def _load(self, block: int) -> list[dict]:
        if self._block_index != block:
            tasks = generate_tasks(
                self._sandbox_for_block(block), seed=_mix(self.seed, "train", block), n=self.block_size,
                split="train", families=self.families, include_tools=False,
                first_id=block * self.block_size, allow_fewer=True)
            if not tasks:
                raise ValueError(f"no training tasks could be drawn for block {block} "
                                 f"(families={self.families})")
            self._block_index, self._block = block, tasks
        return self._block

    def take(self, count: int) -> list[dict]:
        tasks = []
        while len(tasks) < count:
            block = self._load(self.position.block)
            piece = block[self.position.offset:self.position.offset + count - len(tasks)]
            tasks += piece
            self.position.offset += len(piece)
            if self.position.offset >= len(block):
                self.position = StreamPosition(self.position.block + 1, 0)
        return tasks


def validation_tasks(env_config, *, num_tasks: int, seed: int, allow_fewer: bool = False,
                     sandboxes: int = 1) -> list[dict]:
    """A fixed validation set from the validation split of `sandboxes` generated sandboxes (the
    default sandbox and the training sandboxes after it), taken round-robin; one sandbox with the
    CSV sandbox. Validation keys are never drawn for training on any sandbox (the key holds the
    sandbox), so every sandbox's validation split is unseen in training.

    A family mix has only so many distinct validation tasks per sandbox: asking for more raises,
    or with `allow_fewer` returns those (the trainer then rejects the setting by name).
    """
    families = _families(env_config)
    if sandboxes < 1:
        raise ValueError(f"sandboxes={sandboxes}; expected >= 1")
    if sandboxes == 1:
        return generate_tasks(default_sandbox(env_config), seed=_mix(seed, "validation"),
                              n=num_tasks, split="validation", families=families,
                              include_tools=False, allow_fewer=allow_fewer)
    if env_config.sandbox != "generated":
        raise ValueError(f"sandboxes={sandboxes} needs generated sandboxes, not "
                         f"env.sandbox={env_config.sandbox!r}")
    per_sandbox = [
        generate_tasks(generated_sandbox(env_config, i),
                       seed=_mix(seed, "validation", i), n=num_tasks, split="validation",
                       families=families, include_tools=False, allow_fewer=True)
        for i in range(sandboxes)]
    tasks = [row for rows in itertools.zip_longest(*per_sandbox) for row in rows
             if row is not None][:num_tasks]
    if len(tasks) < num_tasks and not allow_fewer:
        raise ValueError(f"only {len(tasks)} distinct validation tasks could be drawn from "
                         f"{sandboxes} sandboxes; use more sandboxes for more tasks")
    for i, row in enumerate(tasks):
        row["id"] = i
    return tasks
