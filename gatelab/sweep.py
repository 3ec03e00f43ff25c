"""Sweeps: a study expanded into runs, trained as few compiled programs as its runs allow.

A config file's ``sweep(arg=None)`` returns a study (``gatelab.study``). ``run_sweep`` expands it
into runs (one seed each), groups the runs whose programs are identical (same shapes and static
structure, differing only in seed, learning rate and other per-run values: ``config.static_key``),
trains each group as one program (``gatelab.workers``: here, or in worker processes pinned to
cores), and records every run in its own workdir, in ``gatelab.records``' layout::

    DIR/sweep.json              the expanded runs and each one's status
    DIR/<run name>/             config.json, metrics.jsonl, summary.json, wandb/
    DIR/groups/<group>/         the group's stacked checkpoint

Running the same command again resumes: finished runs are skipped, interrupted groups resume
from their checkpoints, failed runs are retried. ``--stage tune`` then ``--stage test`` tune each
setting's learning rate and test it on fresh seeds (``DIR/tune``, ``DIR/test``). ``--shard i/n``
takes a deterministic 1/n of the runs, so n machines can share a sweep and merge their
directories by copying.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from gatelab import config as config_lib
from gatelab import records
from gatelab import study as study_lib
from gatelab import workers as worker_pool
from gatelab.config import Config
from gatelab.study import Sweep

__all__ = [
    "STAGES",
    "PlannedRun",
    "expand",
    "load",
    "parse_shard",
    "plan_groups",
    "run_name",
    "run_sweep",
    "shard_runs",
    "stage_directory",
    "statuses",
    "test_stage",
]

STAGES = ("all", "tune", "test")


# ==================================================================================================
# Expanding and grouping.
# ==================================================================================================


@dataclasses.dataclass
class PlannedRun:
    """One run of a sweep: its overrides, its seed, its config (or why it has none)."""

    name: str
    overrides: dict[str, Any]
    seed: int | None  # None where the study gives no integer seed (an invalid run)
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
            seeds = seeds if isinstance(seeds, (list, tuple)) and seeds else (seeds,)
            for seed in seeds:  # as given, even when the seeds are what is invalid
                known = seed if isinstance(seed, int) and not isinstance(seed, bool) else None
                planned.append(
                    PlannedRun(run_name(overrides, seed), overrides, known, None, str(error))
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

    A group's name hashes its program and its members (``records.group_name``), so the same
    pending runs form the same group (and find its checkpoint) when a sweep resumes.
    """
    by_key: dict[str, list[PlannedRun]] = {}
    for run in runs:
        by_key.setdefault(config_lib.static_key(run.config), []).append(run)
    groups = []
    for key, members in by_key.items():
        for begin in range(0, len(members), max_group):
            group = members[begin : begin + max_group]
            label = records.group_name(group[0].config.model.variant, key, [r.name for r in group])
            for run in group:
                run.group = label
            groups.append(group)
    return groups


# ==================================================================================================
# Stages: tune the learning rate, then test fresh seeds at the best one.
# ==================================================================================================


def stage_directory(directory: Path, stage: str) -> Path:
    return directory / stage if stage in ("tune", "test") else directory


def test_stage(tune_dir: Path, seeds: tuple[int, ...]) -> Sweep:
    """Every setting of a finished tune stage at its best learning rate
    (``records.best_learning_rates``), with ``seeds``."""
    if records.read_index(tune_dir) is None:
        raise ValueError(
            f"--stage test needs a finished tune stage in {tune_dir} (run --stage tune)"
        )
    chosen = [t for t in records.best_learning_rates(tune_dir) if t.lr is not None]
    if not chosen:
        raise ValueError(f"{tune_dir} has no completed runs to pick learning rates from")
    runs = [{**t.setting, "optim.lr": t.lr, "run.seeds": seeds} for t in chosen]
    return Sweep(tuple(runs), "list")


def load(
    target: str, overrides: Sequence[str], stage: str, directory: Path, test_seeds: int = 5
) -> tuple[Config, Sweep]:
    """The base config and the study of ``target`` (``path[:arg]``) for ``stage``.

    The test stage trains ``test_seeds`` fresh seeds (after the largest seed of the study) at
    each setting's best learning rate from ``directory/tune``.
    """
    base, study = config_lib.load_study(target, overrides)
    study = study_lib.as_sweep(study)
    if stage == "test":
        first = max((r.seed for r in expand(base, study) if r.seed is not None), default=-1) + 1
        study = test_stage(directory / "tune", tuple(range(first, first + test_seeds)))
    return base, study


# ==================================================================================================
# Shards: n machines (or n cluster jobs) share a sweep.
# ==================================================================================================


