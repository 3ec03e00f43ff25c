"""Section 2 of the benchmark: a whole grid, four ways (and its in-process child).

The grid is ``experiments/bench/grid_config.py``: lstm and Greff et al.'s eight variants x 5
seeds on MNIST-1D. The contenders, each a child process (or processes) of the benchmark, run one
after another in this order:

1. ``gatelab sweep --workers 2``: groups of runs as compiled programs in two pinned worker
   processes.
2. A shell loop: one ``gatelab train`` process per run, as a researcher would write it.
3. PyTorch: the runs one after another in one process (``experiments.bench.torch_grid``; every
   run an ``nn.LSTM``, since PyTorch has no Greff variants).
4. gatelab in one process: ``gatelab.train.train_and_evaluate`` per run, one after another
   (``python -m experiments.bench.grid``, below).

Every gatelab contender starts with an empty JAX compilation cache of its own (the CLI's
persistent cache is on, as for a researcher, so a variant's later seeds reuse its first seed's
program). The sweep runs every run. Unless ``full``, the three serial contenders run the first
two seeds of ``SAMPLE_VARIANTS`` (6 of 45 runs: each variant's first seed with a cold cache,
its second warm) and the grid's time is estimated from them (``_estimate``); the tables say so.
Every contender has a timeout (``TIMEOUT_S``): one that hangs is killed and reported.
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

from experiments.bench.measure import ROOT, Child, run_child
from gatelab import config as config_lib
from gatelab import records

__all__ = ["run_grid", "CONFIG"]

CONFIG = "experiments/bench/grid_config.py"


def _gatelab_command() -> list[str]:
    """The ``gatelab`` console script next to this Python, else ``python -m gatelab.cli``."""
    script = Path(sys.executable).parent / "gatelab"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gatelab.cli"]


def _export_mnist1d(path: Path) -> None:
    """The MNIST-1D arrays gatelab trains on, for the PyTorch child (which must not load JAX)."""
    from gatelab import tasks

    task = tasks.get("mnist1d")
    train = {k: np.asarray(v) for k, v in task.train_data().items()}
    arrays = {f"train_{k}": v for k, v in train.items()}
    for split in ("validation", "test"):
        arrays.update({f"{split}_{k}": np.asarray(v) for k, v in task.eval_set(split).items()})
    np.savez(path, **arrays)


def _read_or_empty(path: Path) -> dict[str, Any]:
    return records.read_json_or_none(path) or {}


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _estimate(times: dict[str, float], variants: list[str], seeds: tuple[int, ...]) -> float:
    """The whole grid's time from the runs measured (``times``, by ``VARIANT/SEED``).

    A run not measured counts at its variant's second seed's time where that was measured, else
    at the mean of the measured runs of its kind: first seeds (which compile with a cold cache)
    or later seeds (which find their variant's program in the cache).
    """
    first = [t for label, t in times.items() if label.endswith(f"/{seeds[0]}")]
    later = [t for label, t in times.items() if not label.endswith(f"/{seeds[0]}")] or first
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


def _status(child: Child) -> dict[str, Any]:
    """The return code, and what went wrong where something did."""
    out: dict[str, Any] = {"returncode": child.returncode}
    if child.returncode == -9:
        out["error"] = "timed out (killed)"
    elif child.returncode:
        out["error"] = _tail(child.stderr)
    return out


# Seconds after which a contender is killed, 2-4 times its expected time here: the sweep's, one
# `gatelab train`'s, and per run of the serial processes (plus a minute to start). A contender
# that hangs costs its timeout and is reported; the others still run.
TIMEOUT_S = {"sweep": 480, "train": 150, "torch_per_run": 60, "inprocess_per_run": 60}


def run_grid(
    workdir: Path, quick: bool, full: bool, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Runs the four contenders of the grid under ``workdir``; returns their figures."""
    module = config_lib.load_module(ROOT / CONFIG)
    arg = "quick" if quick else None
    target = f"{CONFIG}:{arg}" if arg else CONFIG
    config = module.get_config(arg)
    variants = list(module.QUICK_VARIANTS if quick else module.VARIANTS)
    seeds = tuple(module.QUICK_SEEDS if quick else module.SEEDS)
    all_runs = [f"{v}/{s}" for v in variants for s in seeds]
    sampled = all_runs
    if not (quick or full):
        sampled = [f"{v}/{s}" for v in module.SAMPLE_VARIANTS for s in seeds[:2]]
    workdir.mkdir(parents=True, exist_ok=True)
    gatelab = _gatelab_command()
    result: dict[str, Any] = {
        "config": target,
        "variants": variants,
        "seeds": list(seeds),
        "runs": len(all_runs),
        "measured_by_serial_contenders": sampled,
        "hidden": config.model.hidden,
        "steps": config.run.steps,
        "batch": config.run.batch_size,
        "log_every": config.run.log_every,
        "contenders": {},
    }
    contenders = result["contenders"]

    def cache_env(name: str) -> dict[str, str]:
        return {"GATELAB_JAX_CACHE": str(workdir / f"jax-cache-{name}")}

    # ------------------------------------------------------------------------ 1. gatelab sweep --
    log(f"grid: gatelab sweep --workers 2 ({len(all_runs)} runs)")
    command = [*gatelab, "sweep", target, "--workdir", str(workdir / "sweep"), "--quiet"]
    command += ["--workers", "2"]
    child = run_child(command, cache_env("sweep"), TIMEOUT_S["sweep"])
    state = _read_or_empty(workdir / "sweep" / "sweep.json")
    groups: dict[str, dict[str, Any]] = {}
    accuracies = []
    for run in state.get("runs", []):
        summary = _read_or_empty(workdir / "sweep" / run["name"] / "summary.json")
        group = groups.setdefault(
            run["group"], {"variant": run["overrides"].get("model.variant"), "runs": 0}
        )
        group["runs"] += 1
        group["status"] = summary.get("status")
        for key in ("time/compile_s", "time/train_s", "time/steps_per_s"):
            if key in summary:
                group[key.split("/")[1]] = summary[key]
        if "test/accuracy" in summary:
            accuracies.append(summary["test/accuracy"])
    contenders["sweep"] = {
        "command": " ".join(["gatelab", *command[len(gatelab) :]]),
        "wall_s": child.wall_s,
        "estimated_s": child.wall_s,
        "runs_measured": len(all_runs),
        "processes": 1,
        "peak_rss_mib": child.peak_rss_mib,
        "groups": groups,
        "test_accuracy": statistics.fmean(accuracies) if accuracies else None,
        **_status(child),
    }

    # ---------------------------------------------------------------- 2. a loop of processes --
    log(f"grid: gatelab train loop ({len(sampled)} of {len(all_runs)} runs)")
    times, rss, runs, accuracies = {}, [], [], []
    for label in sampled:
        variant, seed = label.split("/")
        run_dir = workdir / "loop" / f"{variant}_s{seed}"
        command = [*gatelab, "train", target, "--workdir", str(run_dir), "--quiet"]
        command += ["--set", f"model.variant={variant}", "--set", f"run.seeds={seed}"]
        child = run_child(command, cache_env("loop"), TIMEOUT_S["train"])
        summary = _read_or_empty(run_dir / f"seed_{seed}" / "summary.json")
        times[label] = child.wall_s
        rss.append(child.peak_rss_mib)
        runs.append(
            {
                "run": label,
                "wall_s": child.wall_s,
                "peak_rss_mib": child.peak_rss_mib,
                "compile_s": summary.get("time/compile_s"),
                "train_s": summary.get("time/train_s"),
                **_status(child),
            }
        )
        if "test/accuracy" in summary:
            accuracies.append(summary["test/accuracy"])
    failed = [r for r in runs if r["returncode"]]
    contenders["loop"] = {
        "command": f"for each run: gatelab train {target} --set model.variant=V "
        "--set run.seeds=S --workdir DIR --quiet",
        "wall_s": sum(times.values()),
        # A failed or killed run's time is no run's time: no estimate then (as in _serial).
        "estimated_s": None if failed else _estimate(times, variants, seeds),
        "runs_measured": len(sampled),
        "processes": len(sampled),
        "peak_rss_mib": max(rss),
        "median_rss_mib": statistics.median(rss),
        "per_run": runs,
        "test_accuracy": statistics.fmean(accuracies) if accuracies else None,
        "returncode": failed[0]["returncode"] if failed else 0,
        **({"error": f"{failed[0]['run']}: {failed[0]['error']}"} if failed else {}),
    }

    # -------------------------------------------------------------------------- 3. PyTorch --
    log(f"grid: PyTorch serial ({len(sampled)} of {len(all_runs)} runs)")
    data = workdir / "mnist1d.npz"
    _export_mnist1d(data)
    out = workdir / "torch.json"
    command = [
        sys.executable,
        "-m",
        "experiments.bench.torch_grid",
        *("--data", str(data), "--runs", ",".join(sampled), "--json", str(out)),
        *("--hidden", str(config.model.hidden), "--steps", str(config.run.steps)),
        *("--batch", str(config.run.batch_size), "--lr", str(config.optim.lr)),
        *("--clip", str(config.optim.clip)),
    ]
    child = run_child(command, timeout_s=60 + TIMEOUT_S["torch_per_run"] * len(sampled))
    contenders["torch"] = _serial(
        "python -m experiments.bench.torch_grid (nn.LSTM for every run)",
        child,
        _read_or_empty(out),
        variants,
        seeds,
        len(sampled),
    )

    # ------------------------------------------------------------- 4. gatelab in one process --
    log(f"grid: gatelab in one process ({len(sampled)} of {len(all_runs)} runs)")
    out = workdir / "inprocess.json"
    command = [sys.executable, "-m", "experiments.bench.grid", "--target", target]
    command += ["--runs", ",".join(sampled), "--workdir", str(workdir / "inprocess")]
    command += ["--json", str(out)]
    timeout_s = 60 + TIMEOUT_S["inprocess_per_run"] * len(sampled)
    child = run_child(command, cache_env("inprocess"), timeout_s)
    contenders["inprocess"] = _serial(
        "train_and_evaluate per run, one after another, in one process",
        child,
        _read_or_empty(out),
        variants,
        seeds,
        len(sampled),
    )
    return result


def _serial(
    command: str,
    child: Child,
    record: dict[str, Any],
    variants: list[str],
    seeds: tuple[int, ...],
    expected: int,
) -> dict[str, Any]:
    """The figures of a contender that ran its runs one after another in one process."""
    per_run = record.get("runs", [])
    times = {r["run"]: r["wall_s"] for r in per_run}
    start_up = child.wall_s - sum(times.values())  # imports, allocator, data: paid once
    accuracies = [r["test/accuracy"] for r in per_run if r.get("test/accuracy") is not None]
    return {
        "command": command,
        "wall_s": child.wall_s,
        "estimated_s": start_up + _estimate(times, variants, seeds)
        if len(times) == expected
        else None,
        "start_up_s": start_up,
        "runs_measured": len(per_run),
        "processes": 1,
        "peak_rss_mib": child.peak_rss_mib,
        "per_run": per_run,
        "threads": record.get("threads"),
        "test_accuracy": statistics.fmean(accuracies) if accuracies else None,
        **_status(child),
    }


# ==================================================================================================
# The in-process contender (a child of the benchmark).
# ==================================================================================================


def main(argv: list[str] | None = None) -> int:
    """Trains ``--runs`` (VARIANT/SEED,...) one after another with ``train_and_evaluate``."""
    parser = argparse.ArgumentParser(description="The grid's in-process gatelab contender.")
    parser.add_argument("--target", required=True, help="CONFIG[:ARG]")
    parser.add_argument("--runs", required=True, help="VARIANT/SEED,...")
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--json", required=True, type=Path)
    args = parser.parse_args(argv)
    from gatelab import cli

    cli.tune_allocator()  # as `gatelab train` does
    cli.configure_jax()
    from gatelab import config as config_lib
    from gatelab import train

    results = []
    for label in args.runs.split(","):
        variant, seed = label.split("/")
        start = time.perf_counter()
        config = config_lib.load(args.target, [f"model.variant={variant}", f"run.seeds={seed}"])
        (summary,) = train.train_and_evaluate(
            config, args.workdir / f"{variant}_s{seed}", quiet=True
        )
        results.append(
            {
                "run": label,
                "wall_s": time.perf_counter() - start,
                "compile_s": summary.get("time/compile_s"),
                "train_s": summary.get("time/train_s"),
                "test/accuracy": summary.get("test/accuracy"),
            }
        )
        args.json.write_text(json.dumps({"runs": results}, indent=1))  # kept if a later run dies
    return 0


if __name__ == "__main__":
    sys.exit(main())
