"""Tool-use environments behind one small interface (base.py).

`make_environment(config)` builds the environment named by `config.name` from the `env` section
of a training config; a new environment only needs a builder in `_BUILDERS`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from grpo_jax.envs.base import Environment, Episode, EpisodeResult, InvalidArguments, ToolCall, parse_arguments


def _workplace(config: Any) -> Environment:
    from grpo_jax.envs.workplace import WorkplaceEnvironment  # heavy imports only when used

    return WorkplaceEnvironment.from_config(config)


_BUILDERS: dict[str, Callable[[Any], Environment]] = {"workplace": _workplace, "workplace_assistant": _workplace}


def make_environment(config: Any) -> Environment:
    """The environment `config.name` names (e.g. "workplace"), built from `config`."""
    builder = _BUILDERS.get(config.name)
    if builder is None:
        raise ValueError(f"unknown environment {config.name!r}; expected one of {sorted(_BUILDERS)}")
    return builder(config)


__all__ = ["Environment", "Episode", "EpisodeResult", "InvalidArguments", "ToolCall", "make_environment",
           "parse_arguments"]
