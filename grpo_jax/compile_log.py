"""Counting and logging XLA compilations.

A run should compile a bounded set of programs (one per shape bucket). JAX reports every backend
compilation through `jax.monitoring`; this module turns those events into a counter that the
sampler and trainer print, and that tests use to prove a change of sampling controls compiles
nothing new.
"""
from __future__ import annotations

import logging
import threading

import jax

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_lock = threading.Lock()
_count = 0
_seconds = 0.0
_installed = False

logger = logging.getLogger("grpo_jax.compile")


def _on_event(name: str, duration_s: float, **_kwargs) -> None:
    global _count, _seconds
    if name == _COMPILE_EVENT:
        with _lock:
            _count += 1
            _seconds += duration_s


def install() -> None:
    """Starts counting compilations in this process (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    jax.monitoring.register_event_duration_secs_listener(_on_event)


def compile_count() -> int:
    """Backend compilations seen since `install()`."""
    install()
    return _count


def compile_seconds() -> float:
    """Seconds spent in backend compilation since `install()`."""
    install()
    return _seconds


class CompileWatch:
    """Logs the compilations that happen inside a `with` block under a label.

    >>> with CompileWatch("sampler.decode[B=16,S=2048]"):
    ...     run()
    """

    def __init__(self, label: str):
        self.label = label
        self.compiled = 0

    def __enter__(self) -> "CompileWatch":
        self._start = compile_count()
        return self

    def __exit__(self, *exc) -> None:
        self.compiled = compile_count() - self._start
        if self.compiled:
            logger.info("compiled %d program(s) for %s", self.compiled, self.label)
