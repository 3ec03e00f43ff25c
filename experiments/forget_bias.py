"""The forget-gate bias (Jozefowicz et al. 2015, docs/reference.md 4.6) on the adding problem.

    gatelab sweep experiments/forget_bias.py --workdir runs/forget-bias
    gatelab report runs/forget-bias --baseline lstm

Jozefowicz et al. found that initialising the LSTM's forget-gate bias to 1 closes the gap between
LSTM and GRU. This study trains the common LSTM with forget bias 0, 1 (gatelab's default) and 2,
chrono initialisation (Tallec & Ollivier 2018, T_max = the sequence length), and the GRU, on the
adding problem at T = 100 (chance MSE 1/6), 5 seeds each, 3000 steps of batch 50.

Runs are named by what differs (`lstm__forget_bias=0__s0`, ...); `gatelab report` compares each
with `lstm` (forget bias 1). Time here (2-core CPU): about 12 minutes with 2 workers.
"""

from gatelab.config import Config, ModelConfig, OptimConfig, RunConfig, TaskConfig
from gatelab.study import Sweep

SEEDS = (0, 1, 2, 3, 4)


def get_config(arg: str | None = None) -> Config:
    config = Config(
        model=ModelConfig(variant="lstm", hidden=64),
        task=TaskConfig(name="adding", args={"length": 100}),
        optim=OptimConfig(name="adam", lr=1e-3, clip=1.0),
        run=RunConfig(
            steps=3000, batch_size=50, log_every=100, eval_every=500, checkpoint_every=1000
        ),
    )
    if arg == "quick":
        return config.replace(
            task={"args": {"length": 20, "eval_size": 200}},
            run={"steps": 100, "log_every": 50, "eval_every": 50, "checkpoint_every": 50},
        )
    if arg is not None:
        raise ValueError(f"unknown config argument {arg!r}; choices: quick")
    return config


def sweep(arg: str | None = None) -> Sweep:
    seeds = SEEDS if arg is None else (0,)
    length = get_config(arg).task.args["length"]  # chrono's T_max: the sequence length
    runs = [
        {"model.variant": "lstm", "model.spec.forget_bias": 0.0, "run.seeds": seeds},
        {"model.variant": "lstm", "run.seeds": seeds},  # forget bias 1: the baseline
        {"model.variant": "lstm", "model.spec.forget_bias": 2.0, "run.seeds": seeds},
        {"model.variant": "lstm", "model.spec.chrono_tmax": float(length), "run.seeds": seeds},
        {"model.variant": "gru", "run.seeds": seeds},
    ]
    return Sweep(tuple(runs), "list")
