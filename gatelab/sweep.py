"""Sweeps: a study as data, trained as few compiled programs as its runs allow.

A config file's ``sweep(arg=None)`` returns a ``Sweep``: a list of override dicts built with
``grid`` (a cartesian product), ``zipped`` (axes side by side) or ``random`` (a seeded random
search in the style of Greff et al., REFERENCE.md 1.3). ``run_sweep`` expands it into runs (one
seed each), groups the runs whose programs are identical (same shapes and static structure,
differing only in seed, learning rate and other per-run values), trains each group as one program,
and records every run in its own workdir under the sweep directory::

    DIR/sweep.json              the expanded runs and each one's status
    DIR/<run name>/             config.json, metrics.jsonl, summary.json, wandb/
    DIR/groups/<group>/         the group's stacked checkpoint

Running the same command again resumes: completed runs are skipped, interrupted groups resume
from their checkpoints, failed runs are retried. ``--shard i/n`` takes a deterministic 1/n of
the runs, so n machines can share a sweep and merge their directories by copying.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import itertools
import json
import math
import multiprocessing
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from gatelab import config as config_lib
from gatelab import families, records
from gatelab.config import Config

__all__ = [
    "Sweep",
    "grid",
    "zipped",
    "random",
    "log_uniform",
    "one_minus_log_uniform",
    "uniform",
    "choice",
    "log_buckets",
    "PlannedRun",
    "expand",
    "plan_groups",
    "run_sweep",
    "wandb_sweep_config",
    "best_learning_rates",
]


# ==================================================================================================
# Building a study.
# ==================================================================================================


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A study: ``runs`` is a list of override dicts (``{"model.variant": "CIFG", ...}``).

    ``kind`` says how it was built (``grid``, ``random`` or ``list``), and ``parameters`` keeps
    the axes or distributions, from which ``wandb_sweep_config`` writes a W&B sweep.
    """

    runs: tuple[dict[str, Any], ...]
    kind: str = "list"
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __add__(self, other: Sweep) -> Sweep:
        """Both studies' runs. Two random searches over the same keys stay a random search for
        W&B, a key fixed to different values on each side becoming a choice among them (Greff
        et al.'s one search per variant); anything else is a plain list of runs."""
        runs = self.runs + other.runs
        if self.kind != "random" or other.kind != "random":
            return Sweep(runs, "list", {})
        if set(self.parameters) != set(other.parameters):
            return Sweep(runs, "list", {})
        parameters = {}
        for key, mine in self.parameters.items():
            theirs = other.parameters[key]
            if mine == theirs:
                parameters[key] = mine
            elif {*mine, *theirs} <= {"value", "values"}:
                pooled = list(mine.get("values", [mine.get("value")]))
                for value in theirs.get("values", [theirs.get("value")]):
                    if value not in pooled:
                        pooled.append(value)
                parameters[key] = {"values": pooled}
            else:
                return Sweep(runs, "list", {})
        return Sweep(runs, "random", parameters)

    def __len__(self) -> int:
        return len(self.runs)


def grid(axes: dict[str, Sequence[Any]]) -> Sweep:
    """Every combination of the axes, the first axis varying slowest.

    ``grid({"model.variant": ["vanilla", "NFG"], "optim.lr": [1e-3, 3e-3]})`` is 4 overrides.
    """
    keys = list(axes)
    runs = tuple(
        dict(zip(keys, values, strict=True)) for values in itertools.product(*axes.values())
    )
    return Sweep(runs, "grid", {k: {"values": list(v)} for k, v in axes.items()})


def zipped(axes: dict[str, Sequence[Any]]) -> Sweep:
    """The axes side by side (all of one length): ``{"a": [1, 2], "b": [3, 4]}`` is 2 overrides."""
    lengths = {len(v) for v in axes.values()}
    if len(lengths) != 1:
        raise ValueError(f"zipped axes differ in length: { {k: len(v) for k, v in axes.items()} }")
    keys = list(axes)
    return Sweep(
        tuple(dict(zip(keys, values, strict=True)) for values in zip(*axes.values(), strict=True))
    )


