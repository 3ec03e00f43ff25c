"""gatelab's benchmark suite (GitHub issue 6): how fast, against what, and why.

    python -m experiments.bench                  # the full form: about 10 minutes on 2 cores
    python -m experiments.bench --quick          # the smoke form: about 2 minutes
    python -m experiments.bench --sections throughput,design --hidden 128 --only lstm,torch-lstm
    python -m experiments.bench --device         # one accelerator: about 3-4 minutes on an H200
    python -m experiments.bench --device-smoke   # its smoke form: about 30 s on 2 cores
    python -m experiments.bench --study          # a whole study, three ways: about 2 hours
    python -m experiments.bench --study-small    # its small form: about 10 minutes

Writes ``OUT/bench.md`` and ``OUT/bench.json`` (``bench-quick.*`` with ``--quick``; ``OUT``
defaults to ``experiments/bench/results``, where the latest full run is kept) and prints the
Markdown. ``--json -`` prints the JSON instead and writes nothing: how the suite runs itself in
child processes. The dated files beside them (``results/YYYY-MM-DD.md``) are the stable record
of the measurements behind gatelab's defaults, written by hand from a run.

Sections (``--sections``, comma-separated; all by default):

``peak``
    The matmul peak: float32 2048 x 2048 in JAX and PyTorch, best of 5, at the start and the
    end; the larger best is the peak. Every GFLOP/s figure is also given as a percentage of it,
    and one above it is flagged (a FLOP count or a timing is wrong).
``throughput``
    Training-step throughput at each ``--hidden`` size (batch 64, 100 steps, 32 inputs): gatelab
    ``lstm``, ``gru``, ``NFG``, ``CIFG``, ``mingru`` (``GatedRNN`` in a jitted train step), the
    same ``lstm`` with the hand-written backward pass (``lstm:fused``), Flax
    ``nn.RNN(OptimizedLSTMCell / GRUCell)`` and PyTorch ``nn.LSTM`` / ``nn.GRU`` (eager, threads
    = cores); ``vanilla`` and ``NIG`` at the largest size. Steps/s (median, p10-p90 over
    interleaved rounds), sequence elements/s, GFLOP/s; compile time apart.
``design``
    The levers side by side, each table interleaved: the input projection inside the scan or
    hoisted (a plain LSTM); one matmul for all gates (``GatedRNN``) or one per gate
    (``nn.RNN(GatedCell)``); ``unroll`` 1, 2, 4; a group of 8 runs as ``jax.vmap``, ``jax.lax.map``
    or 8 calls (hidden 32 and 128); ``lstm`` with each regulariser (dropout untied and tied,
    zoneout, weight drop, layer norm) against none (hidden 32 and 128); the backward pass (from
    the throughput rows); and the allocator, glibc's default or
    ``gatelab.runtime.tune_allocator``, in child processes (``GATELAB_MALLOC=system`` or not,
    alternating) that each time ``lstm`` and ``torch-lstm``.
``grid``
    lstm and Greff et al.'s 8 variants x 5 seeds on MNIST-1D (``grid_config.py``) through
    ``gatelab sweep --workers 2``, a loop of ``gatelab train`` processes, PyTorch one run after
    another, and ``train_and_evaluate`` one run after another in one process (``grid.py``). The
    serial contenders run 6 of the 45 runs and their time for the grid is estimated from them.
``memory``
    Peak RSS of child processes that each train one contender (hidden 128) against one that
    only imports, with the peak RSS and compile time of every process the other sections started.

``--device`` (a form of its own, instead of the sections: ``device.py``)
    Training throughput on the default JAX device, in run-steps/s (runs x optimisation steps
    per second), of a group of R = 1, 8, 64, 256 runs of gatelab ``lstm`` and ``gru`` (hidden
    128, batch 64, sequence 100, 32 inputs, Adam; each run its own parameters, Adam state and
    batch) trained as one ``jax.vmap`` program, as the runner trains a group on an accelerator;
    against ``jax.experimental.rnn.lstm`` (cuDNN) and PyTorch ``nn.LSTM`` / ``nn.GRU`` on
    ``cuda``, measured for one run, R runs one after another being R times that (the rows say
    so). A call is a jitted ``lax.scan`` of 10 steps (PyTorch: 10 eager steps); one child per
    group size, and one for PyTorch, each with a timeout; a size that runs out of memory or
    time is a row that says so. Writes ``OUT/device.md`` and ``.json`` (``device-smoke.*``). On
    the CPU it still runs, its header saying that it is not the GPU measurement, and
    ``jax.experimental.rnn`` (no CPU lowering) times its reference ``lstm_ref``, named as such.
    Its children stop at 4 minutes, by its own budget; about 3-4 minutes on an H200 is the
    plan, not yet a measurement. ``--device-smoke`` (or ``--device --quick``): R = 1, 2, hidden
    16, sequence 10, batch 8, 2 steps a call; about 30 s on 2 cores.

``--study`` (a form of its own: ``study.py``)
    The whole Greff study at its full protocol (vanilla, Greff's eight variants, lstm and gru x
    5 seeds on MNIST-1D, 4,000 steps: 55 runs), every run trained, through ``gatelab sweep
    --workers 2`` and two PyTorch baselines in two single-thread workers: ``nn.LSTM``/``nn.GRU``
    for every run (no ablation possible: PyTorch's lower bound) and Greff's cells looped over
    time under ``torch.compile``. ``--contenders`` picks a subset, ``--workdir`` keeps the
    runs. Writes ``OUT/study.md`` and ``.json``; ``--study-small``: 4 variants x 2 seeds x 1,000
    steps, ``OUT/study-small.*``.

Honest timing: results are blocked on; warm-up steps are not timed and compile time is reported
apart; the contenders of a table run in one process, round-robin over rounds, and their medians
and p10-p90 are reported; every table's contenders share the allocator and threads that the
header gives. This process has no persistent compilation cache (its compile times are real
compilations); the grid's gatelab contenders each start with an empty one.

Time of the full form on the 2-core AMD EPYC of ``results/2026-11-27.md``: about 9-10 minutes
(peak 10 s, throughput 2 minutes, design 1.5, its allocator children 1, grid 4-4.5, memory 0.5).
Every child has a timeout, so a hung contender is reported instead of stalling the suite. Run
it on a quiet machine: a second user's work shows in every figure (PyTorch's two OpenMP threads
suffer most when a core is taken).
"""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from experiments.bench import report
from experiments.bench.measure import ROOT, machine_info, matmul_peak, run_child
from gatelab import runtime

