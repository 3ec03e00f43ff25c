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
from gatelab.families.regularise import Regularised, layer_norm, mix
from gatelab.specs import (
    ACTIVATIONS,
    GateMode,
    validate_bool,
    validate_choice,
    validate_float,
    validate_gates,
)

__all__ = ["GRUSpec", "FAMILY"]

Array = jax.Array


@dataclasses.dataclass(frozen=True, repr=False)
class GRUSpec(Regularised):
    """A GRU cell (Cho et al. 2014) in the convention where ``update`` is the fraction written.

    Equations (docs/reference.md, section 4; Chung et al.'s interpolation)::

        u_t = gate(update): sigma(W_u x_t + U_u h_{t-1} + b_u)
        r_t = gate(reset):  sigma(W_r x_t + U_r h_{t-1} + b_r)
        reset_after=True  (PyTorch, cuDNN, Flax):
            h~_t = g(W_c x_t + b_c + r_t * (U_c h_{t-1} + b_ch))
        reset_after=False (Keras v3 form, TF GRUBlockCell, MGU):
            h~_t = g(W_c x_t + U_c (r_t * h_{t-1}) + b_c)
        h_t = (1 - u_t) * h_{t-1} + u_t * h~_t
    and Jozefowicz et al.'s mutations of its inputs (MUT1-3):
        update_recurrence="none": U_u h_{t-1} left out (MUT1's update gate sees only x)
        update_recurrence="tanh": U_u tanh(h_{t-1}) instead (MUT3)
        reset_input="identity":   x_t instead of W_r x_t (MUT2; needs D = H)
        candidate_input="tanh":   tanh(x_t) instead of W_c x_t (MUT1; needs D = H)

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
        update_recurrence: what the update gate sees of ``h``: ``"linear"``, ``"none"``,
            ``"tanh"`` (above; a learned update gate only).
        reset_input: what the reset gate sees of ``x``: ``"linear"`` or ``"identity"``.
        candidate_input: what the candidate sees of ``x``: ``"linear"`` or ``"tanh"``.

    The regularisers are keyword fields shared with ``LSTMSpec`` (``regularise.Regularised``);
    the GRU has no cell state (``zoneout_cell`` and ``layer_norm="cell"`` are refused) and no
    projection. With layer norm, the authors' form (Ba et al. 2016, ``lngru_layer``): the gates'
    input and recurrent terms normalised together, the candidate's alone::

        (u, r) = sigma(LN(W x_t + b)[gates] + LN(U h_{t-1})[gates])
        h~_t = g(LN(W_c x_t + b_c) + r_t * (LN(U_c h_{t-1}) + b_ch))     reset_after=True
        h~_t = g(LN(W_c x_t + b_c) + LN(U_c (r_t * h_{t-1})))            reset_after=False

    Variational dropout masks ``h`` where it enters each matmul (also inside ``U_c (r * h)``);
    the interpolation uses the unmasked ``h_{t-1}``.
    """

    update: GateMode = "learned"
    reset: GateMode = "learned"
    reset_after: bool = True
    candidate_activation: str = "tanh"
    update_bias: float = 0.0
    reset_bias: float = 0.0
    tie_shift: float = 0.0
    update_recurrence: str = "linear"
    reset_input: str = "linear"
    candidate_input: str = "linear"

    GATES = ("update", "reset")

    def __post_init__(self):
        validate_gates(self, self.GATES)
        validate_choice(self, "candidate_activation", ACTIVATIONS)
        validate_bool(self, "reset_after")
        validate_float(self, "update_bias")
        validate_float(self, "reset_bias")
        validate_float(self, "tie_shift")
        validate_choice(self, "update_recurrence", ("linear", "none", "tanh"))
        validate_choice(self, "reset_input", ("linear", "identity"))
        validate_choice(self, "candidate_input", ("linear", "tanh"))
        self._validate_regularisers("gru")
        direct = [
            f"{field}={getattr(self, field)!r}"
            for field in ("reset_input", "candidate_input", "update_recurrence")
            if getattr(self, field) in ("identity", "tanh")
        ]
        if direct and (self.dropout_input or self.dropout_recurrent or self.layer_norm):
            raise ValueError(
                f"GRUSpec with {', '.join(direct)}: a part that takes x or tanh(h) without a "
                "fused kernel has no place for dropout or layer norm here; allowed with "
                "dropout_input, dropout_recurrent or layer_norm: reset_input='linear', "
                "candidate_input='linear', update_recurrence='linear' or 'none'"
            )
        for field, gate in (("update_recurrence", "update"), ("reset_input", "reset")):
            if getattr(self, field) != "linear" and getattr(self, gate) != "learned":
                raise ValueError(
                    f"GRUSpec.{field}={getattr(self, field)!r} changes a learned {gate} gate's "
                    f"input, but {gate}={getattr(self, gate)!r}; allowed here: 'linear'"
                )

    @property
    def recurrent_candidate_bias(self) -> bool:
        """Whether the candidate owns ``bias_h`` (``b_ch``): reset after the matmul, not open."""
        return self.reset_after and self.reset != "open"


