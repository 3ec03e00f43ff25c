"""The study form of the suite: a whole ablation study, every run trained, three ways.

    python -m experiments.bench --study         # 55 runs at the full protocol: about 2 hours
    python -m experiments.bench --study --contenders sweep,torch-fused   # a subset: an hour
    python -m experiments.bench --study-small   # 8 runs of 1,000 steps: a few minutes

The study is ``grid_config.py:study``: Greff et al.'s vanilla and eight variants, lstm and gru
x 5 seeds on MNIST-1D, 64 units, batch 64, 4,000 steps, a validation evaluation every 500 steps
and at the end, then the test set. The contenders run one after another on the same cores, each
in a child process with a timeout, every run measured (nothing is estimated):

1. ``sweep``: ``gatelab sweep --workers 2``, each variant's seeds one compiled program, in two
   worker processes pinned to a core each, from an empty JAX compilation cache. It also pays
   for what the others do not: its records, and a checkpoint every 1,000 steps.
2. ``torch-fused``: PyTorch at its fastest, ``nn.LSTM`` for every LSTM run and ``nn.GRU`` for
   the GRU's (it cannot remove a gate, so this is a lower bound on a PyTorch study's time), in
   two worker processes with one thread each (``torch_grid.py --cells fused --workers 2``).
3. ``torch-greff``: the ablation-capable PyTorch a researcher would write: each variant's own
   cell, a module looped over time, under ``torch.compile``, in two single-thread workers
   (``torch_grid.py --cells greff --compile --workers 2``).

The PyTorch contenders train on the same arrays with the same optimiser, schedule, clipping,
batch and evaluations. Reported: each contender's wall time and gatelab's speed-up over it
against the issue's targets (1.5x over ``torch-fused``, 4x over ``torch-greff``), test accuracy
by variant (a check that all three learn the same task), and compilation: gatelab's per group
against its training time, torch.compile's as the first steps of a worker's first run of a
variant. Writes ``OUT/study.md`` and ``.json`` (``study-small.*``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from experiments.bench import grid_config
from experiments.bench.grid import CONFIG, _export_mnist1d, gatelab_command, sweep_rows
from experiments.bench.measure import machine_info, run_child
from experiments.bench.report import num
from gatelab import config as config_lib
from gatelab.records import read_json_or_none

TARGETS = {"torch-fused": 1.5, "torch-greff": 4.0}  # gatelab's speed-up the issue asks for
LABELS = {
    "sweep": "gatelab sweep --workers 2",
    "torch-fused": "PyTorch nn.LSTM / nn.GRU, 2 single-thread workers (no ablation possible)",
    "torch-greff": "PyTorch Greff cells looped over time, torch.compile, 2 single-thread workers",
}


def _runs(form: dict[str, Any]) -> list[str]:
    return [f"{v}/{s}" for v in form["variants"] for s in form["seeds"]]


def _variant(row: dict[str, Any]) -> str:
    """The variant of a run row (its ``run`` is ``VARIANT/SEED``)."""
    return row["run"].split("/")[0]


CONTENDERS = tuple(LABELS)


def run_study(
    name: str, workdir: Path, log: Callable[[str], None], only: tuple[str, ...] = CONTENDERS
) -> dict[str, Any]:
    """Trains the study ``name`` (``study`` or ``study-small``) under ``workdir``, with each of
    the contenders ``only`` (all three by default) in turn."""
    form = grid_config.STUDY[name]
    target = f"{CONFIG}:{name}"
    config = config_lib.load(target)
    runs = _runs(form)
    # 2-4x what the slowest contender takes here: torch.compile's minute per variant and
    # worker, and its 20 s per run and 1,000 steps.
    timeout = 120 + 120 * len(form["variants"]) + 60 * len(runs) * config.run.steps / 1000
    gatelab = gatelab_command()
    contenders: dict[str, dict[str, Any]] = {}

    if "sweep" in only:
        log(f"study: gatelab sweep --workers 2 ({len(runs)} runs of {config.run.steps} steps)")
        args = ["sweep", target, "--workdir", str(workdir / "sweep"), "--quiet", "--workers", "2"]
        env = {"GATELAB_JAX_CACHE": str(workdir / "jax-cache")}  # empty: every compile counts
        child = run_child([*gatelab, *args], env, timeout)
        contenders["sweep"] = {
            "command": f"gatelab {' '.join(args)}",
            "wall_s": child.wall_s,
            "peak_rss_mib": child.peak_rss_mib,
            "error": child.error(),
            "runs": sweep_rows(workdir / "sweep"),
        }

    data = workdir / "mnist1d.npz"
    _export_mnist1d(data)
    common = ["--data", str(data), "--runs", ",".join(runs), "--workers", "2"]
    common += ["--hidden", str(config.model.hidden), "--steps", str(config.run.steps)]
    common += ["--batch", str(config.run.batch_size), "--lr", str(config.optim.lr)]
    common += ["--clip", str(config.optim.clip), "--eval-every", str(config.run.eval_every)]
    extras = {"torch-fused": [], "torch-greff": ["--cells", "greff", "--compile"]}
    for contender, extra in extras.items():
        if contender not in only:
            continue
        log(f"study: {LABELS[contender]} ({len(runs)} runs)")
        out = workdir / f"{contender}.json"
        argv = [sys.executable, "-m", "experiments.bench.torch_grid", *common, *extra]
        argv += ["--json", str(out)]
        child = run_child(argv, {"TORCHINDUCTOR_CACHE_DIR": str(workdir / "inductor")}, timeout)
        contenders[contender] = {
            "command": "python -m experiments.bench.torch_grid " + " ".join(extra + ["..."]),
            "wall_s": child.wall_s,
            "peak_rss_mib": child.peak_rss_mib,
            "error": child.error(),
            "runs": (read_json_or_none(out) or {}).get("runs", []),
        }
    return {
        "form": name,
        "config": target,
        "variants": form["variants"],
        "seeds": list(form["seeds"]),
        "runs": len(runs),
        "hidden": config.model.hidden,
        "steps": config.run.steps,
        "batch": config.run.batch_size,
        "eval_every": config.run.eval_every,
        "contenders": contenders,
    }


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Speed-ups against the targets, and compilation's share, from ``run_study``'s figures."""
    contenders = results["contenders"]
    sweep = contenders.get("sweep", {"runs": [], "wall_s": 0.0})
    out: dict[str, Any] = {"speedups": {}, "complete": {}}
    for name, entry in contenders.items():
        done = [r for r in entry["runs"] if r.get("test/accuracy") is not None]
        out["complete"][name] = len(done) == results["runs"] and not entry["error"]
    for name, goal in TARGETS.items():
        if name not in contenders or "sweep" not in contenders:
            continue
        ratio = contenders[name]["wall_s"] / sweep["wall_s"]
        complete = out["complete"][name] and out["complete"]["sweep"]
        out["speedups"][name] = {"ratio": ratio, "target": goal, "met": complete and ratio >= goal}
    groups: dict[str, float] = {}
    for row in sweep["runs"]:  # a group's runs share its compilation
        groups.setdefault(_variant(row), row["time/compile_s"] or 0.0)
    out["gatelab_compile_s"] = groups
    worker_s = 2 * sweep["wall_s"]
    out["gatelab_compile_share"] = sum(groups.values()) / worker_s if worker_s else None
    firsts: dict[tuple[str, int], float] = {}
    for row in contenders.get("torch-greff", {}).get("runs", []):
        key = (_variant(row), row.get("pid", 0))
        if "first_steps_s" in row:
            firsts.setdefault(key, row["first_steps_s"])
    compiled: dict[str, list[float]] = {}
    for (variant, _), seconds in firsts.items():
        compiled.setdefault(variant, []).append(seconds)
    out["torch_compile_s"] = {v: statistics.fmean(s) for v, s in compiled.items()}
    return out