SECTIONS = ("peak", "throughput", "design", "grid", "memory")
CHILD_TIMEOUT_S = 300  # a child of the suite that hangs is killed and reported
SUITE_TIMEOUT_S = 30 * 60  # three times the full form: then every thread's traceback, and exit


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes and repetitions of one form of the suite."""

    batch: int = 64
    steps: int = 100
    features: int = 32
    hidden: tuple[int, ...] = (32, 128, 512)
    rounds: int = 5
    block_s: float = 0.25  # seconds of steps per timed block
    budget_s: float = 120.0  # a table's rounds stop past this (after two rounds)
    design_small: int = 128  # unroll and the groups of runs: at hidden sizes up to this
    child_hidden: int = 128  # the allocator's and the memory section's children
    allocator_repeats: int = 2  # tuned, system, tuned, system
    memory_contenders: tuple[str, ...] = ("none", "lstm", "flax-lstm", "torch-lstm")
    cheap: bool = False  # compile with gatelab.runtime.CHEAP_COMPILE


QUICK = Plan(
    batch=8,
    steps=10,
    features=4,
    hidden=(16,),
    rounds=3,
    block_s=0.02,
    budget_s=20.0,
    design_small=16,
    child_hidden=16,
    allocator_repeats=1,
    memory_contenders=("none", "lstm"),
    cheap=True,
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _timed(plan: Plan, hidden: int, label: str, build) -> list[dict[str, Any]]:
    """Builds (compiles) a table's contenders at ``hidden`` and times them interleaved."""
    from experiments.bench.contenders import Shape
    from experiments.bench.measure import interleave

    log(f"{label} H={hidden}: compiling")
    built = build(Shape(plan.batch, plan.steps, plan.features, hidden, plan.cheap))
    log(f"{label} H={hidden}: timing {len(built)} contenders")
    rows = interleave(built, plan.rounds, plan.block_s, plan.budget_s)
    return [{"hidden": hidden, **row} for row in rows]


