"""The benchmark's grid: lstm and Greff et al.'s eight variants x 5 seeds on MNIST-1D.

    gatelab sweep experiments/bench/grid_config.py --workdir /tmp/grid --workers 2
    gatelab train experiments/bench/grid_config.py --set model.variant=NFG --set run.seeds=3

The study's config (``configs/mnist1d.py``: 64 units, batch 100) at a benchmark's length: 200
steps, one compiled chunk of 100 at a time, one evaluation and one checkpoint at the end, W&B
off. The runs are too short to tell the variants apart; they exist to be timed. ``quick``: one
run (NFG, seed 0) of 8 units and 20 steps, for ``python -m experiments.bench --quick``.

``study``: the whole study at its full protocol, for ``python -m experiments.bench --study``
(``study.py``): ``make demo``'s config (64 units, batch 64, Adam 3e-3 with a cosine schedule,
clipping at 1) at 4,000 steps, validation every 500 and a checkpoint every 1,000, W&B off;
Greff's vanilla and eight variants, lstm and gru x 5 seeds (55 runs). ``study-small``: 1,000
steps, lstm, NFG, CIFG and gru x 2 seeds (8 runs).

    gatelab sweep experiments/bench/grid_config.py:study --workdir /tmp/study --workers 2
"""

from pathlib import Path

from gatelab import config as config_lib
from gatelab.study import Sweep, grid
from gatelab.variants import GREFF

MNIST1D = str(Path(__file__).resolve().parents[2] / "configs" / "mnist1d.py")
VARIANTS = ["lstm", *GREFF[1:]]  # lstm and Greff's eight variants (GREFF[0] is vanilla)
SEEDS = (0, 1, 2, 3, 4)
# What the serial contenders run in the full form (each variant's first two seeds; the rest is
# estimated from them): typical variants, not FGR, the costliest, so the estimate errs towards a
# faster loop, against the sweep.
SAMPLE_VARIANTS = ["lstm", "NFG", "CIFG"]
QUICK_VARIANTS, QUICK_SEEDS = ["NFG"], (0,)
# The study (``--study``): every run at the full protocol; FGR, the costliest, first.
STUDY = {
    "study": {"variants": ["FGR", *GREFF[:-1], "lstm", "gru"], "seeds": SEEDS, "steps": 4000},
    "study-small": {"variants": ["lstm", "NFG", "CIFG", "gru"], "seeds": (0, 1), "steps": 1000},
}


def _run(steps: int, log_every: int) -> list[str]:
    keys = {"steps": steps, "log_every": log_every, "eval_every": steps, "checkpoint_every": steps}
    return [f"run.{key}={value}" for key, value in keys.items()]


def get_config(arg: str | None = None):
    match arg:
        case None:
            overrides = _run(200, 100)
        case "quick":
            overrides = [*_run(20, 10), "model.hidden=8"]
        case "study" | "study-small":
            run = {"steps": STUDY[arg]["steps"], "log_every": 100, "eval_every": 500}
            run["checkpoint_every"] = min(1000, STUDY[arg]["steps"])
            overrides = [f"run.{key}={value}" for key, value in run.items()]
            return config_lib.load(f"{MNIST1D}:demo", [*overrides, "wandb.mode=disabled"])
        case _:
            raise ValueError(f"unknown config argument {arg!r}; choices: quick, study, study-small")
    return config_lib.load(MNIST1D, [*overrides, "wandb.mode=disabled"])


def sweep(arg: str | None = None) -> Sweep:
    """The variants x seeds of the grid (``quick``: one run)."""
    match arg:
        case None:
            return grid({"model.variant": VARIANTS, "run.seeds": [SEEDS]})
        case "quick":
            return grid({"model.variant": QUICK_VARIANTS, "run.seeds": [QUICK_SEEDS]})
        case "study" | "study-small":
            form = STUDY[arg]
            return grid({"model.variant": form["variants"], "run.seeds": [form["seeds"]]})
    raise ValueError(f"unknown sweep argument {arg!r}; choices: quick, study, study-small")
