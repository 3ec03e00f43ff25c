"""MNIST-1D (Greydanus 2020): 40-step sequences of one feature, 10 classes.

    gatelab train configs/mnist1d.py --workdir runs/mnist1d
    gatelab train configs/mnist1d.py:paper --workdir runs/mnist1d-paper   # the paper's GRU
    gatelab train configs/mnist1d.py:quick --workdir /tmp/quick           # seconds, for tests

Default: an LSTM with 64 units reading the sequence, last-step readout, Adam 3e-3, 3000 steps of
batch 100. Published test accuracies (docs/reference.md, section 8): GRU 91%, CNN 94%, MLP 68%,
logistic regression 32%.
"""

from gatelab.config import Config, ModelConfig, OptimConfig, RunConfig, TaskConfig
from gatelab.study import Sweep, grid
from gatelab.variants import GATE_STUDY

STUDY = list(GATE_STUDY)  # Greff et al.'s nine, then lstm, gru and mgu


def get_config(arg: str | None = None) -> Config:
    config = Config(
        model=ModelConfig(variant="lstm", hidden=64, readout="last"),
        task=TaskConfig(name="mnist1d"),
        optim=OptimConfig(name="adam", lr=3e-3, schedule="cosine", clip=1.0),
        run=RunConfig(
            steps=3000,
            batch_size=100,
            log_every=100,
            eval_every=250 * 2,
            checkpoint_every=500,
            eval_batch_size=1000,
            seeds=(0,),
        ),
    )
    match arg:
        case None:
            return config
        case "paper":
            # The published GRU baseline's architecture (docs/reference.md 8): bidirectional
            # GRU, 6 units per direction, all 40 x 12 outputs flattened into Linear(480, 10);
            # Adam 1e-2, batch 100, 6000 steps, evaluated every 250 steps.
            return config.replace(
                model={"variant": "gru", "hidden": 6, "bidirectional": True, "readout": "flatten"},
                optim={"lr": 1e-2, "schedule": "constant", "clip": 0.0},
                run={"steps": 6000, "log_every": 250, "eval_every": 250, "checkpoint_every": 1000},
            )
        case "demo":
            # What `make demo` trains, 60 runs in about 8 minutes on 2 cores: smaller batches
            # than the default, as many steps as fit (experiments/bench --study trains the same
            # at 4,000 steps, the full protocol the README compares the verdicts with).
            return config.replace(
                run={
                    "steps": 2400,
                    "batch_size": 64,
                    "log_every": 100,
                    "eval_every": 300,
                    "checkpoint_every": 800,
                }
            )
        case "quick":
            return config.replace(
                model={"hidden": 32},
                run={"steps": 400, "log_every": 50, "eval_every": 200, "checkpoint_every": 200},
            )
    raise ValueError(f"unknown config argument {arg!r}; choices: paper, demo, quick")


def sweep(arg: str | None = None) -> Sweep:
    """The gate-ablation study: Greff et al.'s variants against vanilla, with lstm, gru, mgu.

    Default: 12 variants x 3 learning rates x 5 seeds, for the two-stage protocol
    (``--stage tune`` then ``--stage test``). ``demo``: the 12 variants x 5 seeds at the
    config's learning rate (what ``make demo`` runs). ``quick``: 2 variants x 2 seeds.
    """
    match arg:
        case None | "paper":
            return grid(
                {
                    "model.variant": STUDY,
                    "optim.lr": [1e-3, 3e-3, 1e-2],
                    "run.seeds": [(0, 1, 2, 3, 4)],
                }
            )
        case "demo":
            return grid({"model.variant": STUDY, "run.seeds": [(0, 1, 2, 3, 4)]})
        case "quick":
            return grid({"model.variant": ["vanilla", "NFG"], "run.seeds": [(0, 1)]})
    raise ValueError(f"unknown sweep argument {arg!r}; choices: paper, demo, quick")