def section_throughput(plan: Plan, only: list[str] | None) -> list[dict[str, Any]]:
    from experiments.bench import contenders

    rows = []
    for hidden in plan.hidden:
        names = (
            only if only is not None else contenders.throughput_names(hidden == max(plan.hidden))
        )
        if names:
            build = lambda shape, names=names: [contenders.throughput(n, shape) for n in names]
            rows += _timed(plan, hidden, "throughput", build)
    return rows


def section_design(plan: Plan) -> dict[str, list[dict[str, Any]]]:
    from experiments.bench import contenders

    small = [h for h in plan.hidden if h <= plan.design_small] or [min(plan.hidden)]
    levers = {
        "projection": (plan.hidden, contenders.projection),
        "gates": (plan.hidden, contenders.gates),
        "unroll": (small, contenders.unroll),
        "runs": (small, contenders.runs),
        "regularisers": (small, contenders.regularisers),
    }
    return {
        lever: [row for hidden in sizes for row in _timed(plan, hidden, f"design {lever}", build)]
        for lever, (sizes, build) in levers.items()
    }


def _child(quick: bool, hidden: int, only: str, env: dict[str, str] | None = None) -> dict:
    """This suite in a child process: the throughput of ``only`` at ``hidden``."""
    command = [sys.executable, "-m", "experiments.bench", "--sections", "throughput"]
    command += ["--hidden", str(hidden), "--only", only, "--json", "-"] + ["--quick"] * quick
    child = run_child(command, env, CHILD_TIMEOUT_S)
    record = {"hidden": hidden, "env": env or {}, "wall_s": child.wall_s, "rows": []}
    record |= {"peak_rss_mib": child.peak_rss_mib, "returncode": child.returncode}
    try:
        record["rows"] = json.loads(child.stdout)["sections"]["throughput"]
    except (json.JSONDecodeError, KeyError):
        record["error"] = child.error() or "no JSON from the child"
    return record


def section_allocator(plan: Plan, quick: bool) -> list[dict[str, Any]]:
    """lstm and torch-lstm in child processes, the tuned and the system allocator alternating."""
    children = []
    for repeat in range(plan.allocator_repeats):
        for setting in ("tuned", "system"):
            log(f"design allocator: {setting} child {repeat + 1}/{plan.allocator_repeats}")
            env = {"GATELAB_MALLOC": "system" if setting == "system" else ""}
            child = _child(quick, plan.child_hidden, "lstm,torch-lstm", env)
            children.append({"setting": setting, **child})
    return children


def section_memory(plan: Plan, quick: bool) -> list[dict[str, Any]]:
    """One child per contender, and one that only imports: peak RSS and compile time."""
    children = []
    for only in plan.memory_contenders:
        log(f"memory: child with {only}")
        children.append({"contender": only, **_child(quick, plan.child_hidden, only)})
    return children


