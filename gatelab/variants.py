"""Named variants: the cells of the literature as specs (docs/reference.md, sections 2-7).

Greff et al.'s eight variants change exactly one thing of ``vanilla`` (their LSTM with
peepholes) and are compared with it; ``lstm`` is the common modern cell (no peepholes, forget
bias 1, Jozefowicz et al. 2015).
"""

from __future__ import annotations

import dataclasses

from gatelab.families import (
    GRUSpec,
    IndRNNSpec,
    LSTMSpec,
    MinSpec,
    RGLRUSpec,
    SLSTMSpec,
    Spec,
)

__all__ = [
    "Variant",
    "VARIANTS",
    "GREFF",
    "GATE_STUDY",
    "MODERN_STUDY",
    "RGLRU_ABLATIONS",
    "SLSTM_ABLATIONS",
    "variant",
    "lookup",
]


@dataclasses.dataclass(frozen=True)
class Variant:
    """A named spec with what distinguishes it and where it comes from."""

    name: str
    spec: Spec
    description: str
    citation: str


_VANILLA = LSTMSpec(peepholes=True)
_GREFF_2017 = "Greff et al. 2017 (arXiv:1503.04069)"

_ALL = [
    Variant(
        "lstm",
        LSTMSpec(),
        "no peepholes, forget bias 1 (the common modern LSTM)",
        "Hochreiter & Schmidhuber 1997; Jozefowicz et al. 2015",
    ),
    Variant(
        "vanilla", _VANILLA, "peepholes (i, f see c_{t-1}; o sees c_t), forget bias 1", _GREFF_2017
    ),
    Variant("NIG", _VANILLA.replace(input="open"), "no input gate: i = 1", _GREFF_2017),
    Variant("NFG", _VANILLA.replace(forget="open"), "no forget gate: f = 1", _GREFF_2017),
    Variant("NOG", _VANILLA.replace(output="open"), "no output gate: o = 1", _GREFF_2017),
    Variant(
        "NIAF",
        _VANILLA.replace(candidate_activation="identity"),
        "no input activation: z = W x + U h + b",
        _GREFF_2017,
    ),
    Variant(
        "NOAF",
        _VANILLA.replace(cell_activation="identity"),
        "no output activation: h = o * c",
        _GREFF_2017,
    ),
    Variant("NP", _VANILLA.replace(peepholes=False), "no peepholes", _GREFF_2017),
    Variant(
        "CIFG",
        _VANILLA.replace(forget="1-input"),
        "coupled input and forget gate: f = 1 - i",
        _GREFF_2017,
    ),
    Variant(
        "FGR",
        _VANILLA.replace(gate_recurrence=True),
        "full gate recurrence: gates see all previous gate activations",
        _GREFF_2017,
    ),
    Variant(
        "gru",
        GRUSpec(),
        "reset after the matmul (PyTorch, cuDNN, Flax form)",
        "Cho et al. 2014 (arXiv:1406.1078)",
    ),
    Variant(
        "gru_reset_before",
        GRUSpec(reset_after=False),
        "reset before the matmul: U (r * h) (Keras v3 form, TF GRUBlockCell)",
        "Cho et al. 2014 (arXiv:1406.1078)",
    ),
    Variant(
        "mgu",
        GRUSpec(reset="update", reset_after=False),
        "one gate: reset shares the update gate",
        "Zhou et al. 2016 (arXiv:1603.09420)",
    ),
    Variant(
        "janet",
        LSTMSpec(
            input="1-forget",
            output="open",
            cell_activation="identity",
            tie_shift=1.0,
            chrono_tmax=100.0,
        ),
        "forget gate only: i = 1 - sigma(s_f - 1), h = c, chrono T_max = 100",
        "van der Westhuizen & Lasenby 2018 (arXiv:1804.04849)",
    ),
    Variant(
        "ugrnn",
        GRUSpec(reset="open", update_bias=-1.0),
        "no reset gate, update bias -1 (forget bias 1)",
        "Collins et al. 2017 (arXiv:1611.09913)",
    ),
    Variant(
        "mingru",
        MinSpec(family="gru"),
        "gates and candidate see only x; log-space scan",
        "Feng et al. 2024 (arXiv:2410.01201)",
    ),
    Variant(
        "minlstm",
        MinSpec(family="lstm"),
        "f, i see only x, normalised f/(f+i); log-space scan",
        "Feng et al. 2024 (arXiv:2410.01201)",
    ),
]

