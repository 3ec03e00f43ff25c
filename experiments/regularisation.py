"""Do the gates still matter under regularisation? Variational dropout, zoneout, weight drop and
layer normalisation beside the gates, on Bach chorales (next-frame NLL, where a small model
overfits and regularisers were meant to help).

    gatelab sweep experiments/regularisation.py:small --workdir runs/regularisation-small
    gatelab report runs/regularisation-small --baseline lstm
    gatelab sweep experiments/regularisation.py --workdir runs/regularisation

The cells (every one ``configs/chorales.py``'s model and optimiser; the spec fields of
docs/reference.md 6.4):

- ``lstm``; ``lstm`` with variational dropout (0.25 on the inputs and on ``h``, untied per part,
  Gal & Ghahramani 2016), with zoneout (0.5 on ``c``, 0.05 on ``h``: Krueger et al.'s char-PTB
  setting), with weight drop (0.5 on the recurrent kernels, AWD-LSTM's) and with layer norm
  (input, recurrent and cell terms, Ba et al.'s form);
- ``NFG`` and ``NOG`` (Greff et al.'s, so with peepholes), each bare, with the zoneout above and
  with the layer norm above: is the forget gate still needed when zoneout keeps the cell? does
  layer norm of ``c`` stand in for the output gate?

That is 11 cells, 11 compiled programs. Time here (2-core CPU, 2 workers): ``small`` (64 units,
1,500 steps, 3 seeds: 33 runs) measured 13.5 minutes (the regularised groups train at 9-16
steps/s against the plain LSTM's 16); the full study (``configs/chorales.py``: 100 units, 3,000
steps, 3 seeds: 33 runs) is estimated from it at 40-50 minutes, not yet measured.

What ``small`` found (test NLL, nats per frame, lstm 9.38 +- 0.06): layer norm helps every cell
it was added to (lstm 8.96, NFG 8.91, NOG 8.89; Holm p = 0.03 against lstm), so with layer norm
neither the forget nor the output gate was needed here; zoneout and variational dropout did not
help at this budget, and every cell was still improving at 1,500 steps.
"""

from pathlib import Path

from gatelab import config as config_lib
from gatelab.config import Config
from gatelab.study import Sweep, zipped

CHORALES = str(Path(__file__).resolve().parents[1] / "configs" / "chorales.py")

DROPOUT = {"model.spec.dropout_input": 0.25, "model.spec.dropout_recurrent": 0.25}
ZONEOUT = {"model.spec.zoneout_cell": 0.5, "model.spec.zoneout_hidden": 0.05}
WEIGHT_DROP = {"model.spec.weight_drop": 0.5}
LAYER_NORM = {"model.spec.layer_norm": ("input", "recurrent", "cell")}


def get_config(arg: str | None = None) -> Config:
    match arg:
        case None:
            return config_lib.load(CHORALES)
        case "small":
            return config_lib.load(CHORALES, ["model.hidden=64", "run.steps=1500"])
        case "quick":  # for tests: seconds
            return config_lib.load(CHORALES + ":quick")
    raise ValueError(f"unknown config argument {arg!r}; choices: small, quick")


def _cells(arg: str | None) -> list[tuple[str, dict]]:
    if arg == "quick":
        return [("lstm", {}), ("lstm", ZONEOUT), ("NFG", LAYER_NORM)]
    cells = [("lstm", {}), ("lstm", DROPOUT), ("lstm", ZONEOUT), ("lstm", WEIGHT_DROP)]
    cells += [("lstm", LAYER_NORM)]
    for variant in ("NFG", "NOG"):
        cells += [(variant, {}), (variant, ZONEOUT), (variant, LAYER_NORM)]
    return cells


def sweep(arg: str | None = None) -> Sweep:
    seeds = (0,) if arg == "quick" else (0, 1, 2)
    cells = [
        zipped(
            {
                "model.variant": [variant],
                **{k: [v] for k, v in fields.items()},
                "run.seeds": [seeds],
            }
        )
        for variant, fields in _cells(arg)
    ]
    return sum(cells[1:], cells[0])
