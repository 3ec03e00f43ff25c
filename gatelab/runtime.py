"""Process set-up for the entry points: the allocator, JAX's settings, cheap compilation.

Nothing here runs at import time (``jax.config.update`` belongs in entry points: the CLI, a
sweep's worker processes, the benchmark suite and the tests' conftest). The measurements behind
each setting are in ``experiments/bench/results/2026-11-27.md``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "tune_allocator",
    "configure_jax",
    "use_host_cores",
    "host_device_flags",
    "quiet_failed_io",
    "end_with_parent",
    "compile_cheap",
    "CHEAP_COMPILE",
]

# LLVM's optimisations off: for programs that run once or rarely and compile slowly.
CHEAP_COMPILE = {"xla_backend_optimization_level": 0}


def tune_allocator() -> None:
    """Keeps freed memory in the process instead of returning it to the kernel (glibc only).

    XLA allocates and frees tens of MB of scratch per training step; glibc's default returns
    large blocks to the kernel at once (mmap/munmap), so every step pays the page faults of
    fresh memory again. With mmap off and trimming deferred, the memory is reused (faster for
    gatelab and for PyTorch alike; the results file above has the numbers).
    ``GATELAB_MALLOC=system`` opts out. Call it before the first array is allocated.
    """
    if os.environ.get("GATELAB_MALLOC", "") == "system" or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl, ...): leave the allocator alone
        return
    m_trim_threshold, m_top_pad, m_mmap_max = -1, -2, -4  # from glibc's malloc.h
    libc.mallopt(m_mmap_max, 0)
    libc.mallopt(m_trim_threshold, 1 << 30)
    libc.mallopt(m_top_pad, 64 << 20)


def configure_jax() -> None:
    """Process-wide JAX (and orbax logging) settings of the entry points.

    A persistent compilation cache: a fresh process reuses the programs an earlier one compiled
    (``$GATELAB_JAX_CACHE``, default ``~/.cache/gatelab/jax``; set it empty to turn it off).
    """
    import jax

    # Orbax logs the errors of its background save threads, tracebacks and all, before it raises
    # them; the entry points report an error once, in words (a full disk, a damaged checkpoint).
    for name in ("absl", "asyncio"):  # asyncio: the futures of the failed operation's reads
        logging.getLogger(name).setLevel(logging.CRITICAL)
    quiet_failed_io()
    cache = os.environ.get("GATELAB_JAX_CACHE", str(Path.home() / ".cache" / "gatelab" / "jax"))
    if cache:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


_DEVICE_COUNT = "--xla_force_host_platform_device_count"
_OURS = "GATELAB_HOST_DEVICES"  # set beside the flag when gatelab, not the user, chose the count


def host_device_flags(flags: str, count: int, ours: bool) -> str | None:
    """``flags`` (an ``XLA_FLAGS`` value) with ``count`` host devices, or ``None`` to leave them:
    a device count the user set (``ours`` false) is the user's choice."""
    words = flags.split()
    given = [w for w in words if w.startswith(_DEVICE_COUNT + "=")]
    if given and not ours:
        return None
    kept = [w for w in words if not w.startswith(_DEVICE_COUNT + "=")]
    return " ".join([*kept, f"{_DEVICE_COUNT}={count}"] if count > 1 else kept)


def use_host_cores(runs: int | None = None) -> int:
    """One XLA CPU device per usable core (at most ``runs``), so that a group trained in this
    process (``run.devices=0``: every local device) puts its runs on every core: the run axis
    is sharded, with no communication between devices, and the records are those of one device
    (tests/test_devices.py). A group of 8 ran 1.8x faster on 2 cores than on one device
    (experiments/bench/results/scaling.md).

    Does nothing once JAX has started its backends, or where ``XLA_FLAGS`` already sets a
    device count (the user's); replaces a count it set itself (a sweep worker pinned to one core
    that inherited its parent's gets one device). Accelerators are unaffected: the flag makes
    host (CPU) devices only. Returns the device count asked for (1: none).
    """
    from jax._src import xla_bridge

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    count = max(1, min(cores or 1, runs or cores or 1))
    if xla_bridge.backends_are_initialized():
        return 1
    flags = host_device_flags(os.environ.get("XLA_FLAGS", ""), count, _OURS in os.environ)
    if flags is None:
        return 1
    os.environ["XLA_FLAGS"] = flags
    os.environ[_OURS] = str(count)
    return count


def _is_io_cleanup(error: BaseException | None, where: object = None) -> bool:
    """Whether an error is the debris of an orbax read or write that already failed: the
    callbacks of its other pending tensorstore operations finding their event loop closed, and
    its coroutines left unawaited (the failure itself is raised, and reported, once)."""
    if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
        return True
    code = getattr(where, "cr_code", None)
    return code is not None and "orbax" in code.co_filename


def quiet_failed_io() -> None:
    """Keeps the debris of a failed orbax read or write (``_is_io_cleanup``) off stderr: after a
    damaged checkpoint or a full disk, one message says what happened instead of thousands of
    lines of tracebacks. Every other uncaught or unraisable error is printed as before."""
    excepthook, unraisablehook = sys.excepthook, sys.unraisablehook

    def quiet_excepthook(kind, error, trace):
        if not _is_io_cleanup(error):
            excepthook(kind, error, trace)

    def quiet_unraisablehook(unraisable):
        if not _is_io_cleanup(unraisable.exc_value, unraisable.object):
            unraisablehook(unraisable)

    sys.excepthook, sys.unraisablehook = quiet_excepthook, quiet_unraisablehook


def end_with_parent(parent: int, every_s: float = 0.5) -> None:
    """Ends this (worker) process once the process that started it is gone.

    A parent killed outright (SIGKILL, an out-of-memory kill) cannot stop its pool, whose
    workers would work on as orphans beside the run that resumes it, two processes to a core.
    For a sweep's workers, a worker gone takes its claim with it (``locks``) and the resumed
    sweep retrains the group from its last checkpoint. A daemon thread watches the parent's pid
    (portable) and leaves with ``os._exit``, as a kill would.
    """

    def watch():
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(1)

    threading.Thread(target=watch, name="gatelab-parent-watch", daemon=True).start()


def compile_cheap(fn: Callable, *args) -> Callable:
    """``fn`` compiled for ``args`` with LLVM's optimisations off (:data:`CHEAP_COMPILE`).

    For code that runs once or rarely and compiles slowly, such as initialisers with QR
    decompositions (orthogonal kernels): the results file above, "Cheap compilation".
    """
    import jax

    return jax.jit(fn).lower(*args).compile(compiler_options=CHEAP_COMPILE)
