"""Greff et al.'s search space ("LSTM: A Search Space Odyssey", docs/reference.md 3) on chorales.

    gatelab sweep experiments/greff_odyssey.py:small --workdir runs/odyssey   # 9 x 20 trials
    gatelab report runs/odyssey      # all trials and the best 10% by validation, Welch vs vanilla
    gatelab sweep experiments/greff_odyssey.py --workdir runs/odyssey-full    # 9 x 200 trials
    gatelab sweep experiments/greff_odyssey.py:tiny --workdir runs/odyssey-tiny  # 3 x 16, minutes

The nine architectures (vanilla and its eight one-change variants) under one seeded random search
per variant, as in the paper: hidden size log-uniform on [20, 200] (drawn from 4 log-spaced sizes
so that trials share compiled programs), learning rate log-uniform on [1e-6, 1e-2], momentum
1 - log-uniform on [0.01, 1], Gaussian input noise uniform on [0, 1], SGD with Nesterov momentum.
Greff et al. stopped early on validation; here every trial trains a fixed 2000 steps (batch 16)
and the report selects each trial's best validation step, which is the same model selection.

The task is a JSB-like set built from music21's Bach chorales, not the JSB files: NLL per frame
is not directly comparable with the paper's (best 10% of vanilla about 8.4-8.6 on JSB).

Time here (2-core CPU, measured on the quick form and scaled): a trial costs about 15 s of one
core, so `small` (180 trials) takes about 25 minutes with 2 workers and the full study (1800
trials, the paper's 200 per variant) about 4 hours.
"""

from gatelab.config import Config, ModelConfig, OptimConfig, RunConfig, TaskConfig
from gatelab.study import Sweep, log_buckets, log_uniform, one_minus_log_uniform, random, uniform
from gatelab.variants import GREFF as VARIANTS


def get_config(arg: str | None = None) -> Config:
    config = Config(
        model=ModelConfig(variant="vanilla", hidden=100, input_noise=0.1),
        task=TaskConfig(name="chorales"),
        optim=OptimConfig(name="sgd", lr=1e-3, momentum=0.9, clip=0.0),
        run=RunConfig(
            steps=2000,
            batch_size=16,
            log_every=100,
            eval_every=500,
            checkpoint_every=1000,
            eval_batch_size=100,
        ),
    )
    if arg == "quick":
        return config.replace(
            task={"args": {"limit": 40}},
            run={"steps": 100, "log_every": 50, "eval_every": 50, "checkpoint_every": 50},
        )
    if arg == "tiny":  # the analysis end to end in minutes: not a result
        return config.replace(
            task={"args": {"limit": 60}},
            run={"steps": 300, "log_every": 50, "eval_every": 100, "checkpoint_every": 300},
        )
    if arg not in (None, "small"):
        raise ValueError(f"unknown config argument {arg!r}; choices: small, tiny, quick")
    return config


def sweep(arg: str | None = None) -> Sweep:
    """One random search of ``trials`` per variant (200 in the paper), seeded per variant.

    ``tiny``: vanilla, NFG and NOG, 16 trials each, two hidden sizes, 300 steps on 60 chorales
    (6 compiled programs): enough runs for the report's fANOVA and marginal plots, in about
    3 minutes on 2 cores.
    """
    trials = {None: 200, "small": 20, "tiny": 16, "quick": 2}[arg]
    variants = ("vanilla", "NFG", "NOG") if arg == "tiny" else VARIANTS
    space = {
        "model.hidden": log_buckets(20, 80, 2) if arg == "tiny" else log_buckets(20, 200, 4),
        "optim.lr": log_uniform(1e-6, 1e-2),
        "optim.momentum": one_minus_log_uniform(0.01, 1.0),
        "model.input_noise": uniform(0.0, 1.0),
    }
    parts = [
        random(trials, seed=index, space=space, fixed={"model.variant": variant})
        for index, variant in enumerate(variants)
    ]
    return sum(parts[1:], parts[0])
