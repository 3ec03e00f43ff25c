"""How the benchmark measures: the machine, the matmul peak, FLOP counts, interleaved timing,
child processes with their peak memory, and Markdown tables.

Imports only the standard library and NumPy at module level. The memory children of the
benchmark all import the contenders' module, so each holds JAX, Flax and PyTorch: compare their
peak RSS above the child that imports the same and trains nothing ("above imports-only").

Notation: ``b`` batch, ``t`` time, ``d`` input features, ``H`` hidden features, ``k`` the columns
of the fused matmuls (live blocks times ``H``).
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import math
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "Contender",
    "Child",
    "machine_info",
    "matmul_peak",
    "rnn_forward_flops",
    "interleave",
    "run_child",
    "self_peak_rss_mib",
    "markdown_table",
    "spread",
    "fmt",
]

ROOT = Path(__file__).resolve().parents[2]  # the repository root


# ==================================================================================================
# The machine.
# ==================================================================================================


def _cpuinfo() -> dict[str, Any]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = value.strip()
        if key.strip() == "flags" and not flags:
            flags = set(value.split())
    model = model or platform.processor() or "unknown"
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    return {"cpu": model, "simd": simd}


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git() -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    changed = [line for line in git("status", "--porcelain").splitlines() if line]
    return {"commit": git("rev-parse", "--short", "HEAD"), "changed_files": len(changed)}


def machine_info() -> dict[str, Any]:
    """The machine, the library versions, the allocator and the thread settings of this process.

    Call it after the allocator was set (``gatelab.cli.tune_allocator``) and after PyTorch's
    threads were set: it reports them as they are.
    """
    info = {
        **_cpuinfo(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gib": _memory_gib(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "versions": {p: _version(p) for p in ("jax", "jaxlib", "flax", "optax", "torch", "numpy")},
        "allocator": (
            "glibc malloc, default settings (GATELAB_MALLOC=system)"
            if os.environ.get("GATELAB_MALLOC") == "system"
            else "glibc malloc tuned by gatelab.cli.tune_allocator (mmap off, trim deferred)"
        ),
        "threads": {
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "XLA_FLAGS": os.environ.get("XLA_FLAGS"),
        },
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git": _git(),
    }
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        info["threads"]["torch_intra_op"] = torch.get_num_threads()
        info["threads"]["torch_inter_op"] = torch.get_num_interop_threads()
    if "jax" in sys.modules:
        jax = sys.modules["jax"]
        info["jax_backend"] = jax.default_backend()
        info["threads"]["jax"] = "XLA's own pool (one thread per core unless XLA_FLAGS says)"
    return info


# ==================================================================================================
# The matmul peak and FLOP counts.
# ==================================================================================================

PEAK_SIZE = 2048  # float32 n x n matmuls: large enough for the BLAS kernels' best rate


def matmul_peak(repeats: int = 5) -> dict[str, Any]:
    """The best and median GFLOP/s of a float32 ``n x n`` matmul in JAX and in PyTorch.

    The best of several blocked repetitions after a warm-up: the physical limit is the fastest
    the machine was seen to go, not its typical rate.
    """
    import jax
    import jax.numpy as jnp
    import torch

    n = PEAK_SIZE
    flops = 2.0 * n**3
    out: dict[str, Any] = {"size": n, "flops": flops}

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        times.append(time.perf_counter() - start)
    out["jax"] = _rates(flops, times)

    ta, tb = torch.randn(n, n), torch.randn(n, n)
    torch.mm(ta, tb)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(ta, tb)
        times.append(time.perf_counter() - start)
    out["torch"] = _rates(flops, times)
    out["gflops"] = max(out["jax"]["best_gflops"], out["torch"]["best_gflops"])
    return out


def _rates(flops: float, times: list[float]) -> dict[str, float]:
    return {
        "best_gflops": flops / min(times) / 1e9,
        "median_gflops": flops / float(np.median(times)) / 1e9,
    }


def rnn_forward_flops(kind: str, d: int, h: int, b: int, t: int, spec: Any = None) -> float:
    """Matmul FLOPs of one forward pass of one recurrent layer over (b, t, d), counted by hand.

    Per step ``2 b (d k + r k)``: the input matmul ``(b, d) x (d, k)`` and the recurrent one
    ``(b, r) x (r, k)``, with ``k`` the live blocks times ``H`` and ``r = H`` (``H + G H`` with
    full gate recurrence, whose gate activations join ``h``; 0 for the min family, whose gates
    see only ``x``). Elementwise work (activations, peepholes, the optimizer) is not counted.

    Args:
        kind: ``"lstm"`` or ``"gru"`` for the PyTorch and Flax cells, ``"spec"`` for a gatelab
            spec (then ``spec`` is it).
    """
    from gatelab.specs import GRUSpec, LSTMSpec, MinSpec  # light: no JAX arrays

    match kind:
        case "lstm":
            k, r = 4 * h, h
        case "gru":
            k, r = 3 * h, h
        case "spec":
            learned = len(spec.learned_gates)
            k = (learned + 1) * h
            match spec:
                case MinSpec():
                    r = 0
                case LSTMSpec(gate_recurrence=True) if learned:
                    r = h + learned * h
                case LSTMSpec() | GRUSpec():
                    r = h
        case _:
            raise ValueError(f"kind={kind!r}; allowed: lstm, gru, spec")
    return 2.0 * b * t * (d * k + r * k)


TRAIN_FLOPS_FACTOR = 3.0  # forward + backward, the backward counted as twice the forward


# ==================================================================================================
# Interleaved timing.
# ==================================================================================================


@dataclasses.dataclass
class Contender:
    """Something timed: ``run(n)`` does ``n`` training steps and returns when they are done
    (blocked on the result).

    Attributes:
        name: how the tables name it.
        run: the steps.
        flops: matmul FLOPs of one step (``TRAIN_FLOPS_FACTOR`` times the forward count).
        elements: sequence elements of one step (``b * t``, times the runs of a group).
        compile_s: the time to compile its step (None for PyTorch eager, which has none).
        group: which table it belongs to; ``info`` is copied into its result row.
    """

    name: str
    run: Callable[[int], None]
    flops: float
    elements: int
    compile_s: float | None = None
    group: str = ""
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


def spread(samples: Sequence[float]) -> dict[str, float]:
    """Median, p10 and p90 (linear interpolation) and the count of ``samples``."""
    values = np.asarray(samples, np.float64)
    p10, median, p90 = np.percentile(values, [10, 50, 90])
    return {"median": float(median), "p10": float(p10), "p90": float(p90), "n": int(len(values))}


def interleave(
    contenders: Sequence[Contender],
    rounds: int,
    block_s: float,
    warmup: int = 1,
    budget_s: float = math.inf,
) -> list[dict[str, Any]]:
    """Times the contenders round-robin: every round times one block of each.

    Each contender first runs ``warmup`` steps (not timed), then one timed step that sets its
    block to about ``block_s`` seconds of steps (a block of one step where a warm-up step took
    twice that). Every round starts one contender later, so no contender is always first after
    another. The rate of a block is steps over its wall time. Past ``budget_s`` seconds of
    rounds, no further round starts once two are done (a busy machine can make PyTorch's steps
    100x slower: its OpenMP threads wait for each other when a core is taken).

    Returns:
        One row per contender: name, steps/s spread, elements/s, GFLOP/s, compile_s, its info.
    """
    reps = {}
    warmup_s = {}
    warmup = max(1, warmup)
    for contender in contenders:
        start = time.perf_counter()
        contender.run(warmup)
        warmup_s[contender.name] = time.perf_counter() - start
        if warmup_s[contender.name] / warmup >= 2 * block_s:
            reps[contender.name] = 1
            continue
        start = time.perf_counter()
        contender.run(1)
        one = time.perf_counter() - start
        reps[contender.name] = int(max(1, min(10_000, round(block_s / max(one, 1e-6)))))
    samples: dict[str, list[float]] = {c.name: [] for c in contenders}
    count = len(contenders)
    start_rounds = time.perf_counter()
    for number in range(rounds):
        if number >= 2 and time.perf_counter() - start_rounds > budget_s:
            break
        for k in range(count):
            contender = contenders[(number + k) % count]
            n = reps[contender.name]
            start = time.perf_counter()
            contender.run(n)
            samples[contender.name].append(n / (time.perf_counter() - start))
    rows = []
    for contender in contenders:
        rate = spread(samples[contender.name])
        rows.append(
            {
                "name": contender.name,
                "group": contender.group,
                "steps_per_s": rate,
                "steps_per_block": reps[contender.name],
                "rounds_planned": rounds,
                "elements_per_s": rate["median"] * contender.elements,
                "gflops": rate["median"] * contender.flops / 1e9,
                "gflops_p90": rate["p90"] * contender.flops / 1e9,
                "flops_per_step": contender.flops,
                "compile_s": contender.compile_s,
                "warmup_s": warmup_s[contender.name],
                **contender.info,
            }
        )
    return rows


# ==================================================================================================
# Child processes and memory.
# ==================================================================================================


@dataclasses.dataclass
class Child:
    """A finished child process: exit status, wall time, peak RSS and its output."""

    returncode: int
    wall_s: float
    peak_rss_mib: float
    stdout: str
    stderr: str


# A child's ``ru_maxrss`` starts at its parent's RSS: exec records the high-water mark of the
# memory it replaces, which after fork or vfork is the parent's (here 1 GB of JAX and PyTorch).
# So every child runs under this small launcher (a bare Python, ~10 MB), whose RUSAGE_CHILDREN
# after the wait is the child's own peak (and its waited-for descendants', e.g. sweep workers).
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
    command: Sequence[str],
    env: dict[str, str] | None = None,
    timeout_s: float = 1200.0,
    cwd: Path = ROOT,
) -> Child:
    """Runs ``command`` to its end and measures its wall time and peak RSS on its own.

    Output goes to temporary files, not pipes, so a chatty child never blocks on a full pipe.
    Past ``timeout_s`` its whole process group is killed (return code -9).
    """
    import json
    import signal
    import tempfile

    environment = {**os.environ, **(env or {})}
    with (
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
        tempfile.TemporaryDirectory() as folder,
    ):
        report = Path(folder) / "usage.json"
        launcher = [sys.executable, "-S", "-c", _LAUNCHER, str(report), *command]
        start = time.perf_counter()
        process = subprocess.Popen(
            launcher, stdout=out, stderr=err, env=environment, cwd=cwd, start_new_session=True
        )
        try:
            returncode = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            returncode = process.wait()
        wall = time.perf_counter() - start
        usage = json.loads(report.read_text()) if report.exists() else {}
        out.seek(0)
        err.seek(0)
        return Child(
            returncode,
            usage.get("wall_s", wall),
            usage.get("maxrss_kib", 0) / 1024,
            out.read(),
            err.read(),
        )


def self_peak_rss_mib() -> float:
    """This process's peak RSS so far (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ==================================================================================================
# Markdown.
# ==================================================================================================


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table; columns of numbers (and blanks) right-aligned."""

    def numeric(i: int) -> bool:
        values = [row[i] for row in rows if row[i] not in (None, "")]
        return bool(values) and all(isinstance(v, (int, float)) for v in values)

    align = ["---:" if numeric(i) else ":---" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,d}"
    if isinstance(value, float):
        if value == 0:
            return "0"
        magnitude = abs(value)
        if magnitude >= 1000:
            return f"{value:,.0f}"
        if magnitude >= 100:
            return f"{value:.0f}"
        if magnitude >= 10:
            return f"{value:.1f}"
        if magnitude >= 0.1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value).replace("|", "\\|")
