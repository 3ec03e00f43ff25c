"""Greff et al.'s variants on three tasks at once: MNIST-1D (classification), the chorales
(polyphonic music, NLL per frame) and the adding problem (regression, MSE), so that the report
can say which gates matter across tasks, not on one (docs/reference.md, sections 3 and 8).

    gatelab sweep experiments/greff_tasks.py:small --workdir runs/greff-tasks-small
    gatelab report runs/greff-tasks-small   # per task, then normalised across tasks
    gatelab sweep experiments/greff_tasks.py --workdir runs/greff-tasks

Every run is ``configs/mnist1d.py``'s model and optimiser (one layer of 64 units, last-step
readout where the task has one, Adam 3e-3 with a cosine schedule, clipping at 1, batch 64); only
the task changes: ``mnist1d``, ``chorales`` (the first 120 chorales) and ``adding`` at T = 50.
The report normalises each task's scores between its chance level and vanilla's mean, so that an
accuracy, an NLL and an MSE combine, and bootstraps within each task.

Time here (2-core CPU, 2 workers): ``small`` (vanilla and the 8 variants x 3 tasks x 2 seeds,
800 steps, 54 runs in 27 compiled programs) 13.5 minutes (measured); the full study (5 seeds, 3,000
steps, 135 runs) about an hour.
"""

from pathlib import Path

from gatelab import config as config_lib
from gatelab.config import Config
from gatelab.study import Sweep, grid
from gatelab.variants import GREFF

MNIST1D = str(Path(__file__).resolve().parents[1] / "configs" / "mnist1d.py")
TASKS = {
    "mnist1d": {},
    "chorales": {"task.args.limit": [120]},
    "adding": {"task.args.length": [50]},
}


def get_config(arg: str | None = None) -> Config:
    match arg:
        case None:
            return config_lib.load(MNIST1D)
        case "small":
            small = ["run.steps=800", "run.eval_every=200", "run.checkpoint_every=400"]
            return config_lib.load(MNIST1D, [*small, "run.log_every=100"])
    raise ValueError(f"unknown config argument {arg!r}; choices: small")


def sweep(arg: str | None = None) -> Sweep:
    seeds = (0, 1) if arg == "small" else (0, 1, 2, 3, 4)
    parts = [
        grid({"task.name": [task], **args, "model.variant": list(GREFF), "run.seeds": [seeds]})
        for task, args in TASKS.items()
    ]
    return sum(parts[1:], parts[0])
