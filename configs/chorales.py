"""Bach chorales (music21's corpus) as in Greff et al.'s JSB Chorales task (docs/reference.md 8).

    gatelab train configs/chorales.py --workdir runs/chorales
    gatelab train configs/chorales.py:quick --workdir /tmp/chorales  # seconds, for tests

Next-frame prediction of 88-key piano rolls, one frame per quarter note; the metric is the
negative log-likelihood per frame (nats). This is a JSB-like set built from music21's corpus,
not the JSB files: its numbers are not directly comparable with Greff et al.'s (best 10% of
vanilla about 8.4-8.6 on JSB). Default: an LSTM with 100 units, Adam 1e-3, batch 16, 3000 steps.
"""

from gatelab.config import Config, ModelConfig, OptimConfig, RunConfig, TaskConfig


def get_config(arg: str | None = None) -> Config:
    config = Config(
        model=ModelConfig(variant="vanilla", hidden=100),
        task=TaskConfig(name="chorales"),
        optim=OptimConfig(name="adam", lr=1e-3, clip=1.0),
        run=RunConfig(
            steps=3000,
            batch_size=16,
            log_every=100,
            eval_every=500,
            checkpoint_every=500,
            eval_batch_size=100,
        ),
    )
    match arg:
        case None:
            return config
        case "quick":
            return config.replace(
                model={"hidden": 32},
                task={"args": {"limit": 40}},
                run={"steps": 100, "log_every": 50, "eval_every": 50, "checkpoint_every": 50},
            )
    raise ValueError(f"unknown config argument {arg!r}; choices: quick")
