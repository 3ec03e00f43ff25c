"""Reading a trained run back from its record and its group's checkpoint (``gatelab inspect``,
``gatelab sample``, your own analysis)::

    from gatelab import restore
    run = restore.restore_run(restore.resolve_run("runs/mnist1d/lstm"))
    outputs = run.model.apply({"params": run.best_params}, inputs)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from gatelab import config as config_lib
from gatelab import models, records, tasks
from gatelab.checkpoint import Checkpoints, first_line
from gatelab.config import Config

__all__ = ["RestoredRun", "resolve_run", "restore_run"]


@dataclasses.dataclass(frozen=True)
class RestoredRun:
    """A trained run read back from its record and its group's checkpoint."""

    config: Config
    task: tasks.Task
    model: models.SequenceModel
    best_params: Any  # the parameters of the best validation step
    params: Any  # the parameters at the checkpoint's step
    step: int
    summary: records.Summary | None


def resolve_run(directory: str | Path) -> Path:
    """A run's directory: ``directory`` itself, or its only run (``seed_0`` of a train workdir).

    Raises:
        ValueError: for a directory that holds several runs (naming them) or none.
    """
    directory = Path(directory)
    if (directory / "config.json").exists():
        return directory
    runs = sorted(p.parent for p in directory.glob("*/config.json"))
    if len(runs) == 1:
        return runs[0]
    if not runs:
        raise ValueError(f"{directory} holds no run (no config.json in it or below it)")
    names = ", ".join(r.name for r in runs[:6]) + (", ..." if len(runs) > 6 else "")
    raise ValueError(
        f"{directory} holds {len(runs)} runs ({names}): pass one run's directory, "
        "or --compare to put every variant side by side"
    )


def restore_run(run_dir: str | Path) -> RestoredRun:
    """Loads a run's config, task, model and parameters from its workdir.

    Raises:
        FileNotFoundError: when the workdir has no record or its group no checkpoint.
        records.CheckpointError: when its checkpoint's files are damaged.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run's workdir (no config.json)")
    stored = records.read_json(config_path)
    config = config_lib.from_dict(stored["config"])
    resolved = stored["resolved"]
    if "checkpoints" not in resolved:
        raise FileNotFoundError(f"{run_dir}'s record does not say where its checkpoint is")
    checkpoints = Checkpoints((run_dir / resolved["checkpoints"]).resolve())
    step = checkpoints.latest_step()
    if step is None:
        raise FileNotFoundError(f"no checkpoint for {run_dir} in {checkpoints.directory}")
    try:
        state, _ = checkpoints.restore(step, None)
    except Exception as error:  # noqa: BLE001  (damaged files: say which checkpoint)
        raise records.CheckpointError(
            f"the checkpoint of {run_dir} (step {step} in {checkpoints.directory}) cannot be read: "
            f"{first_line(error)}"
        ) from None
    finally:
        checkpoints.close()
    index = resolved["index"]
    row = lambda tree: jax.tree_util.tree_map(lambda x: jnp.asarray(x[index]), tree)  # noqa: E731
    task = tasks.get(config.task.name, **config.task.args)
    return RestoredRun(
        config=config,
        task=task,
        model=models.build_model(config, task, resolved["hidden"]),
        best_params=row(state["best_params"]),
        params=row(state["params"]),
        step=step,
        summary=records.read_summary(run_dir),
    )
