"""Counting and logging XLA compilations, and the persistent compilation cache.

A run should compile a bounded set of programs (one per shape bucket). JAX reports every backend
compilation through `jax.monitoring`; this module turns those events into a counter that the
sampler and trainer print, and that tests use to prove a change of sampling controls compiles
nothing new. With the persistent cache on (`use_persistent_cache`, launch.py's
`compilation.cache_dir`), a program compiled by an earlier run is loaded from disk instead; those
loads are counted too (`cache_hits`) and logged apart from fresh compilations.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import threading

import jax

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"  # a fresh compile or a cache load
_CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"
_lock = threading.Lock()
_count = 0
_seconds = 0.0
_cache_hits = 0
_installed = False

logger = logging.getLogger("grpo_jax.compile")


def _on_event(name: str, duration_s: float, **_kwargs) -> None:
    global _count, _seconds
    if name == _COMPILE_EVENT:
        with _lock:
            _count += 1
            _seconds += duration_s


def _on_plain_event(name: str, **_kwargs) -> None:
    global _cache_hits
    if name == _CACHE_HIT_EVENT:
        with _lock:
            _cache_hits += 1


def install() -> None:
    """Starts counting compilations in this process (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    jax.monitoring.register_event_duration_secs_listener(_on_event)
    jax.monitoring.register_event_listener(_on_plain_event)


def compile_count() -> int:
    """Programs built since `install()`: compiled, or loaded from the persistent cache."""
    install()
    return _count


def cache_hits() -> int:
    """Programs loaded from the persistent compilation cache since `install()`."""
    install()
    return _cache_hits


def compile_seconds() -> float:
    """Seconds spent building programs since `install()` (compiling, or loading from the cache)."""
    install()
    return _seconds


class CompileWatch:
    """Logs the programs built inside a `with` block under a label: compiled (counted in
    `compiled`), or loaded from the persistent cache.

    >>> with CompileWatch("sampler.decode[B=16,S=2048]"):
    ...     run()
    """

    def __init__(self, label: str):
        self.label = label
        self.compiled = 0

    def __enter__(self) -> "CompileWatch":
        self._start = compile_count()
        self._start_seconds = compile_seconds()
        self._start_hits = cache_hits()
        return self

    def __exit__(self, *exc) -> None:
        built = compile_count() - self._start
        loaded = cache_hits() - self._start_hits
        self.compiled = max(built - loaded, 0)
        parts = ([f"compiled {self.compiled} program(s)"] if self.compiled else []) + (
            [f"loaded {loaded} from the compilation cache"] if loaded else [])
        if parts:
            logger.info("%s in %.1f s for %s", " and ".join(parts),
                        compile_seconds() - self._start_seconds, self.label)


def use_persistent_cache(directory: str | None, *, min_compile_seconds: float = 1.0,
                         max_gigabytes: float = 0.0) -> str | None:
    """Keeps every program that took at least `min_compile_seconds` to compile in `directory`
    (JAX's persistent compilation cache), so a later run with the same programs, XLA flags and
    versions loads it instead of compiling it again. "" or None: off. `max_gigabytes` > 0 bounds
    the directory (least recently used entries go first); 0: no bound.

    JAX decides whether to use the cache once, at a process's first compilation: call this before
    anything compiles (launch.py does, once the config is validated). The directory holds
    executables this process will load and run, so it must be one that only you can write.
    Returns its absolute path, or None when off or unusable (a warning says why, and every program
    is compiled as without a cache).
    """
    if not directory:
        return None
    path = os.path.abspath(os.path.expanduser(directory))
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        logger.warning("compilation cache %s is unusable (%s): compiling every program", path, error)
        return None
    max_bytes = int(max_gigabytes * 2**30) if max_gigabytes > 0 else -1
    if max_bytes > 0 and importlib.util.find_spec("filelock") is None:
        # JAX's size bound locks the directory with filelock, and fails without it.
        logger.warning("compilation cache %s: the size bound needs the filelock package; the "
                       "cache is unbounded", path)
        max_bytes = -1
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
    jax.config.update("jax_compilation_cache_max_size", max_bytes)
    return path