def _check(spec: GRUSpec, input_size: int, features: int) -> None:
    """An input taken as it is (``x``, ``tanh(x)``) must be as wide as the state."""
    for field, value in (("reset_input", "identity"), ("candidate_input", "tanh")):
        if getattr(spec, field) == value and input_size != features:
            raise ValueError(
                f"GRUSpec.{field}={value!r} adds the input itself, which needs as many input "
                f"features as hidden ones (got {input_size} and {features}); allowed: "
                f"{field}='linear', or a layer whose input is as wide as its state"
            )


# --------------------------------------------------------------------------------------------------
# Parameters.
# --------------------------------------------------------------------------------------------------


def _has_input(spec: GRUSpec, part: str) -> bool:
    """Whether ``part`` owns ``kernel_x``."""
    return {
        "update": True,
        "reset": spec.reset_input == "linear",
        "candidate": spec.candidate_input == "linear",
    }[part]


def declare(spec: GRUSpec, parts: Parts) -> dict:
    """Every learned gate and the candidate: ``kernel_x`` (unless it takes ``x`` itself),
    ``kernel_h`` (unless the update gate sees no ``h``), ``bias``; the candidate's ``bias_h``
    where the reset gate acts after the matmul."""
    biases = {"update": spec.update_bias, "reset": spec.reset_bias}
    params = {
        g: parts.part(
            g,
            bias_init=constant_init(biases[g]),
            input=_has_input(spec, g),
            recurrent=not (g == "update" and spec.update_recurrence == "none"),
            norm=spec.layer_norm,
        )
        for g in spec.learned_gates
    }
    params["candidate"] = parts.part(
        "candidate",
        recurrent_bias=spec.recurrent_candidate_bias,
        input=_has_input(spec, "candidate"),
        norm=spec.layer_norm,
    )
    return params


def breakdown(spec: GRUSpec, input_size: int, features: int) -> dict[str, int]:
    """``D*H + H*H + H`` per learned gate and for the candidate, less the kernels a mutation
    leaves out, ``+ H`` for ``bias_h``, ``+ 2H`` per kernel whose term is normalised."""
    d, h = input_size, features
    ln_x, ln_h = ("input" in spec.layer_norm), ("recurrent" in spec.layer_norm)
    parts = {}
    for part in [*spec.learned_gates, "candidate"]:
        count = h + ((d * h + 2 * h * ln_x) if _has_input(spec, part) else 0)
        if not (part == "update" and spec.update_recurrence == "none"):
            count += h * h + 2 * h * ln_h
        parts[part] = count
    parts["candidate"] += h if spec.recurrent_candidate_bias else 0
    return parts


# --------------------------------------------------------------------------------------------------
# Pre-activations: per part (GatedCell) or fused (GatedRNN).
#
# ``pre`` holds the learned gates' ``W x + U h + b``, the candidate's input term ``W_c x + b_c``
# and, with the reset after the matmul, its recurrent term ``U_c h`` (``candidate_h``). Before the
# matmul, ``U_c (r * h)`` waits for ``r``: the step applies ``U_c`` (``consts["kernel_c"]``).
# The mutations' terms the fused matmuls cannot hold are the step's too: ``U_u tanh(h)``
# (``kernel_u``) and the biases of parts that take ``x`` without a kernel (``bias_<part>``).
# --------------------------------------------------------------------------------------------------


def _sees_h(spec: GRUSpec, part: str) -> bool:
    """Whether ``part``'s recurrent term is ``h @ kernel_h`` (it joins the recurrent matmul)."""
    return not (part == "update" and spec.update_recurrence != "linear")


def _consts(spec: GRUSpec, params: dict) -> dict[str, Array]:
    consts = {}
    if spec.recurrent_candidate_bias:
        consts["bias_h"] = params["candidate"]["bias_h"]
    if not spec.reset_after:
        consts["kernel_c"] = params["candidate"]["kernel_h"]
    if spec.update == "learned" and spec.update_recurrence == "tanh":
        consts["kernel_u"] = params["update"]["kernel_h"]
    for part in [*spec.learned_gates, "candidate"]:
        if not _has_input(spec, part):
            consts[f"bias_{part}"] = params[part]["bias"]
    if not spec.reset_after and "recurrent" in spec.layer_norm:  # LN(U_c (r * h)) in the step
        consts["ln_candidate_scale"] = params["candidate"]["ln_recurrent_scale"]
        consts["ln_candidate_shift"] = params["candidate"]["ln_recurrent_shift"]
    return consts


def _direct(part: str, x: Array) -> Array:
    """The input term of a part that takes ``x`` without a kernel (MUT2's reset, MUT1's z)."""
    return jnp.tanh(x) if part == "candidate" else x


