"""gatelab: which gates of an LSTM or GRU matter, and why.

Composable gated-RNN cells in Flax, compiled experiment runners, sweeps and paper reports.

    import gatelab as gl
    spec = gl.LSTMSpec(forget="1-input", output="open")   # CIFG without an output gate
    cell = gl.GatedCell(features=128, spec=spec)          # a flax.linen cell (nn.RNN takes it)
    layer = gl.GatedRNN(features=128, spec=gl.variant("NFG"))

The names below are imported when first used, so that ``import gatelab.runtime`` or
``gatelab.report`` does not load JAX and Flax.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> the module that defines it
_EXPORTS = {
    "GatedCell": "gatelab.cells",
    "GatedRNN": "gatelab.rnn",
    "SequenceModel": "gatelab.models",
    "LSTMSpec": "gatelab.families",
    "GRUSpec": "gatelab.families",
    "MinSpec": "gatelab.families",
    "SLSTMSpec": "gatelab.families",
    "RGLRUSpec": "gatelab.families",
    "IndRNNSpec": "gatelab.families",
    "Spec": "gatelab.families",
    "param_breakdown": "gatelab.families",
    "param_count": "gatelab.families",
    "VARIANTS": "gatelab.variants",
    "Variant": "gatelab.variants",
    "variant": "gatelab.variants",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'gatelab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


def sample(directory, prompt: str, length: int = 400, temperature: float = 0.8, seed: int = 0):
    """Text from a trained ``shakespeare`` run (see ``gatelab.generate.sample``)."""
    from gatelab.generate import sample as generate

    return generate(directory, prompt, length, temperature, seed)


__all__ = [*_EXPORTS, "sample"]
