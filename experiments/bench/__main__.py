"""gatelab's benchmark suite (GitHub issue 6): how fast, against what, and why.

    python -m experiments.bench                       # the full form: about 12 minutes here
    python -m experiments.bench --quick               # the smoke form: about 2 minutes
    python -m experiments.bench --sections throughput,design --hidden 128
    python -m experiments.bench --grid-full           # every run of the grid in every contender

Writes ``OUT/bench.md`` and ``OUT/bench.json`` (``bench-quick.*`` with ``--quick``; ``OUT``
defaults to ``experiments/bench/results``) and prints the Markdown. ``--json -`` prints the JSON
instead and writes nothing (how the suite runs itself in child processes).

Sections (``--sections``, comma-separated; all by default):

``peak``
    The machine's matmul peak: float32 2048 x 2048 in JAX and in PyTorch, best of 5, measured at
    the start and again at the end; the larger best is the peak. Every GFLOP/s figure is also
    given as a percentage of it, and one above it is flagged (a FLOP-count or timing bug).
``throughput``
    Training-step throughput at each ``--hidden`` size (batch 64, 100 steps, 32 inputs): gatelab
    ``lstm``, ``gru``, ``NFG``, ``CIFG``, ``mingru`` (``GatedRNN`` in a jitted train step, MSE
    on all outputs against a fixed random target, ``optax.adam(1e-3)``), the same ``lstm`` with
    the hand-written backward pass (``lstm:fused``), Flax ``nn.RNN(OptimizedLSTMCell /
    GRUCell)`` and PyTorch ``nn.LSTM`` / ``nn.GRU`` (eager, threads = cores); ``vanilla`` and
    ``NIG`` at the largest size. Steps/s (median, p10-p90 over interleaved rounds), sequence
    elements/s, GFLOP/s, compile time apart.
``design``
    The levers side by side, each group interleaved: the input projection inside the scan
    against hoisted (a standalone jitted LSTM); one fused matmul for all gates (``GatedRNN``)
    against one per gate (``nn.RNN(GatedCell)``); ``unroll`` 1, 2, 4; a group of 8 runs as
    ``jax.vmap`` against ``jax.lax.map`` against 8 sequential calls (hidden 32 and 128); the
    backward pass (from the throughput rows); and the allocator, glibc's default against
    ``gatelab.cli.tune_allocator``, in child processes (``GATELAB_MALLOC=system`` or not) that
    each time ``lstm`` and ``torch-lstm`` at hidden 128.
``grid``
    lstm and Greff et al.'s 8 variants x 5 seeds on MNIST-1D (``grid_config.py``: hidden 64,
    200 steps, batch 100) through ``gatelab sweep --workers 2``,
    through a loop of ``gatelab train`` processes, through PyTorch one run after another, and
    through ``train_and_evaluate`` one run after another in one process. The sweep runs all 45
    runs; the three serial contenders run the first two seeds of lstm, NFG and CIFG (6 runs)
    and their time for the grid is estimated from those (``grid._estimate``); ``--grid-full``
    measures all 45 runs in each (about 8 minutes more).
``memory``
    Peak RSS (``ru_maxrss``) of child processes that each train one contender (hidden 128)
    against one that only imports, with the peak RSS and compile time of every process the other
    sections started (the grid's per-group compile times come from the runs' ``summary.json``).

Honest timing: results are blocked on; warm-up steps are not timed and compile time is reported
apart; contenders of a table run in one process, round-robin over rounds, and their medians and
p10-p90 are reported; every table's contenders share the allocator and the thread settings that
the header gives. FLOPs are counted by hand (``measure.rnn_forward_flops``): the matmuls only,
the backward pass as twice the forward.

Time of the full form on this machine (2-core AMD EPYC, AVX2, quiet), estimated from its parts:
peak 10 s, throughput about 3 minutes, design about 2, its allocator children 1, grid about 5,
memory 1: about 12 minutes. The quick form takes about 2 minutes. Every child process has a
timeout, so a hung contender is reported instead of stalling the suite. Run it on a quiet
machine: a second user's work shows up in every figure (PyTorch's two OpenMP threads suffer
most when a core is taken).
"""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from experiments.bench import report
from experiments.bench.measure import (
    ROOT,
    machine_info,
    matmul_peak,
    run_child,
    self_peak_rss_mib,
)