def inputs(spec: GRUSpec, params: dict, x: Array, h: Array) -> tuple[dict, dict]:
    """The pre-activations above with one matmul per part."""
    pre = {}
    for g in spec.learned_gates:
        p = params[g]
        s = x @ p["kernel_x"] if _has_input(spec, g) else _direct(g, x)
        if _sees_h(spec, g):
            s = s + h @ p["kernel_h"]
        pre[g] = s + p["bias"] if _has_input(spec, g) else s
    candidate = params["candidate"]
    if _has_input(spec, "candidate"):
        pre["candidate"] = x @ candidate["kernel_x"] + candidate["bias"]
    else:
        pre["candidate"] = _direct("candidate", x)
    if spec.reset_after:
        pre["candidate_h"] = h @ candidate["kernel_h"]
    return pre, _consts(spec, params)


def fused(spec: GRUSpec, params: dict) -> Fused:
    """With the reset after the matmul, gates and candidate share one recurrent matmul; before
    it, the recurrent matmul holds the gates only."""
    learned = list(spec.learned_gates)
    blocks = [b for b in [*learned, "candidate"] if _has_input(spec, b)]
    recurrent = [g for g in learned if _sees_h(spec, g)]
    recurrent += ["candidate"] if spec.reset_after else []
    size = params["candidate"]["bias"].shape[-1]
    dtype = params["candidate"]["bias"].dtype
    if blocks:
        wx, bias = fuse(params, blocks, "kernel_x"), fuse(params, blocks, "bias")[None, :]
    else:  # every part takes x as it is (D = H)
        wx, bias = jnp.zeros((size, 0), dtype), jnp.zeros((1, 0), dtype)
    # None: MGU-like specs with nothing before the candidate have no recurrent matmul.
    w = fuse(params, recurrent, "kernel_h") if recurrent else None

    def split(proj, rec, x):
        parts = split_blocks(proj, blocks, size)
        rec = split_blocks(rec, recurrent, size)
        pre = {}
        for g in learned:
            s = parts[g] if g in parts else _direct(g, x)
            pre[g] = s + rec[g] if g in rec else s
        pre["candidate"] = parts["candidate"] if "candidate" in parts else _direct("candidate", x)
        if spec.reset_after:
            pre["candidate_h"] = rec["candidate"]
        return pre

    consts = {k: v[None, :] if v.ndim == 1 else v for k, v in _consts(spec, params).items()}
    norms = {}
    for term, names in (("input", blocks), ("recurrent", recurrent)):
        if term in spec.layer_norm and names:
            for name in ("scale", "shift"):
                norms[f"{term}_{name}"] = fuse(params, names, f"ln_{term}_{name}")[None, :]
    return Fused(
        wx, bias, split, w, consts=consts, size=size, blocks=tuple(blocks),
        recurrent_blocks=tuple(recurrent), norms=norms,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# The step.
# --------------------------------------------------------------------------------------------------


def _mutated(pre: dict, h: Array, consts: dict) -> dict:
    """The mutations' terms of the step: ``U_u tanh(h)`` and the kernel-less parts' biases."""
    if "kernel_u" in consts:
        pre = {**pre, "update": pre["update"] + jnp.tanh(h) @ consts["kernel_u"]}
    for part in ("reset", "candidate"):
        if f"bias_{part}" in consts:
            pre = {**pre, part: pre[part] + consts[f"bias_{part}"]}
    return pre


def step(spec: GRUSpec, pre: dict, h: Array, consts: dict, probe: Array | None = None):
    """One step from the pre-activations above."""
    pre = _mutated(pre, h, consts)
    u = gate_value(spec, "update", pre)
    r = gate_value(spec, "reset", pre)
    if spec.reset_after:
        recurrent = pre["candidate_h"]
        if "bias_h" in consts:
            recurrent = recurrent + consts["bias_h"]
        s = pre["candidate"] + gated(r, recurrent)
    else:
        seen = h * consts["dropout_h_candidate"] if "dropout_h_candidate" in consts else h
        late = gated(r, seen) @ consts["kernel_c"]
        if "ln_candidate_scale" in consts:
            late = layer_norm(late, consts["ln_candidate_scale"], consts["ln_candidate_shift"])
        s = pre["candidate"] + late
    h_tilde = activation(spec.candidate_activation)(s)
    new_h = h_tilde if u is None else (1.0 - u) * h + u * h_tilde
    if probe is not None:
        new_h = new_h + probe
    return new_h, new_h, live({"update": u, "reset": r})


FAMILY = Family(
    spec=GRUSpec,
    declare=declare,
    breakdown=breakdown,
    inputs=inputs,
    fused=fused,
    step=step,
    check=_check,
    zoneout=lambda spec, new, old, keep: mix(new, old, keep["hidden"]),
    joint_candidate=False,
)