def shard_runs(
    runs: list[PlannedRun], part: tuple[int, int] | None, max_group: int = 64
) -> list[PlannedRun]:
    """The runs of the ``part = (i, n)``-th of ``n`` deterministic shares of ``runs``' groups
    (all of them without one).

    Whole groups are dealt out, never split (a group split over shards would compile its program
    once per shard): the groups of every valid run, finished or not, costliest first, each to the
    share with the least work so far (``workers.group_cost``). Invalid runs are dealt in turn.
    The shares depend only on the study, so a job that is requeued takes the same share again.
    """
    if part is None:
        return runs
    index, count = part
    valid = [dataclasses.replace(run) for run in runs if run.config is not None]
    groups = plan_groups(valid, max_group)
    loads = [0.0] * count
    mine = set()
    for k in worker_pool.schedule([[run.config for run in group] for group in groups]):
        share = min(range(count), key=lambda s: (loads[s], s))
        loads[share] += worker_pool.group_cost([run.config for run in groups[k]])
        if share == index:
            mine.update(run.name for run in groups[k])
    invalid = [run.name for run in runs if run.config is None][index::count]
    mine.update(invalid)
    return [run for run in runs if run.name in mine]


def parse_shard(text: str) -> tuple[int, int]:
    """``"0/2"`` -> ``(0, 2)``; a clear error otherwise."""
    try:
        index, count = (int(p) for p in text.split("/"))
    except ValueError:
        raise config_lib.ConfigError(f"--shard {text!r} must be I/N, e.g. 0/2") from None
    if not 0 <= index < count:
        raise config_lib.ConfigError(f"--shard {text!r}: need 0 <= I < N")
    return index, count


# ==================================================================================================
# Running.
# ==================================================================================================


def _failed(run: PlannedRun, error: str, trace: str) -> records.Summary:
    if run.config is None:
        return records.Summary.failed(
            error, trace, seed=run.seed, variant=run.overrides.get("model.variant", "")
        )
    return records.Summary.failed(
        error,
        trace,
        seed=run.seed,
        variant=config_lib.variant_label(run.config),
        task=run.config.task.name,
    )


def _write_failure(directory: Path, run: PlannedRun, error: str, trace: str) -> None:
    (directory / run.name).mkdir(parents=True, exist_ok=True)
    records.write_json_atomic(
        directory / run.name / "summary.json", _failed(run, error, trace).to_json()
    )


def statuses(directory: Path, runs: Iterable[PlannedRun]) -> dict[str, str]:
    """Every run's status, read from the records now (``records.live_status``)."""
    claimed: dict[str, bool] = {}
    found = {}
    for run in runs:
        if run.group not in claimed:
            claimed[run.group] = records.group_claimed(directory, run.group)
        summary = records.read_summary(directory / run.name)
        found[run.name] = records.live_status(summary, claimed[run.group])
    return found


def _group_of(directory: Path, run: PlannedRun) -> str:
    stored = records.read_json_or_none(directory / run.name / "config.json") or {}
    return stored.get("resolved", {}).get("group", "")


