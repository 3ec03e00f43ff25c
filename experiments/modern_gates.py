"""Which parts of today's gated cells matter? sLSTM and RG-LRU, one ablation at a time, beside
the LSTM and the GRU, on the adding problem at T = 100 (docs/reference.md, sections 6-7).

    gatelab sweep experiments/modern_gates.py:small --workdir runs/modern-small   # 3 seeds
    gatelab report runs/modern-small --baseline lstm
    gatelab sweep experiments/modern_gates.py --workdir runs/modern                # 5 seeds

The variants (``gatelab.variants.MODERN_STUDY``): ``lstm``, ``gru``; ``slstm`` (xLSTM's sLSTM:
exponential input gate, normaliser, one head) and each of its single ablations (a sigmoid input
gate, no input gate, an exponential forget gate, no forget gate, no output gate, no normaliser,
no memory mixing); ``rglru`` (Griffin's RG-LRU cell) and each of its (no recurrence gate, no input
gate, no normalisation, c = 1). Every run is ``configs/adding.py``'s: one layer of 64 units,
last-step readout, Adam 1e-3 with clipping at 1, batch 50. The task needs a memory of two values
across up to 100 steps; chance (always predicting the mean sum) is an MSE of 1/6.

Time here (2-core CPU, 2 workers): ``small`` (3 seeds x 2,000 steps, 45 runs) about 9 minutes;
the full study (5 seeds x 4,000 steps, 75 runs) about 30 minutes. ``quick``: two variants, one
seed, 100 steps of ``configs/adding.py:quick``, for tests.
"""

from pathlib import Path

from gatelab import config as config_lib
from gatelab.config import Config
from gatelab.study import Sweep, grid
from gatelab.variants import MODERN_STUDY

ADDING = str(Path(__file__).resolve().parents[1] / "configs" / "adding.py")


def get_config(arg: str | None = None) -> Config:
    """``configs/adding.py``'s (T = 100, 64 units, Adam 1e-3, batch 50, 4,000 steps)."""
    match arg:
        case None:
            return config_lib.load(ADDING)
        case "small":
            return config_lib.load(ADDING, ["run.steps=2000"])
        case "quick":
            quick = ["run.steps=100", "run.log_every=50", "run.eval_every=50"]
            return config_lib.load(ADDING + ":quick", [*quick, "run.checkpoint_every=50"])
    raise ValueError(f"unknown config argument {arg!r}; choices: small, quick")


def sweep(arg: str | None = None) -> Sweep:
    """The variants x seeds: 5 seeds, ``small`` 3, ``quick`` one seed of slstm and rglru."""
    match arg:
        case None:
            return grid({"model.variant": list(MODERN_STUDY), "run.seeds": [(0, 1, 2, 3, 4)]})
        case "small":
            return grid({"model.variant": list(MODERN_STUDY), "run.seeds": [(0, 1, 2)]})
        case "quick":
            return grid({"model.variant": ["slstm", "rglru"], "run.seeds": [(0,)]})
    raise ValueError(f"unknown sweep argument {arg!r}; choices: small, quick")
