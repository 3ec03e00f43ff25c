"""Executing groups of runs: in this process, or in worker processes pinned to cores.

A job is one group (``train.train_group``'s arguments). With one worker the jobs run here, in
order; with several, in a pool of spawned processes, each pinned to one core and set up as the
CLI sets itself up (``gatelab.runtime``), taking the costliest groups first. A job that raises
comes back as a failure, never as an exception: one failed group must not stop a sweep.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from gatelab import config as config_lib
from gatelab import families, records
from gatelab.config import Config

__all__ = ["Job", "Failure", "Held", "execute", "group_cost", "resolve_workers", "schedule"]


@dataclasses.dataclass(frozen=True)
class Job:
    """One group to train: ``train.train_group(configs, group_dir, run_dirs, ...)``."""

    configs: tuple[Config, ...]
    group_dir: Path
    run_dirs: tuple[Path, ...]
    quiet: bool = True
    label: str = ""
    wait: bool = True  # for a group another process is training (False: it comes back Held)
    on_claimed: Callable[[], None] | None = None  # called once the group is claimed (picklable)


@dataclasses.dataclass(frozen=True)
class Held:
    """A job not run: another process holds its group's claim (``locks``)."""

    message: str


@dataclasses.dataclass(frozen=True)
class Failure:
    """Why a job failed: the error's one line and its traceback."""

    error: str
    traceback: str


def resolve_workers(workers: int | str) -> int:
    """``auto``: one worker per core on the CPU, one process on an accelerator."""
    if workers == "auto":
        import jax

        return len(os.sched_getaffinity(0)) if jax.default_backend() == "cpu" else 1
    try:
        count = int(workers)
    except ValueError:
        count = 0
    if count < 1:
        raise config_lib.ConfigError(f"--workers {workers!r} must be at least 1 (or auto)")
    return count


def group_cost(configs: Sequence[Config]) -> float:
    """A group's training work, relative: runs x steps x batch x one recurrent layer's
    parameters (its input taken as wide as its state) x layers x directions."""
    config = configs[0]
    model = config.model
    layer = families.param_count(config.spec, model.hidden, model.hidden) * model.layers
    layer *= 2 if model.bidirectional else 1
    return len(configs) * config.run.steps * config.run.batch_size * layer


def schedule(groups: Sequence[Sequence[Config]]) -> list[int]:
    """The order in which workers take groups: the costliest first (longest processing time
    first), so that no worker is left with a long group when the others are done."""
    return sorted(range(len(groups)), key=lambda k: -group_cost(groups[k]))


def _train(job: Job) -> tuple[list[dict] | None, Failure | Held | None]:
    """Trains one group; a failure (or another process's claim on the group) comes back
    instead of an exception."""
    from gatelab import locks, train  # in a worker, the runner's imports happen here

    try:
        summaries = train.train_group(
            list(job.configs),
            job.group_dir,
            list(job.run_dirs),
            quiet=job.quiet,
            progress_label=job.label,
            wait=job.wait,
            on_claimed=job.on_claimed,
        )
        return summaries, None
    except locks.Busy as busy:
        return None, Held(str(busy))
    except Exception as error:  # noqa: BLE001  (a failed group must not stop the sweep)
        if records.disk_full(error) is not None:
            raise  # the next group would fail the same way: the sweep stops and says why
        return None, Failure(f"{type(error).__name__}: {error}", traceback.format_exc())


def _pin_worker(cores, parent: int) -> None:
    """Worker start-up: one core each (XLA on the CPU uses a second core poorly at these sizes;
    experiments/bench/results/2026-11-27.md, "Worker processes pinned to cores"), the
    allocator and JAX configured as the CLI does; ends with its parent
    (``runtime.end_with_parent``)."""
    from gatelab import runtime

    runtime.end_with_parent(parent)
    os.sched_setaffinity(0, {cores.get()})
    runtime.use_host_cores(1)  # one device: not the parent's count, if it set one
    runtime.tune_allocator()
    runtime.configure_jax()


def execute(
    jobs: Sequence[Job], workers: int, on_start: Callable[[list[int]], None]
) -> Iterator[tuple[int, list[dict] | None, Failure | Held | None]]:
    """Yields ``(index, summaries, failure)`` per job: in order in this process, as each
    finishes with several workers (which take the jobs in ``schedule`` order).

    ``on_start(indices)`` is called when jobs start: each in turn with one worker, all at once
    with a pool.
    """
    if workers == 1:
        for index, job in enumerate(jobs):
            on_start([index])
            yield (index, *_train(job))
        return
    context = multiprocessing.get_context("spawn")  # JAX is not fork-safe
    cores = context.Queue()
    available = sorted(os.sched_getaffinity(0))
    for k in range(workers):
        cores.put(available[k % len(available)])
    on_start(list(range(len(jobs))))
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=context, initializer=_pin_worker, initargs=(cores, os.getpid())
    ) as pool:
        order = schedule([job.configs for job in jobs])
        futures = {pool.submit(_train, jobs[k]): k for k in order}
        for future in concurrent.futures.as_completed(futures):
            yield (futures[future], *future.result())
