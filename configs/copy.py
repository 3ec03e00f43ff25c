"""The copy task (docs/reference.md, section 8): recall 10 symbols after a delay of T steps.

    gatelab train configs/copy.py --workdir runs/copy
    gatelab train configs/copy.py:quick --workdir /tmp/copy          # seconds, for tests

Default: T = 50, an LSTM with 64 units over a 16-wide embedding, Adam 1e-3, batch 64, 4000 steps.
Chance (blanks, then uniform guesses): 10 log(8) / (T + 20) nats per step, 0.297 at T = 50.
LSTMs are known to sit at that baseline for a long time on this task before they break through.
"""

from gatelab.config import Config, ModelConfig, OptimConfig, RunConfig, TaskConfig


def get_config(arg: str | None = None) -> Config:
    config = Config(
        model=ModelConfig(variant="lstm", hidden=64, embed=16),
        task=TaskConfig(name="copy", args={"delay": 50}),
        optim=OptimConfig(name="adam", lr=1e-3, clip=1.0),
        run=RunConfig(
            steps=4000, batch_size=64, log_every=100, eval_every=500, checkpoint_every=500
        ),
    )
    match arg:
        case None:
            return config
        case "quick":
            return config.replace(
                model={"hidden": 32},
                task={"args": {"delay": 10, "eval_size": 500}},
                optim={"lr": 3e-3},
                run={"steps": 200, "log_every": 50, "eval_every": 100, "checkpoint_every": 100},
            )
    raise ValueError(f"unknown config argument {arg!r}; choices: quick")
