"""The grid section: a whole grid four ways, each in child processes of the suite.

The grid is ``grid_config.py``: lstm and Greff et al.'s eight variants x 5 seeds on MNIST-1D.
The contenders run one after another, in this order:

1. ``sweep``: ``gatelab sweep --workers 2``, groups of runs as compiled programs in two worker
   processes pinned to cores.
2. ``loop``: one ``gatelab train`` process per run, as a researcher's shell loop would.
3. ``torch``: PyTorch, the runs one after another in one process (``torch_grid.py``; every run
   an ``nn.LSTM``, since PyTorch has no Greff variants).
4. ``inprocess``: ``gatelab.train.train_and_evaluate`` per run, one after another in one
   process (``python -m experiments.bench.grid``, ``main`` below).

Every gatelab contender starts with an empty JAX compilation cache of its own (on, as for a
researcher: a variant's later seeds reuse its first seed's program). The sweep runs every run;
in the full form the three serial contenders run the first two seeds of ``SAMPLE_VARIANTS`` (6
of 45 runs: each variant's first seed with a cold cache, its second warm) and their time for the
grid is estimated from those (``_estimate``). Every contender has a timeout (``TIMEOUT_S``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from experiments.bench import grid_config
from experiments.bench.measure import Child, run_child
from gatelab import config as config_lib
from gatelab.records import read_json_or_none

CONFIG = "experiments/bench/grid_config.py"
# Seconds after which a contender is killed, 2-4 times its time here: the sweep's, one `gatelab
# train`'s, and per run of the serial processes (plus a minute to start).
TIMEOUT_S = {"sweep": 480, "train": 150, "per_run": 60}


def _estimate(times: dict[str, float], variants: list[str], seeds: tuple[int, ...]) -> float:
    """The whole grid's time from the runs measured (``times``, by ``VARIANT/SEED``).

    A run not measured counts at its variant's second seed's time where that was measured, else
    at the mean of the measured runs of its kind: first seeds (which compile with a cold cache)
    or later seeds (which find their variant's program in the cache).
    """
    first = [t for run, t in times.items() if run.endswith(f"/{seeds[0]}")]
    later = [t for run, t in times.items() if not run.endswith(f"/{seeds[0]}")] or first
    total = 0.0
    for variant in variants:
        for k, seed in enumerate(seeds):
            second = f"{variant}/{seeds[min(k, 1)]}"
            if f"{variant}/{seed}" in times:
                total += times[f"{variant}/{seed}"]
            elif k and second in times:
                total += times[second]
            else:
                total += statistics.fmean(later if k else first)
    return total


def _summary(folder: Path) -> dict[str, Any]:
    """The run summary under ``folder`` (``{}`` if the run wrote none)."""
    path = next(folder.glob("**/summary.json"), None)
    return (read_json_or_none(path) if path else None) or {}


def _run_row(run: str, summary: dict[str, Any], **fields) -> dict[str, Any]:
    keys = ("time/compile_s", "time/train_s", "test/accuracy")
    return {"run": run, **{k: summary.get(k) for k in keys}, **fields}


def sweep_rows(folder: Path) -> list[dict[str, Any]]:
    """A row (``_run_row``, with its status) for each run a ``gatelab sweep`` wrote under
    ``folder``."""
    summaries = [read_json_or_none(p) or {} for p in sorted(folder.glob("*/summary.json"))]
    return [
        _run_row(f"{s.get('variant')}/{s.get('seed')}", s, status=s.get("status"))
        for s in summaries
    ]


def gatelab_command() -> list[str]:
    """The ``gatelab`` console script next to this Python, or ``python -m gatelab.cli``."""
    script = Path(sys.executable).parent / "gatelab"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gatelab.cli"]


def _entry(command: str, children: list[Child], runs: list[dict], estimate) -> dict[str, Any]:
    """A contender's figures: wall time, the grid's estimated time (None if a run failed), peak
    RSS, mean test accuracy, and the first error."""
    errors = [f"{r['run']}: {r['error']}" for r in runs if r.get("error")]
    errors = errors or [c.error() for c in children if c.error()]
    accuracies = [r["test/accuracy"] for r in runs if r.get("test/accuracy") is not None]
    return {
        "command": command,
        "wall_s": sum(c.wall_s for c in children),
        "estimated_s": None if errors else estimate(),
        "runs_measured": len(runs),
        "peak_rss_mib": max(c.peak_rss_mib for c in children),
        "per_run": runs,
        "test_accuracy": statistics.fmean(accuracies) if accuracies else None,
        "returncode": next((c.returncode for c in children if c.returncode), 0),
        "error": errors[0] if errors else None,
    }


def run_grid(workdir: Path, quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """Runs the four contenders under ``workdir``; returns their figures."""
    target = f"{CONFIG}:quick" if quick else CONFIG
    config = config_lib.load(target)
    variants = grid_config.QUICK_VARIANTS if quick else grid_config.VARIANTS
    seeds = grid_config.QUICK_SEEDS if quick else grid_config.SEEDS
    every = [f"{v}/{s}" for v in variants for s in seeds]
    sampled = (
        every if quick else [f"{v}/{s}" for v in grid_config.SAMPLE_VARIANTS for s in seeds[:2]]
    )
    gatelab = gatelab_command()
    cache = lambda name: {"GATELAB_JAX_CACHE": str(workdir / f"jax-cache-{name}")}  # noqa: E731
    contenders: dict[str, dict[str, Any]] = {}

    log(f"grid: gatelab sweep --workers 2 ({len(every)} runs)")
    args = ["sweep", target, "--workdir", str(workdir / "sweep"), "--quiet", "--workers", "2"]
    child = run_child([*gatelab, *args], cache("sweep"), TIMEOUT_S["sweep"])
    runs = sweep_rows(workdir / "sweep")
    contenders["sweep"] = _entry(f"gatelab {' '.join(args)}", [child], runs, lambda: child.wall_s)
    contenders["sweep"]["runs_measured"] = len(every)  # a run that wrote nothing still counts

    log(f"grid: a loop of gatelab train processes ({len(sampled)} of {len(every)} runs)")
    children, runs = [], []
    for run in sampled:
        variant, seed = run.split("/")
        folder = workdir / "loop" / f"{variant}_s{seed}"
        args = ["train", target, "--workdir", str(folder), "--quiet"]
        args += ["--set", f"model.variant={variant}", "--set", f"run.seeds={seed}"]
        children.append(run_child([*gatelab, *args], cache("loop"), TIMEOUT_S["train"]))
        child = children[-1]
        fields = {"wall_s": child.wall_s, "peak_rss_mib": child.peak_rss_mib}
        runs.append(_run_row(run, _summary(folder), **fields, error=child.error()))
    times = {r["run"]: r["wall_s"] for r in runs}
    command = f"for each run: gatelab train {target} --set model.variant=V --set run.seeds=S"
    contenders["loop"] = _entry(command, children, runs, lambda: _estimate(times, variants, seeds))

    def serial(name: str, label: str, argv: list[str], env=None) -> None:
        log(f"grid: {label} ({len(sampled)} of {len(every)} runs)")
        out = workdir / f"{name}.json"
        argv += ["--runs", ",".join(sampled), "--json", str(out)]
        child = run_child(argv, env, 60 + TIMEOUT_S["per_run"] * len(sampled))
        runs = (read_json_or_none(out) or {}).get("runs", [])
        times = {r["run"]: r["wall_s"] for r in runs}
        start_up = child.wall_s - sum(times.values())  # imports, allocator, data: paid once
        estimate = lambda: start_up + _estimate(times, variants, seeds)  # noqa: E731
        contenders[name] = _entry(label, [child], runs, estimate)
        if len(runs) < len(sampled):
            contenders[name]["estimated_s"] = None
        contenders[name]["start_up_s"] = start_up

    data = workdir / "mnist1d.npz"
    _export_mnist1d(data)
    serial(
        "torch",
        "PyTorch, one run after another in one process (nn.LSTM for every run)",
        [sys.executable, "-m", "experiments.bench.torch_grid", "--data", str(data)]
        + ["--hidden", str(config.model.hidden), "--steps", str(config.run.steps)]
        + ["--batch", str(config.run.batch_size), "--lr", str(config.optim.lr)]
        + ["--clip", str(config.optim.clip)],
    )
    serial(
        "inprocess",
        "train_and_evaluate per run, one after another in one process",
        [sys.executable, "-m", "experiments.bench.grid", "--target", target]
        + ["--workdir", str(workdir / "inprocess")],
        cache("inprocess"),
    )
    return {
        "config": target,
        "variants": list(variants),
        "seeds": list(seeds),
        "runs": len(every),
        "sampled": sampled,
        "hidden": config.model.hidden,
        "steps": config.run.steps,
        "batch": config.run.batch_size,
        "contenders": contenders,
    }


def _export_mnist1d(path: Path) -> None:
    """The MNIST-1D arrays gatelab trains on, for the PyTorch child (which loads no JAX)."""
    from gatelab import tasks

    task = tasks.get("mnist1d")
    arrays = {f"train_{k}": np.asarray(v) for k, v in task.train_data().items()}
    for split in ("validation", "test"):
        arrays.update({f"{split}_{k}": np.asarray(v) for k, v in task.eval_set(split).items()})
    np.savez(path, **arrays)


def main(argv: list[str] | None = None) -> int:
    """The in-process contender: ``--runs`` (VARIANT/SEED,...) one after another."""
    parser = argparse.ArgumentParser(description="The grid's in-process gatelab contender.")
    parser.add_argument("--target", required=True, help="CONFIG[:ARG]")
    parser.add_argument("--runs", required=True, help="VARIANT/SEED,...")
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--json", required=True, type=Path)
    args = parser.parse_args(argv)
    from gatelab import runtime, train

    runtime.tune_allocator()  # as `gatelab train` does
    runtime.configure_jax()
    results = []
    for run in args.runs.split(","):
        variant, seed = run.split("/")
        start = time.perf_counter()
        config = config_lib.load(args.target, [f"model.variant={variant}", f"run.seeds={seed}"])
        workdir = args.workdir / f"{variant}_s{seed}"
        (summary,) = train.train_and_evaluate(config, workdir, quiet=True)
        results.append(_run_row(run, summary, wall_s=time.perf_counter() - start))
        args.json.write_text(json.dumps({"runs": results}, indent=1))  # kept if a later run dies
    return 0


if __name__ == "__main__":
    sys.exit(main())
