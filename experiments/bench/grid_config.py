"""The grid of the benchmark's grid section: lstm and Greff et al.'s eight variants x 5 seeds.

    gatelab sweep experiments/bench/grid_config.py --workdir /tmp/grid --workers 2
    gatelab train experiments/bench/grid_config.py --set model.variant=NFG --set run.seeds=3

MNIST-1D at a benchmark's size, not a study's: 64 units, 200 steps of batch 100, one compiled
chunk of 100 steps at a time, one evaluation and one checkpoint at the end, W&B off. The runs are
too short to tell the variants apart (test accuracy around 0.3-0.5); they exist to be timed.
``quick`` is the smoke form of ``python -m experiments.bench --quick``: one run (NFG, seed 0),
8 units, 20 steps. Runtime: see ``experiments/bench/__main__.py``.
"""

from pathlib import Path

from gatelab import config as config_lib
from gatelab.config import Config
from gatelab.sweep import Sweep, grid

# The study's own task and model (configs/mnist1d.py), at a benchmark's length.
_MNIST1D = config_lib.load_module(Path(__file__).parents[2] / "configs" / "mnist1d.py")
VARIANTS = ["lstm", *_MNIST1D.GREFF[1:]]  # lstm and Greff's eight variants
SEEDS = (0, 1, 2, 3, 4)
# The runs the serial contenders measure in the benchmark's default form (the first two seeds of
# each), the rest estimated from them. Typical variants, not FGR, the costliest: the estimate
# errs towards a faster loop, against the sweep's target.
SAMPLE_VARIANTS = ["lstm", "NFG", "CIFG"]
QUICK_VARIANTS = ["NFG"]
QUICK_SEEDS = (0,)


def get_config(arg: str | None = None) -> Config:
    config = _MNIST1D.get_config().replace(
        # 200 steps, one compiled chunk of 100 at a time, one evaluation and checkpoint at the end
        run={"steps": 200, "log_every": 100, "eval_every": 200, "checkpoint_every": 200},
        wandb={"mode": "disabled"},  # the benchmark times training, not W&B's files
    )
    match arg:
        case None:
            return config
        case "quick":
            return config.replace(
                model={"hidden": 8},
                run={"steps": 20, "log_every": 10, "eval_every": 20, "checkpoint_every": 20},
            )
    raise ValueError(f"unknown config argument {arg!r}; choices: quick")


def sweep(arg: str | None = None) -> Sweep:
    """The variants x seeds of the grid (``quick``: one run)."""
    match arg:
        case None:
            return grid({"model.variant": VARIANTS, "run.seeds": [SEEDS]})
        case "quick":
            return grid({"model.variant": QUICK_VARIANTS, "run.seeds": [QUICK_SEEDS]})
    raise ValueError(f"unknown sweep argument {arg!r}; choices: quick")
