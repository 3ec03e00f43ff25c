"""gatelab: which gates of an LSTM or GRU matter, and why.

Composable gated-RNN cells in Flax, compiled experiment runners, sweeps and paper reports.

    import gatelab as gl
    spec = gl.LSTMSpec(forget="1-input", output="open")   # CIFG without an output gate
    cell = gl.GatedCell(features=128, spec=spec)          # a flax.linen cell (nn.RNN takes it)
    layer = gl.GatedRNN(features=128, spec=gl.variant("NFG"))
"""

from gatelab.cells import GatedCell
from gatelab.rnn import GatedRNN
from gatelab.specs import GRUSpec, LSTMSpec, MinSpec, Spec, param_breakdown, param_count
from gatelab.variants import VARIANTS, Variant, variant

__version__ = "0.1.0"


def sample(directory, prompt: str, length: int = 400, temperature: float = 0.8, seed: int = 0):
    """Text from a trained ``shakespeare`` run (see ``gatelab.generate.sample``)."""
    from gatelab.generate import sample as generate  # the runner's imports only when needed

    return generate(directory, prompt, length, temperature, seed)


__all__ = [
    "GRUSpec",
    "GatedCell",
    "GatedRNN",
    "LSTMSpec",
    "MinSpec",
    "Spec",
    "VARIANTS",
    "Variant",
    "param_breakdown",
    "param_count",
    "sample",
    "variant",
]
