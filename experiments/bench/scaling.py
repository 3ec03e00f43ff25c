"""What sharing a study costs on this machine: a group over 1, 2 and 4 forced CPU devices, and a
sweep inline, in worker processes, or as submitit jobs (GitHub issue 11).

    python -m experiments.bench.scaling            # about 4 minutes on 2 cores
    python -m experiments.bench.scaling --rounds 1 # about 2 minutes

Writes ``OUT/scaling.md`` and ``.json`` (``OUT`` defaults to ``experiments/bench/results``).

``devices``
    One group of 8 runs (MNIST-1D, ``lstm``, hidden 64, batch 64, 400 steps) trained by
    ``train.train_group`` with ``run.devices`` 1, 2 and 4, in child processes that each have 4
    forced CPU devices (``--xla_force_host_platform_device_count=4``), alternating over rounds.
    Compile and training seconds come from the runs' summaries. On a CPU the devices share the
    same cores: this measures the sharding's overhead, not a speed-up (a GPU host is where
    devices add compute).
``executor``
    ``configs/mnist1d.py:quick`` (2 variants x 2 seeds, 200 steps, W&B off) through
    ``gatelab sweep`` inline with one worker and with two, and with ``--executor local`` and 1 or
    2 jobs, each from an empty directory and an empty compilation cache, alternating over rounds;
    wall seconds of the whole command. The overhead of a job is the local executor with one job
    against inline with one worker.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from experiments.bench.measure import ROOT, machine_info

RESULTS = ROOT / "experiments" / "bench" / "results"

_GROUP = r"""
import json, sys, time
from pathlib import Path
from gatelab import config as config_lib, records, runtime, train
runtime.tune_allocator()
root, devices = Path(sys.argv[1]), int(sys.argv[2])
config = config_lib.load("configs/mnist1d.py", [
    "wandb.mode=disabled", "model.variant=lstm", "model.hidden=64", "run.steps=400",
    "run.log_every=100", "run.eval_every=400", "run.checkpoint_every=400",
    "run.seeds=0,1,2,3,4,5,6,7", f"run.devices={devices}"])
runs = [config.replace(run={"seeds": (s,)}) for s in config.run.seeds]
start = time.perf_counter()
train.train_group(runs, root / "groups" / "g", [root / f"s{s}" for s in config.run.seeds],
                  quiet=True)
wall = time.perf_counter() - start
summary = records.read_summary(root / "s0")
print(json.dumps({"wall_s": wall, **summary.time}))
"""

_FAST = [
    "--set",
    "wandb.mode=disabled",
    "--set",
    "run.steps=200",
    "--set",
    "run.eval_every=100",
    "--set",
    "run.checkpoint_every=100",
]


def _group(devices: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
            "GATELAB_JAX_CACHE": "",
        }
        done = subprocess.run(
            [sys.executable, "-c", _GROUP, tmp, str(devices)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        return json.loads(done.stdout.strip().splitlines()[-1])


def _sweep(extra: list[str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "GATELAB_JAX_CACHE": ""}
        command = [sys.executable, "-m", "gatelab.cli", "sweep", "configs/mnist1d.py:quick"]
        command += ["--workdir", str(Path(tmp) / "s"), "--quiet", *_FAST, *extra]
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, env=env, capture_output=True, timeout=600, check=True)
        return time.perf_counter() - start


SWEEPS = {
    "inline, 1 worker": ["--workers", "1"],
    "inline, 2 workers": ["--workers", "2"],
    "local executor, 1 job": ["--executor", "local", "--jobs", "1"],
    "local executor, 2 jobs": ["--executor", "local", "--jobs", "2"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the results go")
    args = parser.parse_args(argv)
    groups: dict[int, list[dict]] = {1: [], 2: [], 4: []}
    sweeps: dict[str, list[float]] = {name: [] for name in SWEEPS}
    for round_ in range(args.rounds):
        for devices in groups:
            groups[devices].append(_group(devices))
            print(f"round {round_}: {devices} device(s): {groups[devices][-1]}", flush=True)
        for name, extra in SWEEPS.items():
            sweeps[name].append(_sweep(extra))
            print(f"round {round_}: {name}: {sweeps[name][-1]:.1f} s", flush=True)
    median = statistics.median
    lines = [
        "# Sharing a study: devices and executors",
        "",
        f"Machine: {machine_info()['cpu']}, {os.cpu_count()} cores; {args.rounds} rounds, "
        "medians (min-max). `python -m experiments.bench.scaling`.",
        "",
        "## A group of 8 runs over forced CPU devices",
        "",
        "| devices | compile s | train s | run-steps/s | wall s |",
        "|---:|---:|---:|---:|---:|",
    ]
    for devices, found in groups.items():
        compile_s = [g["compile_s"] for g in found]
        train_s = [g["train_s"] for g in found]
        wall = [g["wall_s"] for g in found]
        lines.append(
            f"| {devices} | {median(compile_s):.2f} | {median(train_s):.2f} "
            f"({min(train_s):.2f}-{max(train_s):.2f}) | {8 * 400 / median(train_s):,.0f} "
            f"| {median(wall):.1f} |"
        )
    lines += [
        "",
        "## configs/mnist1d.py:quick (4 runs, 2 groups, 200 steps), whole command",
        "",
        "| how | wall s |",
        "|---|---:|",
    ]
    for name, found in sweeps.items():
        lines.append(f"| {name} | {median(found):.1f} ({min(found):.1f}-{max(found):.1f}) |")
    overhead = median(sweeps["local executor, 1 job"]) - median(sweeps["inline, 1 worker"])
    lines += ["", f"Overhead of one local job against inline with one worker: {overhead:.1f} s."]
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaling.md").write_text(text)
    (args.out / "scaling.json").write_text(
        json.dumps({"groups": groups, "sweeps": sweeps, "machine": machine_info()}, indent=1)
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