@dataclasses.dataclass(frozen=True)
class _Distribution:
    kind: str
    low: float = 0.0
    high: float = 0.0
    values: tuple = ()

    def sample(self, rng: np.random.Generator) -> Any:
        match self.kind:
            case "log_uniform":
                return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
            case "uniform":
                return float(rng.uniform(self.low, self.high))
            case "choice":
                return self.values[int(rng.integers(len(self.values)))]
            case "one_minus_log_uniform":
                return 1.0 - float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        raise AssertionError(self.kind)

    def wandb(self) -> dict[str, Any]:
        match self.kind:
            case "log_uniform":
                return {"distribution": "log_uniform_values", "min": self.low, "max": self.high}
            case "uniform":
                return {"distribution": "uniform", "min": self.low, "max": self.high}
            case "one_minus_log_uniform":
                # W&B has no such distribution: the nearest it has, over the same range.
                return {"distribution": "uniform", "min": 1.0 - self.high, "max": 1.0 - self.low}
        return {"values": list(self.values)}


def log_uniform(low: float, high: float) -> _Distribution:
    """``exp(U[log low, log high])`` (Greff et al.'s learning rate and hidden size)."""
    return _Distribution("log_uniform", low, high)


def one_minus_log_uniform(low: float, high: float) -> _Distribution:
    """``1 - exp(U[log low, log high])``: Greff et al.'s momentum, 1 - log-uniform [0.01, 1]."""
    return _Distribution("one_minus_log_uniform", low, high)


def uniform(low: float, high: float) -> _Distribution:
    return _Distribution("uniform", low, high)


def choice(*values: Any) -> _Distribution:
    return _Distribution("choice", values=tuple(values))


def log_buckets(low: float, high: float, buckets: int) -> _Distribution:
    """A log-uniform integer on [low, high], snapped to ``buckets`` sizes.

    The range is cut into equal log-width intervals and each draw takes its interval's geometric
    centre, so every size is equally likely, exactly as a log-uniform draw would put its mass;
    runs that share a size share a compiled program (a continuous hidden size would give every
    run its own).
    """
    edges = np.geomspace(low, high, buckets + 1)
    centres = tuple(
        int(round(math.sqrt(a * b))) for a, b in zip(edges[:-1], edges[1:], strict=True)
    )
    return choice(*centres)


def random(
    trials: int, seed: int, space: dict[str, Any], fixed: dict[str, Any] | None = None
) -> Sweep:
    """A seeded random search: ``trials`` draws of ``space`` (distributions or fixed values).

    Every trial is its own run (its own seed, ``run.seeds = (trial,)`` unless given), named by
    its trial number.
    """
    rng = np.random.default_rng(seed)
    runs = []
    for trial in range(trials):
        draw = {k: v.sample(rng) if isinstance(v, _Distribution) else v for k, v in space.items()}
        runs.append({"_trial": trial, "run.seeds": (trial,), **(fixed or {}), **draw})
    parameters = {k: {"value": v} for k, v in (fixed or {}).items()}
    parameters.update(
        {k: v.wandb() if isinstance(v, _Distribution) else {"value": v} for k, v in space.items()}
    )
    return Sweep(tuple(runs), "random", parameters)


# ==================================================================================================
# Expanding and grouping.
# ==================================================================================================


@dataclasses.dataclass
class PlannedRun:
    """One run of a sweep: its overrides, its seed, its config (or why it has none)."""

    name: str
    overrides: dict[str, Any]
    seed: int
    config: Config | None
    error: str | None = None
    group: str = ""


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, (tuple, list)):
        return ",".join(_format(v) for v in value)
    return str(value)