_JOZEFOWICZ = "Jozefowicz et al. 2015 (ICML, PMLR 37)"
_BECK = "Beck et al. 2024 (arXiv:2405.04517)"
_DE = "De et al. 2024 (arXiv:2402.19427)"
_SLSTM = SLSTMSpec()
_RGLRU = RGLRUSpec()
_MUT = GRUSpec(reset_after=False)

_ALL += [
    Variant(
        "mut1",
        _MUT.replace(update_recurrence="none", candidate_input="tanh"),
        "update gate of x only, tanh(x) into the candidate (needs D = H)",
        _JOZEFOWICZ,
    ),
    Variant(
        "mut2",
        _MUT.replace(reset_input="identity"),
        "x itself into the reset gate (D = H)",
        _JOZEFOWICZ,
    ),
    Variant(
        "mut3", _MUT.replace(update_recurrence="tanh"), "tanh(h) into the update gate", _JOZEFOWICZ
    ),
    Variant(
        "slstm",
        _SLSTM,
        "exponential input gate, normaliser n, stabiliser m, recurrent memory mixing",
        _BECK,
    ),
    Variant("slstm_sigmoid_input", _SLSTM.replace(input="sigmoid"), "sigmoid input gate", _BECK),
    Variant("slstm_no_input_gate", _SLSTM.replace(input="open"), "no input gate: i = 1", _BECK),
    Variant(
        "slstm_exp_forget",
        _SLSTM.replace(forget="exponential"),
        "exponential forget gate (the paper's alternative)",
        _BECK,
    ),
    Variant("slstm_no_forget_gate", _SLSTM.replace(forget="open"), "no forget gate: f = 1", _BECK),
    Variant("slstm_no_output_gate", _SLSTM.replace(output="open"), "no output gate: o = 1", _BECK),
    Variant(
        "slstm_no_normaliser",
        _SLSTM.replace(normaliser=False, input="sigmoid"),
        "no normaliser: h = o tanh(c), with the sigmoid input gate it needs",
        _BECK,
    ),
    Variant(
        "slstm_no_mixing",
        _SLSTM.replace(mixing=False),
        "no memory mixing: no recurrent kernels, gates of x only",
        _BECK,
    ),
    Variant(
        "rglru",
        _RGLRU,
        "real-gated linear recurrence: gates of x only, a = sigma(-Lambda)^(8 r)",
        _DE,
    ),
    Variant(
        "rglru_no_recurrence_gate",
        _RGLRU.replace(recurrence="open"),
        "no recurrence gate: a time-invariant decay (LRU-like)",
        _DE,
    ),
    Variant("rglru_no_input_gate", _RGLRU.replace(input="open"), "no input gate: i = 1", _DE),
    Variant(
        "rglru_no_normalisation",
        _RGLRU.replace(normalise=False),
        "no sqrt(1 - a^2) input normalisation",
        _DE,
    ),
    Variant("rglru_c1", _RGLRU.replace(c=1.0), "c = 1 instead of 8 in log a", _DE),
    Variant(
        "indrnn",
        IndRNNSpec(),
        "h = relu(W x + u * h + b), u a vector",
        "Li et al. 2018 (arXiv:1803.04831)",
    ),
    Variant(
        "indrnn_no_recurrence",
        IndRNNSpec(recurrence="open"),
        "u = 0: no recurrence",
        "Li et al. 2018 (arXiv:1803.04831)",
    ),
]

VARIANTS: dict[str, Variant] = {v.name: v for v in _ALL}

# The variant lists of studies, in the order their reports show them.
GREFF = ("vanilla", "NIG", "NFG", "NOG", "NIAF", "NOAF", "NP", "CIFG", "FGR")  # Greff et al.'s nine
GATE_STUDY = GREFF + ("lstm", "gru", "mgu")  # configs/mnist1d.py's study, `make demo`
SLSTM_ABLATIONS = tuple(name for name in VARIANTS if name.startswith("slstm"))
RGLRU_ABLATIONS = tuple(name for name in VARIANTS if name.startswith("rglru"))
MODERN_STUDY = ("lstm", "gru", *SLSTM_ABLATIONS, *RGLRU_ABLATIONS)  # experiments/modern_gates.py
_BY_LOWER = {name.lower(): v for name, v in VARIANTS.items()}


def lookup(name: str) -> Variant:
    """The named variant, looked up without regard to case.

    Raises:
        ValueError: for an unknown name, listing the names.
    """
    try:
        return _BY_LOWER[str(name).lower()]
    except KeyError:
        raise ValueError(f"unknown variant {name!r}; variants: {', '.join(VARIANTS)}") from None


def variant(name: str) -> Spec:
    """The spec of the named variant, e.g. ``variant("CIFG")`` (case does not matter)."""
    return lookup(name).spec
