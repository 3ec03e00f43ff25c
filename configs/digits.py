"""scikit-learn's 8x8 digits read row by row: 8 steps of 8 pixels, 10 classes.

    gatelab train configs/digits.py --workdir runs/digits
    gatelab train configs/digits.py:quick --workdir /tmp/digits      # seconds, for tests

Default: an LSTM with 64 units, last-step readout, Adam 3e-3, batch 64, 1500 steps.
Chance: 10%.
"""

from gatelab.config import Config, ModelConfig, OptimConfig, RunConfig, TaskConfig


def get_config(arg: str | None = None) -> Config:
    config = Config(
        model=ModelConfig(variant="lstm", hidden=64),
        task=TaskConfig(name="digits"),
        optim=OptimConfig(name="adam", lr=3e-3, schedule="cosine", clip=1.0),
        run=RunConfig(
            steps=1500, batch_size=64, log_every=100, eval_every=500, checkpoint_every=500
        ),
    )
    match arg:
        case None:
            return config
        case "quick":
            return config.replace(
                model={"hidden": 32},
                run={"steps": 200, "log_every": 50, "eval_every": 100, "checkpoint_every": 100},
            )
    raise ValueError(f"unknown config argument {arg!r}; choices: quick")
