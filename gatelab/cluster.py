"""A sweep as N jobs through submitit: SLURM job arrays on a cluster, processes on this machine.

``gatelab sweep CONFIG --executor slurm --jobs N`` submits one job array of N tasks; task ``i``
runs ``run_sweep(..., shard=(i, N))``, exactly what ``--shard i/N`` runs, so each job trains
whole groups (``sweep.shard_runs``), resumes from their checkpoints, and shares the directory
safely with the others (``gatelab.locks``). A job that is preempted or reaches its time limit
is requeued by submitit (``Checkpointable``: the same call again) and resumes from its groups'
last checkpoints, losing at most one checkpoint interval. ``--executor local`` runs the same
jobs as processes on this machine (submitit's local executor; no cluster needed), each pinned
to one core as sweep workers are. Submitit's files (pickled calls, each job's stdout and
stderr) go to ``DIR/jobs/``; ``gatelab status DIR`` reads where the sweep stands from the
records.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import submitit
from tqdm.auto import tqdm

from gatelab import config as config_lib
from gatelab import status as status_lib
from gatelab import sweep as sweep_lib

__all__ = ["EXECUTORS", "ClusterOptions", "ShardJob", "executor_parameters", "submit"]

EXECUTORS = ("inline", "local", "slurm")
JOBS = "jobs"  # DIR/jobs: submitit's folder


@dataclasses.dataclass(frozen=True)
class ClusterOptions:
    """Where and how the jobs run (``--slurm-*``; ``time_min`` is the local timeout too)."""

    executor: str = "local"
    jobs: int = 2
    partition: str = ""
    gpus: int = 0
    time_min: int = 24 * 60
    cpus: int = 0  # 0: SLURM's default; on the local executor, one core per job
    max_running: int = 0  # at most this many array tasks at once (0: no limit)

    def check(self) -> None:
        if self.executor not in EXECUTORS[1:]:
            raise config_lib.ConfigError(
                f"--executor {self.executor!r}: choices are {', '.join(EXECUTORS)}"
            )
        for name, value, least in (
            ("--jobs", self.jobs, 1),
            ("--slurm-time", self.time_min, 1),
            ("--slurm-gpus", self.gpus, 0),
            ("--slurm-cpus", self.cpus, 0),
            ("--slurm-max-running", self.max_running, 0),
        ):
            if value < least:
                raise config_lib.ConfigError(f"{name}={value} must be at least {least}")


def executor_parameters(options: ClusterOptions, name: str) -> dict[str, Any]:
    """The parameters given to ``AutoExecutor.update_parameters``."""
    parameters: dict[str, Any] = {"timeout_min": options.time_min, "name": name}
    if options.executor == "slurm":
        parameters["slurm_array_parallelism"] = options.max_running or options.jobs
        if options.partition:
            parameters["slurm_partition"] = options.partition
        if options.gpus:
            parameters["gpus_per_node"] = options.gpus
        if options.cpus:
            parameters["cpus_per_task"] = options.cpus
        # One task per job: the job's own process trains its groups (its workers, if any).
        parameters["tasks_per_node"] = 1
        parameters["nodes"] = 1
    elif options.gpus:
        parameters["gpus_per_node"] = options.gpus
    return parameters


class ShardJob(submitit.helpers.Checkpointable):
    """One job of the array: shard ``i`` of ``n`` of a sweep (``__call__(i)``).

    Checkpointable: on preemption or timeout submitit calls ``checkpoint(i)``, which resubmits
    the same call; the records and checkpoints on disk are the state, so nothing else is saved.
    """

    def __init__(
        self,
        target: str,
        directory: str,
        overrides: Sequence[str],
        count: int,
        stage: str,
        max_group: int,
        test_seeds: int,
        workers: int | str,
        pin: bool,
    ):
        self.target = target
        self.directory = directory
        self.overrides = tuple(overrides)
        self.count = count
        self.stage = stage
        self.max_group = max_group
        self.test_seeds = test_seeds
        self.workers = workers
        self.pin = pin

    def __call__(self, index: int) -> int:
        from gatelab import runtime

        if self.pin:  # the local executor's jobs share this machine: one core each
            cores = sorted(os.sched_getaffinity(0))
            os.sched_setaffinity(0, {cores[index % len(cores)]})
            runtime.use_host_cores(1)
        runtime.tune_allocator()
        runtime.configure_jax()
        return sweep_lib.run_sweep(
            self.target,
            self.directory,
            self.overrides,
            stage=self.stage,
            shard=(index, self.count),
            max_group=self.max_group,
            test_seeds=self.test_seeds,
            workers=self.workers,
            quiet=True,
        )


def make_executor(options: ClusterOptions, folder: Path, name: str) -> submitit.AutoExecutor:
    """Submitit's executor for ``options``, its parameters set.

    Raises:
        ConfigError: where submitit finds no SLURM (no ``srun``: not a cluster's node).
    """
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster=options.executor)
    except RuntimeError as error:
        raise config_lib.ConfigError(
            f"--executor {options.executor}: submitit cannot use SLURM here ({error}); submit "
            "from a node of the cluster, or use --executor local"
        ) from None
    executor.update_parameters(**executor_parameters(options, name))
    return executor


def submit(
    target: str,
    directory: str | Path,
    overrides: Sequence[str],
    options: ClusterOptions,
    *,
    stage: str = "all",
    max_group: int = 64,
    test_seeds: int = 5,
    workers: int | str = 1,
    wait: bool | None = None,
    quiet: bool = False,
) -> int:
    """Submits the sweep as ``options.jobs`` jobs; waits for them (``wait``; by default on the
    local executor only) and returns 0 when every job and every run finished.

    The study is expanded and checked here first (a ConfigError submits nothing), and the
    index written, so that ``gatelab status`` shows the runs as pending while jobs queue.
    """
    options.check()
    directory = Path(directory)
    work = sweep_lib.plan(
        target, directory, overrides, stage=stage, max_group=max_group, test_seeds=test_seeds
    )
    jobs_dir = work.directory / JOBS
    executor = make_executor(options, jobs_dir, f"gatelab-{directory.name}")  # before any write
    work.prepare()
    pin = options.executor == "local"
    call = ShardJob(
        target,
        str(directory),
        overrides,
        options.jobs,
        stage,
        max_group,
        test_seeds,
        1 if pin else workers,
        pin,
    )
    started = time.perf_counter()
    jobs = executor.map_array(call, list(range(options.jobs)))
    submitted = time.perf_counter() - started
    ids = ", ".join(job.job_id for job in jobs)
    print(
        f"sweep {work.directory}: {len(work.everything)} runs in {len(work.groups)} groups, "
        f"submitted as {len(jobs)} {options.executor} job(s) ({ids}) in {submitted:.1f} s; "
        f"logs in {jobs_dir}"
    )
    if wait is None:
        wait = options.executor == "local"
    if not wait:
        print(f"follow with: gatelab status {directory}")
        return 0
    return _wait(jobs, work.directory, len(work.everything), stage, quiet)


def _wait(jobs: list, directory: Path, total: int, stage: str, quiet: bool) -> int:
    """Waits for every job, with a bar of the runs done (read from the records)."""
    bar = tqdm(total=total, disable=quiet, desc="sweep", unit="run")
    while not all(job.done() for job in jobs):
        time.sleep(2.0)
        bar.n = _done(directory)
        bar.refresh()
    bar.n = _done(directory)
    bar.close()
    code = 0
    for index, job in enumerate(jobs):
        error = job.exception()
        if error is not None:
            lines = str(error).strip().splitlines()
            print(f"job {index} ({job.job_id}) failed: {lines[-1] if lines else error}")
            print(f"  its log: {job.paths.stderr}")
            code = 1
        elif job.result() != 0:
            code = 1
    groups = status_lib.collect(directory)
    counts = {s: sum(g.counts()[s] for g in groups) for s in status_lib.STATES}
    print(f"sweep {directory}: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    print(f"report: gatelab report {directory.parent if stage == 'test' else directory}")
    return code


def _done(directory: Path) -> int:
    try:
        return sum(g.counts()["done"] for g in status_lib.collect(directory))
    except (OSError, ValueError):  # the index being replaced
        return 0