def section_grid(quick: bool) -> dict[str, Any]:
    from experiments.bench.grid import run_grid

    workdir = Path(tempfile.mkdtemp(prefix="gatelab-bench-grid-"))
    try:
        return run_grid(workdir, quick, log)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.bench",
        description="gatelab's benchmark suite: the matmul peak, throughput, design rows, a "
        "whole grid, compile time and memory.",
        epilog="sections: " + ", ".join(SECTIONS),
    )
    parser.add_argument("--quick", action="store_true", help="the smoke form (~2 minutes)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "experiments" / "bench" / "results", help="folder"
    )
    parser.add_argument("--hidden", help="hidden sizes (default 32,128,512; --quick: 16)")
    parser.add_argument("--only", help="throughput contenders, e.g. lstm,torch-lstm (none: none)")
    parser.add_argument("--json", choices=["-"], help="-: print the JSON, write no files")
    parser.add_argument(
        "--device",
        action="store_true",
        help="instead of the sections: groups of runs on the default JAX device (~3-4 minutes "
        "on an H200; with --quick the smoke form); writes OUT/device.md and .json",
    )
    parser.add_argument(
        "--study",
        action="store_true",
        help="instead of the sections: the whole Greff study (55 runs of 4,000 steps) through "
        "gatelab sweep and two PyTorch baselines (about 2 hours); writes OUT/study.md and .json",
    )
    parser.add_argument(
        "--study-small",
        action="store_true",
        help="--study at 8 runs of 1,000 steps (a few minutes); writes OUT/study-small.*",
    )
    parser.add_argument(
        "--contenders",
        help="--study: which of sweep,torch-fused,torch-greff (default all; a subset writes "
        "OUT/study-SUBSET.*)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="--study: where the runs go, kept (default: a temporary folder, removed)",
    )
    parser.add_argument(
        "--device-smoke",
        action="store_true",
        help="--device at tiny sizes, for tests (~30 s on 2 cores); writes OUT/device-smoke.*",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    faulthandler.dump_traceback_later(SUITE_TIMEOUT_S, exit=True)  # children have their own
    if args.device or args.device_smoke:  # its own form: children only, no device here
        from experiments.bench import device

        return device.main(args, argv)
    if args.study or args.study_small:  # its own form too: children only, each with a timeout
        from experiments.bench import study

        faulthandler.cancel_dump_traceback_later()  # the full study takes hours, not minutes
        return study.main(args, argv)
    # The allocator before any array exists, as the gatelab CLI does (GATELAB_MALLOC=system
    # opts out); every contender of this process shares it, and PyTorch's threads.
    runtime.tune_allocator()
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))

    sections = _names(args.sections)
    if unknown := sorted(set(sections) - set(SECTIONS)):
        raise SystemExit(f"unknown section(s) {unknown}; sections: {', '.join(SECTIONS)}")
    plan = QUICK if args.quick else Plan()
    if args.hidden:
        plan = dataclasses.replace(plan, hidden=tuple(int(h) for h in _names(args.hidden)))
    only = None
    if args.only:
        from experiments.bench.contenders import throughput_names

        only = [name for name in _names(args.only) if name != "none"]
        if unknown := sorted(set(only) - set(throughput_names(True))):
            raise SystemExit(f"unknown contender(s) {unknown}; known: {throughput_names(True)}")
    child_mode = args.json == "-"
    results: dict[str, Any] = {
        "command": " ".join(
            ["python -m experiments.bench", *(sys.argv[1:] if argv is None else argv)]
        ),
        "quick": args.quick,
        "machine": machine_info(),
        "plan": dataclasses.asdict(plan),
        "sections": {},
        "errors": {},
        "section_s": {},
        "load_average": {},
    }
    if os.getloadavg()[0] > report.BUSY_LOAD and not child_mode:
        log(f"the machine is busy (load average {os.getloadavg()}): the figures will show it")

    def timed(name: str, fn, *fn_args) -> None:
        log(f"section {name}")
        results["load_average"][name] = os.getloadavg()[0]
        begin = time.perf_counter()
        try:
            results["sections"][name] = fn(*fn_args)
        except Exception:  # noqa: BLE001  (one broken section must not lose the others)
            results["errors"][name] = traceback.format_exc()
            log(f"section {name} failed:\n{results['errors'][name]}")
        results["section_s"][name] = time.perf_counter() - begin

    peaks = {}
    # Child processes measure no peak unless asked: their parent's report has it.
    rated = any(s in sections for s in ("throughput", "design", "memory"))
    measure_peak = "peak" in sections or (rated and not child_mode)
    if measure_peak:
        log("matmul peak (start)")
        peaks["start"] = matmul_peak()
    if "throughput" in sections:
        timed("throughput", section_throughput, plan, only)
    if "design" in sections:
        timed("design", section_design, plan)
        timed("allocator", section_allocator, plan, args.quick)
    if "grid" in sections:
        timed("grid", section_grid, args.quick)
    if "memory" in sections:
        timed("memory", section_memory, plan, args.quick)
    if measure_peak:
        log("matmul peak (end)")
        peaks["end"] = matmul_peak()
        best = max(p[fw]["best"] for p in peaks.values() for fw in ("jax", "torch"))
        results["peak"] = {"size": peaks["end"]["size"], "gflops": best, "measurements": peaks}

    results["flags"] = report.flags(results)
    results["allocator_ratio"] = report.allocator_ratio(results["sections"].get("allocator"))
    results["targets"] = report.targets(results)
    results["self_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    results["elapsed_s"] = time.perf_counter() - start
    if child_mode:
        print(json.dumps(results, default=str))
        return 0
    markdown = report.render(results)
    stem = args.out / ("bench-quick" if args.quick else "bench")
    args.out.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".md").write_text(markdown)
    stem.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
    print(markdown)
    log(f"wrote {stem}.md and .json in {results['elapsed_s']:.0f} s")
    return 1 if results["flags"] or results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
