"""The cell families, one module each, and the registry keyed by spec type.

    lstm.py      LSTMSpec: Greff et al.'s LSTM, its variants, JANET
    gru.py       GRUSpec: the GRU in both reset placements, MGU, UGRNN, MUT1-3
    minimal.py   MinSpec: minGRU and minLSTM (a linear recurrence)
    slstm.py     SLSTMSpec: xLSTM's sLSTM (exponential gating, normaliser, heads)
    rglru.py     RGLRUSpec: Griffin's RG-LRU (a linear recurrence)
    indrnn.py    IndRNNSpec: independently recurrent units

Adding a family is one new module that exports a ``Family`` (see ``base.Family`` and
docs/design.md, "Adding a family") plus its entry in ``_MODULES`` below.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import jax.numpy as jnp

from gatelab.families import gru, indrnn, lstm, minimal, regularise, rglru, slstm
from gatelab.families.base import Family, Parts, default_kernel_init, default_recurrent_init
from gatelab.families.gru import GRUSpec
from gatelab.families.indrnn import IndRNNSpec
from gatelab.families.lstm import LSTMSpec
from gatelab.families.minimal import MinSpec
from gatelab.families.rglru import RGLRUSpec
from gatelab.families.slstm import SLSTMSpec
from gatelab.specs import SpecBase

__all__ = [
    "FAMILIES",
    "Family",
    "GRUSpec",
    "IndRNNSpec",
    "LSTMSpec",
    "MinSpec",
    "RGLRUSpec",
    "SLSTMSpec",
    "Spec",
    "check_sizes",
    "constrain",
    "declare_params",
    "family",
    "param_breakdown",
    "param_count",
    "output_features",
    "regularise",
]

Spec: TypeAlias = SpecBase  # any family's spec

_MODULES = (lstm, gru, minimal, slstm, rglru, indrnn)
FAMILIES: dict[type, Family] = {module.FAMILY.spec: module.FAMILY for module in _MODULES}


def family(spec: Spec) -> Family:
    """The family of ``spec`` (by its type)."""
    try:
        return FAMILIES[type(spec)]
    except KeyError:
        known = ", ".join(cls.__name__ for cls in FAMILIES)
        raise TypeError(f"not a spec: {spec!r}; the spec types are {known}") from None


def param_breakdown(spec: Spec, input_size: int, features: int) -> dict[str, int]:
    """Parameters of one cell, per part, in closed form (``D = input_size``, ``H = features``):
    the family's ``breakdown``, whose docstring gives its formula. For example an LSTM's learned
    gates and candidate own ``D*H + H*H + H`` each (``kernel_x``, ``kernel_h``, ``bias``); the
    min family's ``D*H + H`` (no recurrent kernels).

    Returns:
        ``{part: count}`` for the parts that exist (removed and tied gates are absent).
    """
    return family(spec).breakdown(spec, input_size, features)


def param_count(spec: Spec, input_size: int, features: int) -> int:
    """Total parameters of one cell (see ``param_breakdown``)."""
    return sum(param_breakdown(spec, input_size, features).values())


def declare_params(
    module: Any,
    spec: Spec,
    input_size: int,
    features: int,
    kernel_init=default_kernel_init,
    recurrent_kernel_init=default_recurrent_init,
    param_dtype: Any = jnp.float32,
) -> dict:
    """Creates (or reads) the parameters of ``spec`` inside ``module``'s compact call.

    Returns:
        ``{part: {name: array}}`` for the parts that exist.
    """
    check_sizes(spec, input_size, features)
    parts = Parts(module, input_size, features, kernel_init, recurrent_kernel_init, param_dtype)
    return family(spec).declare(spec, parts)


def check_sizes(spec: Spec, input_size: int, features: int) -> None:
    """Raises ``ValueError`` (naming the spec's field) where ``spec`` cannot take an input of
    ``input_size`` features and a hidden size ``features`` (``Family.check``)."""
    check = family(spec).check
    if check is not None:
        check(spec, input_size, features)


def constrain(spec: Spec, params: dict) -> dict:
    """The family's projection of one layer's parameters after an update (most have none)."""
    project = family(spec).constrain
    return params if project is None else project(spec, params)


def output_features(spec: Spec, features: int) -> int:
    """The width of a layer's output and recurrent state: LSTMP's projection ``P``, else ``H``."""
    return getattr(spec, "projection", 0) or features