def render(results: dict[str, Any]) -> str:
    machine, summary, contenders = results["machine"], results["summary"], results["contenders"]
    lines = [
        f"# gatelab study benchmark ({results['form']})",
        "",
        f"`python -m experiments.bench --{results['form']}` at {machine['git']} "
        f"({machine['date']}, {results['elapsed_s'] / 60:.0f} minutes): {machine['cpu']}, "
        f"{machine['cores_usable']} usable cores, jax {machine['versions']['jax']}, torch "
        f"{machine['versions']['torch']}, load average at the start {machine['load_average'][0]}.",
        "",
        f"The study: {', '.join(results['variants'])} x {len(results['seeds'])} seeds "
        f"({results['runs']} runs) on MNIST-1D, hidden {results['hidden']}, batch "
        f"{results['batch']}, {results['steps']:,} steps, validation every "
        f"{results['eval_every']} steps, then the test set. Every run of every contender was "
        "trained; the times are whole wall times of the contender's process tree.",
        "",
        "| contender | wall time | gatelab faster by | target | runs with a test score | "
        "peak RSS |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, entry in contenders.items():
        done = sum(r.get("test/accuracy") is not None for r in entry["runs"])
        speed = summary["speedups"].get(name)
        ratio = f"{speed['ratio']:.2f}x" if speed else ""
        verdict = "met" if speed and speed["met"] else "not met"
        if speed and not (summary["complete"][name] and summary["complete"]["sweep"]):
            verdict = "incomplete: a run failed"
        goal = f"{speed['target']:.1f}x ({verdict})" if speed else ""
        lines.append(
            f"| {LABELS[name]} | {entry['wall_s']:.0f} s | {ratio} | {goal} | "
            f"{done} / {results['runs']} | {entry['peak_rss_mib']:.0f} MiB |"
        )
    errors = [f"- {name}: {e['error']}" for name, e in contenders.items() if e["error"]]
    if errors:
        lines += ["", "Errors:", "", *errors]
    lines += [
        "",
        "Test accuracy by variant (mean over seeds; the fused PyTorch contender trains an "
        "`nn.LSTM` for every LSTM variant):",
        "",
        "| variant | " + " | ".join(contenders) + " |",
        "|---|" + "---:|" * len(contenders),
    ]
    for variant in results["variants"]:
        cells = []
        for entry in contenders.values():
            scores = [
                r["test/accuracy"]
                for r in entry["runs"]
                if _variant(r) == variant and r.get("test/accuracy") is not None
            ]
            cells.append(f"{100 * statistics.fmean(scores):.1f}%" if scores else "")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    train = {}
    for row in contenders.get("sweep", {}).get("runs", []):
        train.setdefault(_variant(row), row["time/train_s"])
    torch_train = {name: {} for name in ("torch-fused", "torch-greff")}
    for name, by_variant in torch_train.items():
        for row in contenders.get(name, {}).get("runs", []):
            if row.get("train_s") is not None:
                by_variant[_variant(row)] = by_variant.get(_variant(row), 0.0) + row["train_s"]
    lines += [
        "",
        "Time by variant. gatelab: its compilation per group (one training program per variant, "
        "its seeds together, from an empty cache, as the run records it; the smaller evaluation "
        "program compiles at the first evaluation and is not in it) and the group's training "
        "time. PyTorch: the training time of the variant's runs added up (in its two workers), "
        "torch.compile's compilation included; and torch.compile's first 5 steps of a worker's "
        "first run of the variant (mean over the workers that compiled it), which is mostly "
        "compilation. Evaluations are in none of these.",
        "",
        "| variant | gatelab compile s | gatelab train s (group) | nn.LSTM/GRU train s (runs) "
        "| torch.compile train s (runs) | torch.compile first steps s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for variant in results["variants"]:
        lines.append(
            f"| {variant} | {num(summary['gatelab_compile_s'].get(variant))} | "
            f"{num(train.get(variant))} | {num(torch_train['torch-fused'].get(variant))} | "
            f"{num(torch_train['torch-greff'].get(variant))} | "
            f"{num(summary['torch_compile_s'].get(variant))} |"
        )
    share = summary["gatelab_compile_share"]
    if share is not None and "sweep" in contenders:
        lines += [
            "",
            f"gatelab's compilation is {100 * share:.1f}% of its two workers' time "
            f"({sum(summary['gatelab_compile_s'].values()):.0f} s of "
            f"2 x {contenders['sweep']['wall_s']:.0f} s).",
        ]
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace, argv: list[str] | None) -> int:
    """``python -m experiments.bench --study`` / ``--study-small``."""
    name = "study-small" if args.study_small else "study"
    only = tuple(c.strip() for c in (args.contenders or ",".join(CONTENDERS)).split(","))
    if unknown := sorted(set(only) - set(CONTENDERS)):
        raise SystemExit(f"unknown contender(s) {unknown}; contenders: {', '.join(CONTENDERS)}")
    start = time.perf_counter()

    def log(message: str) -> None:
        print(f"[bench {time.perf_counter() - start:6.0f}s] {message}", flush=True)

    if os.getloadavg()[0] > 0.5:
        log(f"the machine is busy (load average {os.getloadavg()}): the figures will show it")
    machine = machine_info()
    if args.workdir:  # kept: the sweep's records can be reported (gatelab report DIR/sweep)
        args.workdir.mkdir(parents=True, exist_ok=True)
        results = run_study(name, args.workdir, log, only)
    else:
        with tempfile.TemporaryDirectory(prefix="gatelab-study-") as folder:
            results = run_study(name, Path(folder), log, only)
    given = sys.argv[1:] if argv is None else argv
    results["command"] = " ".join(["python -m experiments.bench", *given])
    results["machine"] = machine
    results["elapsed_s"] = time.perf_counter() - start
    results["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    results["summary"] = summarise(results)
    markdown = render(results)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / (name if only == CONTENDERS else f"{name}-{'-'.join(only)}")
    stem.with_suffix(".md").write_text(markdown)
    stem.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
    print(markdown)
    log(f"wrote {stem}.md and .json")
    return 1 if any(e["error"] for e in results["contenders"].values()) else 0