@dataclasses.dataclass
class Plan:
    """A sweep's runs for one process: the whole study, this shard's part, the groups it trains.

    Attributes:
        directory: the directory of runs (the stage's).
        everything: every run of the study (each with its group, planned or recorded).
        planned: this shard's runs; pending: those of them left to train, in ``groups``.
    """

    target: str
    overrides: tuple[str, ...]
    stage: str
    kind: str
    directory: Path
    everything: list[PlannedRun]
    planned: list[PlannedRun]
    pending: list[PlannedRun]
    groups: list[list[PlannedRun]]

    def write_index(self) -> None:
        """``sweep.json``: every run of the study, its statuses read from the records now."""
        path, arg = config_lib.split_target(self.target)

        def make() -> dict[str, Any]:
            status = statuses(self.directory, self.everything)
            entries = [
                {
                    "name": run.name,
                    "overrides": {k: v for k, v in run.overrides.items() if k != "run.seeds"},
                    "seed": run.seed,
                    "group": run.group,
                    "status": status[run.name],
                }
                for run in self.everything
            ]
            return {
                "config": path,
                "arg": arg,
                "stage": self.stage,
                "kind": self.kind,
                "overrides": list(self.overrides),
                "runs": entries,
            }

        records.update_index(self.directory, make)

    def prepare(self) -> None:
        """Creates the directory, records this shard's invalid runs as failed (before anything
        compiles) and writes the index."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for run in self.planned:
            if run.error:
                _write_failure(self.directory, run, run.error, run.error)
        self.write_index()


def plan(
    target: str,
    directory: str | Path,
    overrides: Sequence[str] = (),
    *,
    stage: str = "all",
    shard: tuple[int, int] | None = None,
    max_group: int = 64,
    test_seeds: int = 5,
) -> Plan:
    """The study of ``target`` expanded, its runs' statuses read, this shard's groups planned
    (nothing is written). A ConfigError here means nothing has started."""
    directory = Path(directory)
    base, study = load(target, overrides, stage, directory, test_seeds)
    directory = stage_directory(directory, stage)
    everything = expand(base, study)
    planned = shard_runs(everything, shard, max_group)
    summaries = {run.name: records.read_summary(directory / run.name) for run in everything}
    unfinished = [
        run
        for run in everything
        if run.config is not None and not (summaries[run.name] and summaries[run.name].finished)
    ]
    # Every unfinished run of the study is given the group its shard trains it in (a shard's
    # groups are whole groups of this one plan); a finished run keeps the group it trained in.
    plan_groups(unfinished, max_group)
    mine = {run.name for run in planned if run.config is not None}
    pending = [run for run in unfinished if run.name in mine]
    groups = plan_groups(pending, max_group)
    for run in everything:
        if run.config is not None and not run.group:
            run.group = _group_of(directory, run)
    return Plan(
        target, tuple(overrides), stage, study.kind, directory, everything, planned, pending, groups
    )


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

    Many processes may run the same sweep on one directory at once (shards, cluster jobs, the
    same command twice): each group is claimed before it is trained (``locks``), a group claimed
    by another process is left to it and waited for at the end, and ``sweep.json`` is derived
    from the run records under a lock, never written from a stale copy.

    Returns:
        0 when every run of this shard finished (completed or diverged), 1 when any failed.
    """
    work = plan(
        target,
        directory,
        overrides,
        stage=stage,
        shard=shard,
        max_group=max_group,
        test_seeds=test_seeds,
    )
    directory, groups = work.directory, work.groups
    work.prepare()
    if not quiet:
        planned = work.planned
        part = f" (shard {shard[0]}/{shard[1]} of {len(work.everything)})" if shard else ""
        finished = sum(1 for r in planned if r.config is not None) - len(work.pending)
        print(
            f"sweep {directory}: {len(planned)} runs{part} ({finished} already finished, "
            f"{sum(1 for r in planned if r.error)} invalid), {len(groups)} compiled programs to run"
        )
    count = min(worker_pool.resolve_workers(workers), len(groups)) if groups else 1

    def job(number: int, group: list[PlannedRun], wait: bool) -> worker_pool.Job:
        return worker_pool.Job(
            tuple(run.config for run in group),
            records.group_dir(directory, group[0].group),
            tuple(directory / run.name for run in group),
            quiet or count > 1,  # parallel groups' bars would garble each other
            f"group {number}/{len(groups)} {group[0].config.model.variant}",
            wait,
            work.write_index,  # once claimed: the index then says running (a bound method of
            # a dataclass, so that it pickles into worker processes)
        )

    bar = tqdm(total=len(work.pending), disable=quiet, desc="sweep", unit="run", position=0)
    held: list[int] = []  # groups another process was training: waited for at the end
    done = 0
    for wait, indices in ((False, list(range(len(groups)))), (True, held)):
        if not indices:
            continue
        if wait and not quiet:
            bar.write(f"waiting for {len(indices)} group(s) that other processes are training")
        jobs = [job(k + 1, groups[k], wait) for k in indices]
        passing = min(count, len(jobs))
        for position, _, outcome in worker_pool.execute(
            jobs, passing, lambda _: work.write_index()
        ):
            index = indices[position]
            group = groups[index]
            if isinstance(outcome, worker_pool.Held):
                held.append(index)
                if not quiet:
                    bar.write(f"{outcome.message}; left to it")
                continue
            if isinstance(outcome, worker_pool.Failure):
                for run in group:
                    _write_failure(directory, run, outcome.error, outcome.traceback)
                if not quiet:
                    bar.write(f"group {group[0].group} failed: {outcome.error}")
            work.write_index()
            done += 1
            bar.update(len(group))  # tqdm's estimate of the time left is per run
            bar.set_postfix(groups=f"{done}/{len(groups)}", workers=passing)
    bar.close()
    work.write_index()
    status = statuses(directory, work.planned)
    counts = collections.Counter(status.values())
    if not quiet:
        print(f"sweep {directory}: " + ", ".join(f"{counts[s]} {s}" for s in sorted(counts)))
        print(f"report: gatelab report {directory.parent if stage == 'test' else directory}")
    return 0 if all(s in records.FINISHED for s in status.values()) else 1
