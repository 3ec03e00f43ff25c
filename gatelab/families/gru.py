"""The GRU family, with ``update`` the fraction written (docs/reference.md, section 4): the GRU in
both reset placements, MGU, UGRNN.

Notation: ``b`` batch, ``d`` input features, ``H`` hidden features. Carry: ``h`` (b, H).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from gatelab.families.base import (
    Family,
    Fused,
    Parts,
    activation,
    constant_init,
    fuse,
    gate_value,
    gated,
    live,
    split_blocks,
)
from gatelab.specs import (
    ACTIVATIONS,
    GateMode,
    SpecBase,
    validate_bool,
    validate_choice,
    validate_float,
    validate_gates,
)

__all__ = ["GRUSpec", "FAMILY"]

Array = jax.Array


@dataclasses.dataclass(frozen=True, repr=False)
class GRUSpec(SpecBase):
    """A GRU cell (Cho et al. 2014) in the convention where ``update`` is the fraction written.

    Equations (docs/reference.md, section 4; Chung et al.'s interpolation)::

        u_t = gate(update): sigma(W_u x_t + U_u h_{t-1} + b_u)
        r_t = gate(reset):  sigma(W_r x_t + U_r h_{t-1} + b_r)
        reset_after=True  (PyTorch, cuDNN, Flax):
            h~_t = g(W_c x_t + b_c + r_t * (U_c h_{t-1} + b_ch))
        reset_after=False (Keras v3 form, TF GRUBlockCell, MGU):
            h~_t = g(W_c x_t + U_c (r_t * h_{t-1}) + b_c)
        h_t = (1 - u_t) * h_{t-1} + u_t * h~_t

    PyTorch's and Flax's ``z`` is ``1 - u``. MGU is ``GRUSpec(reset="update", reset_after=False)``;
    ``update="open"`` replaces the state by the candidate at every step.

    Attributes:
        update: mode of the update gate (fraction of the candidate written).
        reset: mode of the reset gate (fraction of ``h_{t-1}`` the candidate sees).
        reset_after: where the reset gate acts (above). The separate recurrent candidate bias
            ``b_ch`` exists only with ``reset_after=True`` and a reset gate that is not open.
        candidate_activation: ``g``: ``"tanh"`` or ``"identity"``.
        update_bias: initial value of the update gate's bias (UGRNN: -1, i.e. keep
            ``sigma(1)`` of the state at the start).
        reset_bias: initial value of the reset gate's bias.
        tie_shift: ``beta`` of a complement tie, ``1 - sigma(s - beta)``.
    """

    update: GateMode = "learned"
    reset: GateMode = "learned"
    reset_after: bool = True
    candidate_activation: str = "tanh"
    update_bias: float = 0.0
    reset_bias: float = 0.0
    tie_shift: float = 0.0

    GATES = ("update", "reset")

    def __post_init__(self):
        validate_gates(self, self.GATES)
        validate_choice(self, "candidate_activation", ACTIVATIONS)
        validate_bool(self, "reset_after")
        validate_float(self, "update_bias")
        validate_float(self, "reset_bias")
        validate_float(self, "tie_shift")

    @property
    def recurrent_candidate_bias(self) -> bool:
        """Whether the candidate owns ``bias_h`` (``b_ch``): reset after the matmul, not open."""
        return self.reset_after and self.reset != "open"


# --------------------------------------------------------------------------------------------------
# Parameters.
# --------------------------------------------------------------------------------------------------


def declare(spec: GRUSpec, parts: Parts) -> dict:
    """Every learned gate and the candidate: ``kernel_x, kernel_h, bias``; the candidate's
    ``bias_h`` where the reset gate acts after the matmul."""
    biases = {"update": spec.update_bias, "reset": spec.reset_bias}
    params = {g: parts.part(g, bias_init=constant_init(biases[g])) for g in spec.learned_gates}
    params["candidate"] = parts.part("candidate", recurrent_bias=spec.recurrent_candidate_bias)
    return params


def breakdown(spec: GRUSpec, input_size: int, features: int) -> dict[str, int]:
    """``D*H + H*H + H`` per learned gate and for the candidate, ``+ H`` for ``bias_h``."""
    d, h = input_size, features
    block = d * h + h * h + h
    parts = dict.fromkeys(spec.learned_gates, block)
    parts["candidate"] = block + (h if spec.recurrent_candidate_bias else 0)
    return parts


def zero_carry(spec: GRUSpec, batch: tuple[int, ...], features: int, dtype) -> Array:
    return jnp.zeros((*batch, features), dtype)


# --------------------------------------------------------------------------------------------------
# Pre-activations: per part (GatedCell) or fused (GatedRNN).
#
# ``pre`` holds the learned gates' ``W x + U h + b``, the candidate's input term ``W_c x + b_c``
# and, with the reset after the matmul, its recurrent term ``U_c h`` (``candidate_h``). Before the
# matmul, ``U_c (r * h)`` waits for ``r``: the step applies ``U_c`` (``consts["kernel_c"]``).
# --------------------------------------------------------------------------------------------------


def _consts(spec: GRUSpec, params: dict) -> dict[str, Array]:
    consts = {}
    if spec.recurrent_candidate_bias:
        consts["bias_h"] = params["candidate"]["bias_h"]
    if not spec.reset_after:
        consts["kernel_c"] = params["candidate"]["kernel_h"]
    return consts


def inputs(spec: GRUSpec, params: dict, x: Array, h: Array) -> tuple[dict, dict]:
    """The pre-activations above with one matmul per part."""
    pre = {
        g: x @ params[g]["kernel_x"] + h @ params[g]["kernel_h"] + params[g]["bias"]
        for g in spec.learned_gates
    }
    candidate = params["candidate"]
    pre["candidate"] = x @ candidate["kernel_x"] + candidate["bias"]
    if spec.reset_after:
        pre["candidate_h"] = h @ candidate["kernel_h"]
    return pre, _consts(spec, params)


def fused(spec: GRUSpec, params: dict) -> Fused:
    """With the reset after the matmul, gates and candidate share one recurrent matmul; before
    it, the recurrent matmul holds the gates only."""
    learned = list(spec.learned_gates)
    blocks = [*learned, "candidate"]
    recurrent = blocks if spec.reset_after else learned
    size = params["candidate"]["bias"].shape[-1]
    wx, bias = fuse(params, blocks, "kernel_x"), fuse(params, blocks, "bias")[None, :]
    if recurrent:
        w = fuse(params, recurrent, "kernel_h")
    else:  # MGU-like specs with nothing before the candidate: an empty matmul
        w = jnp.zeros((size, 0), params["candidate"]["bias"].dtype)

    def split(proj, rec):
        parts = split_blocks(proj, blocks, size)
        rec = split_blocks(rec, recurrent, size)
        pre = {g: parts[g] + rec[g] for g in learned}
        pre["candidate"] = parts["candidate"]
        if spec.reset_after:
            pre["candidate_h"] = rec["candidate"]
        return pre

    consts = {k: v[None, :] if v.ndim == 1 else v for k, v in _consts(spec, params).items()}
    return Fused(wx, bias, w, lambda h: h, split, consts)


# --------------------------------------------------------------------------------------------------
# The step.
# --------------------------------------------------------------------------------------------------


def step(spec: GRUSpec, pre: dict, h: Array, consts: dict, probe: Array | None = None):
    """One step from the pre-activations above."""
    u = gate_value(spec, "update", pre)
    r = gate_value(spec, "reset", pre)
    if spec.reset_after:
        recurrent = pre["candidate_h"]
        if "bias_h" in consts:
            recurrent = recurrent + consts["bias_h"]
        s = pre["candidate"] + gated(r, recurrent)
    else:
        s = pre["candidate"] + gated(r, h) @ consts["kernel_c"]
    h_tilde = activation(spec.candidate_activation)(s)
    new_h = h_tilde if u is None else (1.0 - u) * h + u * h_tilde
    if probe is not None:
        new_h = new_h + probe
    return new_h, new_h, live({"update": u, "reset": r})


FAMILY = Family(
    spec=GRUSpec,
    declare=declare,
    breakdown=breakdown,
    zero_carry=zero_carry,
    hidden=lambda h: h,
    inputs=inputs,
    fused=fused,
    step=step,
)