def run_name(overrides: dict[str, Any], seed: int) -> str:
    """A readable, filesystem-safe name: ``CIFG__lr=0.003__s0``, ``vanilla__t017__s17``."""
    parts = []
    for key, value in overrides.items():
        if key == "run.seeds":
            continue
        if key == "_trial":
            parts.append(f"t{value:03d}")
        elif key == "model.variant":
            parts.insert(0, str(value))
        else:
            parts.append(f"{key.split('.')[-1]}={_format(value)}")
    parts.append(f"s{seed}")
    name = "__".join(parts)
    return "".join(c if c.isalnum() or c in "=._,-+" else "-" for c in name)


def _as_override(key: str, value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return f"{key}={','.join(str(v) for v in value)}"
    if isinstance(value, dict):
        raise config_lib.ConfigError(f"{key}: give sub-keys one by one ({key}.NAME=VALUE)")
    return f"{key}={value}"


def expand(base: Config, sweep: Sweep) -> list[PlannedRun]:
    """One ``PlannedRun`` per override dict and seed; an invalid one carries its error."""
    planned = []
    for overrides in sweep.runs:
        settings = [_as_override(k, v) for k, v in overrides.items() if not k.startswith("_")]
        try:
            config = config_lib.apply_overrides(base, settings)
            config_lib.validate(config)
            seeds = config.run.seeds
        except ValueError as error:
            seeds = overrides.get("run.seeds", base.run.seeds)
            for seed in seeds:
                planned.append(
                    PlannedRun(run_name(overrides, seed), overrides, seed, None, str(error))
                )
            continue
        for seed in seeds:
            one = dataclasses.replace(config, run=dataclasses.replace(config.run, seeds=(seed,)))
            planned.append(PlannedRun(run_name(overrides, seed), overrides, seed, one))
    counts = collections.Counter(p.name for p in planned)
    duplicates = sorted(name for name, n in counts.items() if n > 1)
    if duplicates:
        raise ValueError(f"the sweep has duplicate runs: {', '.join(duplicates[:5])}")
    return planned


def plan_groups(runs: Iterable[PlannedRun], max_group: int) -> list[list[PlannedRun]]:
    """Runs sharing a program, in groups of at most ``max_group``, in first-appearance order.

    A group's name hashes its program and its members, so the same pending runs form the same
    group (and find its checkpoint) when a sweep resumes.
    """
    from gatelab.train import static_key  # the one definition of "same program"

    by_key: dict[str, list[PlannedRun]] = {}
    for run in runs:
        by_key.setdefault(static_key(run.config), []).append(run)
    groups = []
    for key, members in by_key.items():
        for begin in range(0, len(members), max_group):
            group = members[begin : begin + max_group]
            digest = hashlib.sha1((key + "|".join(r.name for r in group)).encode()).hexdigest()
            label = f"{group[0].config.model.variant}-{digest[:10]}"
            for run in group:
                run.group = label
            groups.append(group)
    return groups


# ==================================================================================================
# Stages: tune the learning rate, then test fresh seeds at the best one.
# ==================================================================================================


def best_learning_rates(tune_dir: Path) -> dict[str, dict[str, Any]]:
    """Per setting (the overrides without learning rate and seed), the learning rate whose runs
    have the best mean validation primary metric, read from a finished tune stage."""
    sweep = records.read_json(tune_dir / "sweep.json")
    scores: dict[str, dict[float, list[float]]] = {}
    settings: dict[str, dict[str, Any]] = {}
    direction = None
    for run in sweep["runs"]:
        summary = records.RunRecord.read_summary(tune_dir / run["name"])
        if not summary or summary.get("status") != "completed":
            continue
        direction = summary["direction"]
        setting = {k: v for k, v in run["overrides"].items() if k not in ("optim.lr", "run.seeds")}
        key = json.dumps(setting, sort_keys=True)
        settings[key] = setting
        value = summary.get(f"eval/{summary['primary_metric']}")
        if value is not None:
            scores.setdefault(key, {}).setdefault(summary["hparams/lr"], []).append(value)
    if not scores:
        raise ValueError(f"{tune_dir} has no completed runs to pick learning rates from")
    pick = max if direction == "max" else min
    return {
        key: {**settings[key], "optim.lr": pick(by_lr, key=lambda lr: np.mean(by_lr[lr]))}  # noqa: B023
        for key, by_lr in scores.items()
    }


def _test_stage(tune_dir: Path, seeds: tuple[int, ...]) -> Sweep:
    if not (tune_dir / "sweep.json").exists():
        raise ValueError(
            f"--stage test needs a finished tune stage in {tune_dir} (run --stage tune)"
        )
    runs = [{**best, "run.seeds": seeds} for best in best_learning_rates(tune_dir).values()]
    return Sweep(tuple(runs), "list")


# ==================================================================================================
# Running.
# ==================================================================================================


def _shard(runs: list[PlannedRun], shard: tuple[int, int] | None) -> list[PlannedRun]:
    if shard is None:
        return runs
    index, count = shard
    return runs[index::count]


def parse_shard(text: str) -> tuple[int, int]:
    """``"0/2"`` -> ``(0, 2)``; a clear error otherwise."""
    try:
        index, count = (int(p) for p in text.split("/"))
    except ValueError:
        raise config_lib.ConfigError(f"--shard {text!r} must be I/N, e.g. 0/2") from None
    if not 0 <= index < count:
        raise config_lib.ConfigError(f"--shard {text!r}: need 0 <= I < N")
    return index, count


def _status(directory: Path, run: PlannedRun) -> str:
    if run.error:
        return "failed"
    summary = records.RunRecord.read_summary(directory / run.name)
    return summary.get("status", "pending") if summary else "pending"


def _failure(run: PlannedRun, error: str, trace: str) -> dict[str, Any]:
    summary = {"status": "failed", "error": error, "traceback": trace, "seed": run.seed}
    if run.config is not None:
        from gatelab.train import variant_label

        summary.update(variant=variant_label(run.config), task=run.config.task.name)
    else:
        summary.update(variant=run.overrides.get("model.variant", ""))
    return summary


def load_study(
    target: str, overrides: Sequence[str], stage: str, directory: Path, test_seeds: int = 5
):
    """The base config and the study of ``target`` (``path[:arg]``) for ``stage``.

    The test stage trains ``test_seeds`` fresh seeds (after the largest seed of the study) at
    each setting's best learning rate from ``directory/tune``.
    """
    path, arg = config_lib.split_target(target)
    module = config_lib.load_module(path)
    if not hasattr(module, "sweep"):
        raise config_lib.ConfigError(f"{path} has no sweep(); a study needs one")
    base = module.get_config(arg) if arg is not None else module.get_config()
    base = config_lib.apply_overrides(base, list(overrides))
    config_lib.validate(base)
    study = module.sweep(arg) if arg is not None else module.sweep()
    if not isinstance(study, Sweep):
        study = Sweep(tuple(study), "list")
    if stage == "test":
        first = max(run.seed for run in expand(base, study)) + 1
        study = _test_stage(directory / "tune", tuple(range(first, first + test_seeds)))
    return base, study


def stage_directory(directory: Path, stage: str) -> Path:
    return directory / stage if stage in ("tune", "test") else directory


def run_sweep(
    target: str,
    directory: str | Path,
    overrides: Sequence[str] = (),
    *,
    stage: str = "all",
    shard: tuple[int, int] | None = None,
    max_group: int = 64,
    test_seeds: int = 5,
    workers: int | str = 1,
    quiet: bool = False,
) -> int:
    """Runs (or resumes) the study of ``target`` under ``directory``.

    Returns:
        0 when every run of this shard finished (completed or diverged), 1 when any failed.
    """

    directory = Path(directory)
    base, study = load_study(target, overrides, stage, directory, test_seeds)
    directory = stage_directory(directory, stage)
    planned = _shard(expand(base, study), shard)
    directory.mkdir(parents=True, exist_ok=True)
    valid = [run for run in planned if run.config is not None]
    status = {run.name: _status(directory, run) for run in planned}
    pending = [run for run in valid if status[run.name] not in ("completed", "diverged")]
    groups = plan_groups(pending, max_group)
    for run in valid:  # finished runs keep the group they were trained in
        if not run.group and (directory / run.name / "config.json").exists():
            stored = records.read_json(directory / run.name / "config.json")
            run.group = stored.get("resolved", {}).get("group", "")

    def write_state() -> None:
        records.write_json_atomic(
            directory / "sweep.json",
            {
                "config": config_lib.split_target(target)[0],
                "arg": config_lib.split_target(target)[1],
                "stage": stage,
                "kind": study.kind,
                "overrides": list(overrides),
                "shard": list(shard) if shard else None,
                "runs": [
                    {
                        "name": run.name,
                        "overrides": {k: v for k, v in run.overrides.items() if k != "run.seeds"},
                        "seed": run.seed,
                        "group": run.group,
                        "status": status[run.name],
                    }
                    for run in planned
                ],
                "code_version": records.code_version(),
            },
        )

    for run in planned:
        if run.error:  # an invalid run fails alone, before anything compiles
            directory.joinpath(run.name).mkdir(exist_ok=True)
            records.write_json_atomic(
                directory / run.name / "summary.json", _failure(run, run.error, run.error)
            )
    write_state()
    skipped = len(valid) - len(pending)
    if not quiet:
        print(
            f"sweep {directory}: {len(planned)} runs ({skipped} already finished, "
            f"{sum(1 for r in planned if r.error)} invalid), {len(groups)} compiled programs to run"
        )
    bar = tqdm(total=len(pending), disable=quiet, desc="sweep", unit="run", position=0)
    workers = min(resolve_workers(workers), len(groups)) if groups else 1
    jobs = [
        (
            [run.config for run in group],
            directory / "groups" / group[0].group,
            [directory / run.name for run in group],
            quiet or workers > 1,  # parallel groups' bars would garble each other
            f"group {number}/{len(groups)} {group[0].config.model.variant}",
        )
        for number, group in enumerate(groups, 1)
    ]
    for group in groups:
        for run in group:
            status[run.name] = "running" if workers > 1 else status[run.name]
    finished = 0
    for index, (summaries, failure) in _execute(jobs, workers, write_state, groups, status):
        group = groups[index]
        finished += 1
        if failure is None:
            for run, summary in zip(group, summaries, strict=True):
                status[run.name] = summary["status"]
        else:
            for run in group:
                status[run.name] = "failed"
                (directory / run.name).mkdir(parents=True, exist_ok=True)
                records.write_json_atomic(
                    directory / run.name / "summary.json",
                    _failure(run, failure["error"], failure["traceback"]),
                )
            if not quiet:
                print(f"group {group[0].group} failed: {failure['error']}")
        write_state()
        bar.update(len(group))  # tqdm's estimate of the time left is per run
        bar.set_postfix(groups=f"{finished}/{len(groups)}", workers=workers)
    bar.close()
    counts = {s: list(status.values()).count(s) for s in sorted(set(status.values()))}
    if not quiet:
        print(f"sweep {directory}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        print(f"report: gatelab report {directory.parent if stage == 'test' else directory}")
    return 0 if all(s in ("completed", "diverged") for s in status.values()) else 1


# ==================================================================================================
# Executing groups: in this process, or in worker processes pinned to cores.
# ==================================================================================================


def resolve_workers(workers: int | str) -> int:
    """``auto``: one worker per core on the CPU, one process on an accelerator."""
    if workers == "auto":
        import jax

        return len(os.sched_getaffinity(0)) if jax.default_backend() == "cpu" else 1
    count = int(workers)
    if count < 1:
        raise config_lib.ConfigError(f"--workers {workers!r} must be at least 1 (or auto)")
    return count


def _train_job(job) -> tuple[list[dict] | None, dict | None]:
    """Trains one group; a failure comes back as its summary instead of an exception."""
    from gatelab import train

    configs, group_dir, run_dirs, quiet, label = job
    try:
        return train.train_group(
            configs, group_dir, run_dirs, quiet=quiet, progress_label=label
        ), None
    except Exception as error:  # noqa: BLE001  (a failed group must not stop the sweep)
        return None, train.failure_summary(error)


def _pin_worker(cores) -> None:
    """Worker start-up: one core each (XLA on the CPU uses a second core poorly at these
    sizes), the allocator and JAX configured as the CLI does."""
    core = cores.get()
    os.sched_setaffinity(0, {core})
    from gatelab import runtime

    runtime.tune_allocator()
    runtime.configure_jax()


def group_cost(group: Sequence[PlannedRun]) -> float:
    """A group's training work, relative: runs x steps x batch x one recurrent layer's
    parameters (its input taken as wide as its state) x layers x directions."""
    config = group[0].config
    hidden, model = config.model.hidden, config.model
    layer = families.param_count(config.spec, hidden, hidden) * model.layers
    layer *= 2 if model.bidirectional else 1
    return len(group) * config.run.steps * config.run.batch_size * layer


def schedule(groups: Sequence[Sequence[PlannedRun]]) -> list[int]:
    """The order in which workers take groups: the costliest first (longest processing time
    first), so that no worker is left with a long group when the others are done."""
    return sorted(range(len(groups)), key=lambda k: -group_cost(groups[k]))


def _execute(jobs, workers: int, on_start, groups, status):
    """Yields ``(index, (summaries, failure))`` per job: in order in this process, as each
    finishes with several workers (which take the groups in ``schedule`` order)."""
    if workers == 1:
        for index, (job, group) in enumerate(zip(jobs, groups, strict=True)):
            for run in group:
                status[run.name] = "running"
            on_start()
            yield index, _train_job(job)
        return
    context = multiprocessing.get_context("spawn")  # JAX is not fork-safe
    cores = context.Queue()
    available = sorted(os.sched_getaffinity(0))
    for k in range(workers):
        cores.put(available[k % len(available)])
    on_start()
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=context, initializer=_pin_worker, initargs=(cores,)
    ) as pool:
        futures = {pool.submit(_train_job, jobs[k]): k for k in schedule(groups)}
        for future in concurrent.futures.as_completed(futures):
            yield futures[future], future.result()


# ==================================================================================================
# W&B sweeps, for teams with a W&B server.
# ==================================================================================================


def wandb_sweep_config(target: str, overrides: Sequence[str] = (), stage: str = "all") -> dict:
    """The W&B sweep equivalent to ``target``'s study: each agent run is one ``gatelab train``.

    Grids and random searches keep their axes and distributions; a plain list becomes a grid over
    the values each key takes. Seeds are enumerated one per run.
    """
    base, study = load_study(target, overrides, stage if stage != "test" else "all", Path("."))
    parameters = dict(study.parameters)
    if not parameters:
        keys = {k for run in study.runs for k in run if not k.startswith("_")}
        parameters = {
            k: {
                "values": [
                    json.loads(v) for v in sorted({json.dumps(r[k]) for r in study.runs if k in r})
                ]
            }
            for k in keys
        }
    # One seed per agent run: each W&B run mirrors exactly one gatelab run.
    seeds = set(base.run.seeds)
    for value in parameters.pop("run.seeds", {}).get("values", []):
        seeds |= set(value) if isinstance(value, (list, tuple)) else {value}
    parameters["run.seeds"] = {"values": sorted(seeds)}
    from gatelab import tasks

    task = tasks.get(base.task.name, **base.task.args)
    command = ["${env}", "gatelab", "train", target, "--quiet", "wandb.mode=online"]
    command += list(overrides) + ["${args_no_hyphens}"]
    config = {
        "name": Path(config_lib.split_target(target)[0]).stem,
        "method": "random" if study.kind == "random" else "grid",
        "metric": {
            "name": f"eval/{task.primary_metric}",
            "goal": "maximize" if task.direction == "max" else "minimize",
        },
        "parameters": parameters,
        "command": command,
    }
    if study.kind == "random":
        config["run_cap"] = len(study.runs)
    return config
