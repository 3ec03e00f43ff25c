"""Which gates let a cell work at lengths it was not trained at? The adding problem trained at
T = 50 and tested, without further training, at T = 50, 100, 200 and 400.

    gatelab sweep experiments/length_generalisation.py:small --workdir runs/lengths-small
    gatelab report runs/lengths-small --baseline lstm     # the table and figure of MSE by T
    gatelab sweep experiments/length_generalisation.py --workdir runs/lengths

The variants: ``lstm`` (forget bias 1), ``NFG`` (no forget gate: the cell only accumulates),
``NIG`` (no input gate), ``gru``, ``janet`` (forget gate only, chrono-initialised) and ``lstm``
with chrono initialisation (Tallec & Ollivier 2018: forget biases drawn for memories up to
``T_max = 100`` steps). Every run is ``configs/adding.py``'s (one layer of 64 units, last-step
readout, Adam 1e-3 with clipping at 1, batch 50) at T = 50, with ``task.args.eval_lengths``
(the runner records ``test/mse@<T>``). Chance (always predicting the mean sum) is 1/6 at every T.

Time here (2-core CPU, 2 workers): ``small`` (3 seeds x 2,000 steps, 18 runs) about 4 minutes;
the full study (5 seeds x 4,000 steps, 30 runs) about 12 minutes.
"""

from pathlib import Path

from gatelab import config as config_lib
from gatelab.config import Config
from gatelab.study import Sweep, grid, zipped

ADDING = str(Path(__file__).resolve().parents[1] / "configs" / "adding.py")
TRAINED = 50
TESTED = (100, 200, 400)


def get_config(arg: str | None = None) -> Config:
    overrides = [
        f"task.args.length={TRAINED}",
        "task.args.eval_lengths=" + ",".join(map(str, TESTED)),
    ]
    match arg:
        case None:
            return config_lib.load(ADDING, overrides)
        case "small":
            return config_lib.load(ADDING, [*overrides, "run.steps=2000"])
        case "quick":  # for tests: seconds
            quick = ["run.steps=100", "run.log_every=50", "run.eval_every=50"]
            return config_lib.load(ADDING + ":quick", [*overrides, *quick])
    raise ValueError(f"unknown config argument {arg!r}; choices: small, quick")


def sweep(arg: str | None = None) -> Sweep:
    seeds = {None: (0, 1, 2, 3, 4), "small": (0, 1, 2), "quick": (0,)}[arg]
    if arg == "quick":
        return grid({"model.variant": ["lstm", "NFG"], "run.seeds": [seeds]})
    plain = grid({"model.variant": ["lstm", "NFG", "NIG", "gru", "janet"], "run.seeds": [seeds]})
    chrono = zipped(
        {"model.variant": ["lstm"], "model.spec.chrono_tmax": [100.0], "run.seeds": [seeds]}
    )
    return plain + chrono
