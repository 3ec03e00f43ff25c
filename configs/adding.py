"""The adding problem (docs/reference.md, section 8): remember two marked values, output their sum.

    gatelab train configs/adding.py --workdir runs/adding
    gatelab train configs/adding.py:quick --workdir /tmp/adding      # seconds, for tests

Default: T = 100, an LSTM with 64 units, Adam 1e-3, batch 50 (Le et al.; Bai et al.), 4000 steps.
Chance: always predicting 1 scores MSE 1/6 (the literature quotes 0.1767); a model that solved
the task scores well below 0.01.
"""

from gatelab.config import Config, ModelConfig, OptimConfig, RunConfig, TaskConfig


def get_config(arg: str | None = None) -> Config:
    config = Config(
        model=ModelConfig(variant="lstm", hidden=64),
        task=TaskConfig(name="adding", args={"length": 100}),
        optim=OptimConfig(name="adam", lr=1e-3, clip=1.0),
        run=RunConfig(
            steps=4000, batch_size=50, log_every=100, eval_every=500, checkpoint_every=500
        ),
    )
    match arg:
        case None:
            return config
        case "quick":
            return config.replace(
                model={"hidden": 32},
                task={"args": {"length": 20, "eval_size": 500}},
                optim={"lr": 1e-2},
                run={"steps": 600, "log_every": 50, "eval_every": 200, "checkpoint_every": 200},
            )
    raise ValueError(f"unknown config argument {arg!r}; choices: quick")
