"""How the suite measures: the machine, the matmul peak, interleaved timing, child processes.

Imports only the standard library and NumPy at module level.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]  # the repository root
PACKAGES = ("jax", "jaxlib", "flax", "optax", "torch", "numpy")


def machine_info() -> dict[str, Any]:
    """The machine, the versions, the allocator and the threads of this process, as they are
    (call it after the allocator and PyTorch's threads are set)."""
    from gatelab.records import cpu_info  # NumPy and the standard library only

    fields = cpu_info()
    flags = fields.get("flags", "").split()
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    kib = next((int(line.split()[1]) for line in meminfo.splitlines() if "MemTotal" in line), 0)

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout

    def version(package: str) -> str | None:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    threads: dict[str, Any] = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "XLA_FLAGS")}
    if "torch" in sys.modules:
        threads["torch"] = sys.modules["torch"].get_num_threads()
    system = os.environ.get("GATELAB_MALLOC") == "system"
    return {
        "cpu": fields.get("model name") or platform.processor() or "unknown",
        "simd": [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags],
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gib": round(kib / 2**20, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "versions": {p: version(p) for p in PACKAGES},
        "allocator": "glibc default (GATELAB_MALLOC=system)"
        if system
        else "glibc tuned by gatelab.runtime.tune_allocator (mmap off, trimming deferred)",
        "threads": threads,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git": git("rev-parse", "--short", "HEAD").strip(),
        "git_changed_files": len(git("status", "--porcelain").splitlines()),
    }


def matmul_peak(n: int = 2048, repeats: int = 5) -> dict[str, Any]:
    """Best and median GFLOP/s of a float32 ``n x n`` matmul in JAX and PyTorch, after a warm-up.

    The best, not the typical rate: the physical limit is the fastest the machine was seen to go.
    """
    import jax
    import jax.numpy as jnp
    import torch

    a, b = jax.random.normal(jax.random.key(0), (2, n, n), jnp.float32)
    ta, tb = torch.randn(n, n), torch.randn(n, n)
    calls = {
        "jax": lambda: jnp.matmul(a, b).block_until_ready(),
        "torch": lambda: torch.mm(ta, tb),
    }
    out: dict[str, Any] = {"size": n}
    for framework, call in calls.items():
        call()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        rate = 2.0 * n**3 / 1e9
        out[framework] = {"best": rate / min(times), "median": rate / float(np.median(times))}
    return out


@dataclasses.dataclass
class Contender:
    """Something timed: ``run(n)`` does ``n`` training steps and returns when they are done.

    ``flops``: FLOPs of one step; ``elements``: sequence elements of one step (``b * t``, times
    the runs of a group); ``compile_s``: None for PyTorch eager, which compiles nothing.
    """

    name: str
    run: Callable[[int], None]
    flops: float
    elements: int
    compile_s: float | None = None


def spread(samples: Sequence[float]) -> dict[str, float]:
    """Median, p10 and p90 (linear interpolation) and the count of ``samples``."""
    p10, median, p90 = np.percentile(np.asarray(samples, np.float64), [10, 50, 90])
    return {"median": float(median), "p10": float(p10), "p90": float(p90), "n": len(samples)}


def interleave(
    contenders: Sequence[Contender], rounds: int, block_s: float, budget_s: float = math.inf
) -> list[dict[str, Any]]:
    """Times the contenders round-robin: every round times one block of steps of each.

    Each contender first runs one untimed warm-up step, then one timed step that sizes its block
    to about ``block_s`` seconds (one step where the warm-up took twice that). Every round starts
    one contender later, so none always follows the same one. A block's rate is its steps over
    its wall time. Past ``budget_s`` seconds no further round starts once two are done (a busy
    machine can make PyTorch's steps 100x slower: its threads wait for each other).

    Returns:
        One row per contender: name, steps/s spread, elements/s, GFLOP/s (median and p90),
        compile_s and the rounds planned.
    """
    steps = {}
    for c in contenders:
        start = time.perf_counter()
        c.run(1)
        if time.perf_counter() - start >= 2 * block_s:
            steps[c.name] = 1
            continue
        start = time.perf_counter()
        c.run(1)
        one = max(time.perf_counter() - start, 1e-6)
        steps[c.name] = int(max(1, min(10_000, round(block_s / one))))
    samples: dict[str, list[float]] = {c.name: [] for c in contenders}
    begin = time.perf_counter()
    for number in range(rounds):
        if number >= 2 and time.perf_counter() - begin > budget_s:
            break
        for k in range(len(contenders)):
            c = contenders[(number + k) % len(contenders)]
            start = time.perf_counter()
            c.run(steps[c.name])
            samples[c.name].append(steps[c.name] / (time.perf_counter() - start))
    rows = []
    for c in contenders:
        rate = spread(samples[c.name])
        rows.append(
            {
                "name": c.name,
                "steps_per_s": rate,
                "elements_per_s": rate["median"] * c.elements,
                "gflops": rate["median"] * c.flops / 1e9,
                "gflops_p90": rate["p90"] * c.flops / 1e9,
                "compile_s": c.compile_s,
                "rounds_planned": rounds,
            }
        )
    return rows


@dataclasses.dataclass
class Child:
    """A finished child process: exit status (-9: killed at its timeout), wall time, peak RSS."""

    returncode: int
    wall_s: float
    peak_rss_mib: float
    stdout: str
    stderr: str

    def error(self, lines: int = 15) -> str | None:
        """What went wrong, if anything: the timeout, or the end of its stderr."""
        if self.returncode == -9:
            return "timed out (killed)"
        return "\n".join(self.stderr.strip().splitlines()[-lines:]) if self.returncode else None


# A child's ru_maxrss starts at its parent's RSS (exec keeps the high-water mark of the memory
# it replaces, after fork the parent's: here a GB of JAX and PyTorch). So every child runs under
# this bare launcher (~10 MB), whose RUSAGE_CHILDREN after the wait is the child's own peak (and
# that of its waited-for descendants, such as sweep workers).
_LAUNCHER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.call(sys.argv[2:])
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as f:
    json.dump({"wall_s": time.perf_counter() - start, "maxrss_kib": usage.ru_maxrss}, f)
sys.exit(code)
"""


def run_child(
    command: Sequence[str], env: dict[str, str] | None = None, timeout_s: float = 300
) -> Child:
    """Runs ``command`` in the repository root; past ``timeout_s`` its process group is killed.

    Output goes to files, not pipes, so a chatty child never blocks on a full pipe.
    """
    with (
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
        tempfile.TemporaryDirectory() as folder,
    ):
        usage_file = Path(folder) / "usage.json"
        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-S", "-c", _LAUNCHER, str(usage_file), *command],
            stdout=out,
            stderr=err,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
            start_new_session=True,
        )
        try:
            returncode = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            returncode = -9
        usage = json.loads(usage_file.read_text()) if usage_file.exists() else {}
        out.seek(0)
        err.seek(0)
        wall = usage.get("wall_s", time.perf_counter() - start)
        return Child(returncode, wall, usage.get("maxrss_kib", 0) / 1024, out.read(), err.read())