SECTIONS = ("peak", "throughput", "design", "grid", "memory")
PEAK_SECTIONS = ("throughput", "design", "memory")  # the sections whose GFLOP/s need the peak


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes and repetitions of one form of the suite."""

    batch: int = 64
    steps: int = 100
    features: int = 32
    hidden: tuple[int, ...] = (32, 128, 512)
    rounds: int = 5
    rounds_large: int = 3  # at hidden >= LARGE, where one step takes about a second
    block_s: float = 0.25  # seconds of steps per timed block
    warmup: int = 1
    table_budget_s: float = 120.0  # rounds of one table stop past this (after two rounds)
    design_small: int = 128  # unroll and the groups of runs: at hidden sizes up to this
    allocator_hidden: int = 128
    allocator_repeats: int = 2  # tuned, system, tuned, system: child processes alternate
    memory_hidden: int = 128
    memory_contenders: tuple[str, ...] = ("none", "lstm", "flax-lstm", "torch-lstm")
    memory_rounds: int = 2  # the memory children time their contender only as a cross-check
    fast_compile: bool = False  # LLVM optimisations off (contenders.Shape)


CHILD_TIMEOUT_S = 300  # a child of the suite that hangs is killed and reported
BUSY_LOAD = report.BUSY_LOAD
SUITE_TIMEOUT_S = 45 * 60  # twice the longest form, --grid-full
QUICK = Plan(
    batch=8,
    steps=10,
    features=4,
    hidden=(16,),
    rounds=3,
    rounds_large=3,
    block_s=0.02,
    table_budget_s=20.0,
    design_small=16,
    allocator_hidden=16,
    allocator_repeats=1,
    memory_hidden=16,
    memory_contenders=("none", "lstm"),
    fast_compile=True,
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _rounds(plan: Plan, hidden: int) -> int:
    return plan.rounds_large if hidden >= report.LARGE else plan.rounds


# ==================================================================================================
# Sections.
# ==================================================================================================


def section_throughput(plan: Plan, only: list[str] | None) -> list[dict[str, Any]]:
    from experiments.bench import contenders
    from experiments.bench.measure import interleave

    rows = []
    for hidden in plan.hidden:
        shape = contenders.Shape(
            plan.batch, plan.steps, plan.features, hidden, fast_compile=plan.fast_compile
        )
        names = (
            only if only is not None else contenders.throughput_names(hidden == max(plan.hidden))
        )
        if not names:
            continue
        built = []
        for name in names:
            log(f"throughput H={hidden}: compiling {name}")
            built.append(contenders.throughput_contender(name, shape))
        log(f"throughput H={hidden}: timing {len(built)} contenders")
        rounds = _rounds(plan, hidden)
        for row in interleave(built, rounds, plan.block_s, plan.warmup, plan.table_budget_s):
            rows.append({"hidden": hidden, **row})
    return rows


def section_design(plan: Plan) -> dict[str, list[dict[str, Any]]]:
    from experiments.bench import contenders
    from experiments.bench.measure import interleave

    small = [h for h in plan.hidden if h <= plan.design_small] or [min(plan.hidden)]
    levers = {
        "projection": (plan.hidden, contenders.projection_contenders),
        "gates": (plan.hidden, contenders.gates_contenders),
        "unroll": (small, contenders.unroll_contenders),
        "runs": (small, contenders.runs_contenders),
    }
    out: dict[str, list[dict[str, Any]]] = {}
    for lever, (sizes, build) in levers.items():
        out[lever] = []
        for hidden in sizes:
            log(f"design {lever} H={hidden}: compiling and timing")
            shape = contenders.Shape(
                plan.batch, plan.steps, plan.features, hidden, fast_compile=plan.fast_compile
            )
            rounds = _rounds(plan, hidden)
            built = build(shape)
            for row in interleave(built, rounds, plan.block_s, plan.warmup, plan.table_budget_s):
                out[lever].append({"hidden": hidden, **row})
    return out


def _bench_child(
    quick: bool,
    hidden: int,
    only: str,
    env: dict[str, str] | None = None,
    rounds: int | None = None,
) -> dict[str, Any]:
    """This suite in a child process: the throughput of ``only`` at ``hidden``, as JSON."""
    command = [sys.executable, "-m", "experiments.bench", "--sections", "throughput"]
    command += ["--hidden", str(hidden), "--only", only, "--json", "-"]
    command += ["--quick"] if quick else []
    command += ["--rounds", str(rounds)] if rounds else []
    child = run_child(command, env, timeout_s=CHILD_TIMEOUT_S)
    record: dict[str, Any] = {
        "command": " ".join(["python", *command[1:]]),
        "env": env or {},
        "wall_s": child.wall_s,
        "peak_rss_mib": child.peak_rss_mib,
        "returncode": child.returncode,
    }
    try:
        result = json.loads(child.stdout)
        record["rows"] = result["sections"]["throughput"]
        record["allocator"] = result["machine"]["allocator"]
    except (json.JSONDecodeError, KeyError):
        record["rows"] = []
        record["error"] = (
            "timed out (killed)"
            if child.returncode == -9
            else "\n".join(child.stderr.strip().splitlines()[-15:])
        )
    return record


def section_allocator(plan: Plan, quick: bool) -> list[dict[str, Any]]:
    """lstm and torch-lstm in child processes, tuned and system allocator alternating."""
    children = []
    for repeat in range(plan.allocator_repeats):
        for setting in ("tuned", "system"):
            env = {"GATELAB_MALLOC": "system" if setting == "system" else ""}
            log(f"design allocator: {setting} child {repeat + 1}/{plan.allocator_repeats}")
            child = _bench_child(quick, plan.allocator_hidden, "lstm,torch-lstm", env)
            children.append({"setting": setting, **child})
    return children


def section_memory(plan: Plan, quick: bool) -> list[dict[str, Any]]:
    """One child per contender (and one that only imports): peak RSS and compile time."""
    children = []
    for only in plan.memory_contenders:
        log(f"memory: child with {only}")
        child = _bench_child(quick, plan.memory_hidden, only, rounds=plan.memory_rounds)
        children.append({"contender": only, **child})
    return children


# ==================================================================================================
# The command.
# ==================================================================================================


def _parse_list(text: str, kind=str) -> list:
    return [kind(part.strip()) for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.bench",
        description="gatelab's benchmark suite (issue 6): throughput, a grid, compile time and "
        "memory, the matmul peak, design rows.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="sections: " + ", ".join(SECTIONS),
    )
    parser.add_argument("--quick", action="store_true", help="the smoke form: tiny, ~2 minutes")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help="comma-separated (default: all)"
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "experiments" / "bench" / "results", help="output folder"
    )
    parser.add_argument("--hidden", help="hidden sizes (default 32,128,512; --quick: 16)")
    parser.add_argument(
        "--only", help="throughput contenders (e.g. lstm,torch-lstm; none: no contender)"
    )
    parser.add_argument("--rounds", type=int, help="timed rounds per table (default 5; 3 large)")
    parser.add_argument("--grid-full", action="store_true", help="every grid contender runs all")
    parser.add_argument("--keep-runs", action="store_true", help="keep the grid's run folders")
    parser.add_argument("--json", metavar="PATH", help="'-': print the JSON, write no files")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    # The last resort against a hang in this process (its children have timeouts of their
    # own): print every thread's traceback and exit.
    faulthandler.dump_traceback_later(SUITE_TIMEOUT_S, exit=True)
    # The allocator first, before any array exists, as the gatelab CLI does
    # (GATELAB_MALLOC=system opts out); every contender of this process shares it.
    from gatelab import cli

    cli.tune_allocator()
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))  # PyTorch: threads = cores

    sections = _parse_list(args.sections)
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"unknown section(s) {unknown}; sections: {', '.join(SECTIONS)}")
    plan = QUICK if args.quick else Plan()
    if args.hidden:
        plan = dataclasses.replace(plan, hidden=tuple(_parse_list(args.hidden, int)))
    if args.rounds:
        plan = dataclasses.replace(plan, rounds=args.rounds, rounds_large=args.rounds)
    only = None
    if args.only:
        from experiments.bench.contenders import throughput_names

        only = [n for n in _parse_list(args.only) if n != "none"]
        unknown = sorted(set(only) - set(throughput_names(True)))
        if unknown:
            raise SystemExit(f"unknown contender(s) {unknown}; known: {throughput_names(True)}")
    child_mode = args.json == "-"

    results: dict[str, Any] = {
        "command": "python -m experiments.bench "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "quick": args.quick,
        "machine": machine_info(),
        "plan": dataclasses.asdict(plan),
        "sections": {},
        "errors": {},
        "section_s": {},
        "load_average": {},
    }
    if os.getloadavg()[0] > BUSY_LOAD:
        log(f"the machine is busy (load average {os.getloadavg()}): the figures will show it")
    peaks = {}
    measure_peak = "peak" in sections or (
        not child_mode and any(s in sections for s in PEAK_SECTIONS)
    )

    def timed(name: str, fn, *fn_args):
        log(f"section {name}")
        results["load_average"][name] = os.getloadavg()[0]  # a busy machine shows here
        begin = time.perf_counter()
        try:
            results["sections"][name] = fn(*fn_args)
        except Exception:  # noqa: BLE001  (one broken section must not lose the others)
            results["errors"][name] = traceback.format_exc()
            log(f"section {name} failed:\n{results['errors'][name]}")
        results["section_s"][name] = time.perf_counter() - begin

    if measure_peak:
        log("matmul peak (start)")
        peaks["start"] = matmul_peak()
    if "throughput" in sections:
        timed("throughput", section_throughput, plan, only)
    if "design" in sections:
        timed("design", section_design, plan)
        timed("allocator", section_allocator, plan, args.quick)  # design rows in children
    if "grid" in sections:
        workdir = Path(tempfile.mkdtemp(prefix="gatelab-bench-grid-"))
        from experiments.bench.grid import run_grid

        timed("grid", run_grid, workdir, args.quick, args.grid_full, log)
        if args.keep_runs:
            log(f"grid runs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if "memory" in sections:
        timed("memory", section_memory, plan, args.quick)
    if measure_peak:
        log("matmul peak (end)")
        peaks["end"] = matmul_peak()
        results["peak"] = {
            "size": peaks["start"]["size"],
            "gflops": max(p["gflops"] for p in peaks.values()),
            "measurements": peaks,
        }

    results["flags"] = report.check_peak(results)
    results["allocator_ratio"] = report.allocator_ratio(results["sections"].get("allocator"))
    for where, error in report.child_errors(results):
        results["flags"].append(f"{where} failed: {error.splitlines()[-1] if error else ''}")
    results["targets"] = report.targets(results)
    results["self_peak_rss_mib"] = self_peak_rss_mib()
    results["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    results["elapsed_s"] = time.perf_counter() - start

    if child_mode:
        print(json.dumps(results, default=str))
        return 0
    markdown = report.render(results)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "bench-quick" if args.quick else "bench"
    (args.out / f"{stem}.md").write_text(markdown)
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1, default=str))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    print(markdown)
    log(f"wrote {args.out / stem}.md and .json in {results['elapsed_s']:.0f} s")
    return 1 if results["flags"] or results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
