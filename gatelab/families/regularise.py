"""Regularisers and normalisation as spec fields of the LSTM and GRU families.

Each is one field of the spec, off by default, switched on or off in one line like a gate
(docs/reference.md, "Regularisers and normalisation", gives the equations and sources):

  =====================  ==========================================================================
  ``dropout_input``      variational dropout on ``x`` (Gal & Ghahramani 2016): one inverted mask
                         per sequence and part, the same at every step
  ``dropout_recurrent``  the same on ``h_{t-1}`` where it enters a part's matmul (never on ``c``,
                         never on the carried ``h``)
  ``dropout_tied``       one mask shared by every part instead of one per part
  ``zoneout_cell``       zoneout of ``c`` (Krueger et al. 2016): each unit keeps its previous
                         value with probability ``z``, fresh per step, unit and example; at
                         evaluation ``z * old + (1 - z) * new``
  ``zoneout_hidden``     the same for ``h`` (the output is the zoned ``h``)
  ``weight_drop``        DropConnect on every recurrent kernel (Merity et al. 2017): one mask per
                         forward call, i.e. per optimisation step, shared by examples and steps
  ``layer_norm``         any of ``"input"``, ``"recurrent"``, ``"cell"`` (Ba et al. 2016, the
                         authors' form); ``layer_norm_stats`` ``"joint"`` or ``"gate"``
  =====================  ==========================================================================

Masks are data (``Masks``): ``draw`` makes them from one key, ``GatedRNN`` draws them outside
its scan from the ``"dropout"`` stream, ``GatedCell`` takes them as an argument (or draws them
from the ``"dropout"`` and ``"zoneout"`` streams), so the two agree given the same masks. At
evaluation (``deterministic``) nothing is random: no dropout, zoneout in expectation.

Notation: ``b`` batch, ``t`` time, ``d`` input features, ``H`` hidden features, ``k`` parameter
blocks of a fused matmul, ``r`` the recurrent matmul's input width (``H``, or ``P`` with a
projection).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import jax
import jax.numpy as jnp

from gatelab.families.base import recur
from gatelab.specs import SpecBase

__all__ = [
    "Regularised",
    "FIELDS",
    "LAYER_NORMS",
    "Masks",
    "regularised",
    "stochastic",
    "draw",
    "at_step",
    "expected_zone",
    "drop_weights",
    "prepare",
    "layer_norm",
    "normalise",
    "input_term",
    "recurrent_term",
    "step",
    "mix",
    "EPSILON",
]

Array = jax.Array
Masks = dict[str, Any]

DESCRIPTIONS = {
    "dropout_input": "variational dropout on x: one mask per sequence and part (Gal & Ghahramani)",
    "dropout_recurrent": "the same on h_{t-1} entering the matmuls (never on c)",
    "dropout_tied": "one dropout mask for every part instead of one each",
    "zoneout_cell": "keep each unit of c with this probability, per step (Krueger et al.)",
    "zoneout_hidden": "the same for h",
    "weight_drop": "DropConnect on the recurrent kernels, per step (Merity et al.)",
    "layer_norm": "normalised terms: input, recurrent, cell (Ba et al.'s form)",
    "layer_norm_stats": "joint (the gate vector) or gate (each block)",
    "projection": "LSTMP: h projected to P < H (Sak et al.; torch proj_size)",
}
RATES = ("dropout_input", "dropout_recurrent", "zoneout_cell", "zoneout_hidden", "weight_drop")
LAYER_NORMS = ("input", "recurrent", "cell")
STATS = ("joint", "gate")
EPSILON = 1e-5  # the authors' (ryankiros/layer-norm)


@dataclasses.dataclass(frozen=True, repr=False, kw_only=True)
class Regularised(SpecBase):
    """The regulariser fields the LSTM and GRU specs share (keyword-only, after the family's).

    Attributes:
        dropout_input: variational dropout rate on the inputs, in [0, 1).
        dropout_recurrent: variational dropout rate on ``h_{t-1}`` entering the matmuls.
        dropout_tied: one mask for every part (gate and candidate) instead of one each.
        zoneout_cell: zoneout rate of the cell state (LSTM only).
        zoneout_hidden: zoneout rate of the hidden state.
        weight_drop: DropConnect rate on the recurrent kernels.
        layer_norm: the terms normalised: ``"input"`` (``W x + b``), ``"recurrent"``
            (``U h``), ``"cell"`` (``c`` before its activation; LSTM only). Empty: off. A string
            ``"input,recurrent"`` is accepted (the command line's form).
        layer_norm_stats: ``"joint"``: statistics over the family's joint vector (the LSTM's
            four blocks together; the GRU's gates together and its candidate alone, as in the
            authors' code); ``"gate"``: over each block alone.
        projection: LSTMP's recurrent projection size ``P`` (0: none; LSTM only, ``P < H``).
    """

    dropout_input: float = 0.0
    dropout_recurrent: float = 0.0
    dropout_tied: bool = False
    zoneout_cell: float = 0.0
    zoneout_hidden: float = 0.0
    weight_drop: float = 0.0
    layer_norm: tuple[str, ...] = ()
    layer_norm_stats: str = "joint"
    projection: int = 0

    def _validate_regularisers(self, family: str) -> None:
        """Checks the fields; ``family`` is ``"lstm"`` or ``"gru"`` (what applies differs)."""
        name = type(self).__name__
        norms = self.layer_norm
        if isinstance(norms, str):  # "input,recurrent" from the command line
            norms = tuple(n.strip() for n in norms.split(",") if n.strip())
        if isinstance(norms, list):
            norms = tuple(norms)
        object.__setattr__(self, "layer_norm", norms)
        for field in RATES:
            value = getattr(self, field)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (0.0 <= value < 1.0)
            ):
                raise ValueError(f"{name}.{field}={value!r} must be a rate in [0, 1) (0: off)")
        if not isinstance(self.dropout_tied, bool):
            raise ValueError(f"{name}.dropout_tied={self.dropout_tied!r} must be True or False")
        allowed = LAYER_NORMS if family == "lstm" else LAYER_NORMS[:2]
        if not isinstance(norms, tuple) or any(n not in allowed for n in norms):
            raise ValueError(
                f"{name}.layer_norm={self.layer_norm!r} is not allowed; allowed: a tuple of "
                + ", ".join(repr(a) for a in allowed)
                + " (empty: off)"
                + ("; the GRU has no cell state" if family == "gru" and "cell" in norms else "")
            )
        if len(set(norms)) != len(norms):
            raise ValueError(f"{name}.layer_norm={norms!r} names a term twice")
        if self.layer_norm_stats not in STATS:
            raise ValueError(
                f"{name}.layer_norm_stats={self.layer_norm_stats!r} is not allowed; allowed: "
                + ", ".join(repr(s) for s in STATS)
            )
        if isinstance(self.projection, bool) or not isinstance(self.projection, int):
            raise ValueError(f"{name}.projection={self.projection!r} must be an integer >= 0")
        if self.projection < 0:
            raise ValueError(f"{name}.projection={self.projection!r} must be >= 0 (0: none)")
        if family == "gru":
            if self.zoneout_cell:
                raise ValueError(
                    f"{name}.zoneout_cell={self.zoneout_cell!r}: the GRU has no cell state; "
                    "allowed: 0 (zone the hidden state with zoneout_hidden)"
                )
            if self.projection:
                raise ValueError(
                    f"{name}.projection={self.projection!r}: the recurrent projection is the "
                    "LSTM's (LSTMP); allowed: 0"
                )


FIELDS = tuple(field.name for field in dataclasses.fields(Regularised))


def regularised(spec: SpecBase) -> bool:
    """Whether ``spec`` has a regulariser or normalisation on (false for the other families)."""
    return stochastic(spec) or bool(getattr(spec, "layer_norm", ()))


def stochastic(spec: SpecBase) -> bool:
    """Whether ``spec`` draws masks in training (false for the other families)."""
    return any(getattr(spec, field, 0.0) for field in RATES)


# --------------------------------------------------------------------------------------------------
# Masks.
# --------------------------------------------------------------------------------------------------


def _inverted(key: Array, rate: float, shape: tuple[int, ...], dtype) -> Array:
    """An inverted dropout mask: 0 with probability ``rate``, else ``1 / (1 - rate)``."""
    keep = 1.0 - rate
    return jax.random.bernoulli(key, keep, shape).astype(dtype) / jnp.asarray(keep, dtype)


def _parts_with(params: dict, name: str) -> list[str]:
    return [part for part, p in params.items() if isinstance(p, dict) and name in p]


def draw(
    spec: SpecBase,
    params: dict,
    key: Array,
    batch: tuple[int, ...],
    steps: int | None,
    zone_key: Array | None = None,
) -> Masks:
    """Every training mask of ``spec`` for a batch (one layer's ``params``, for the shapes).

    Args:
        spec: an LSTM or GRU spec.
        params: the layer's parameters ``{part: {name: array}}``.
        key: the key every mask is drawn from.
        batch: the batch shape (``(b,)``).
        steps: the sequence length (zoneout masks (t, *batch, H)), or ``None`` for one step's
            ((*batch, H), ``GatedCell``).
        zone_key: where zoneout's masks come from instead of ``key`` (``GatedCell``'s per-step
            stream).

    Returns:
        ``{"input": {part: (*batch, d)}, "recurrent": {part: (*batch, r)}, "weight": {part:
        (r, H)}}`` of inverted float masks (the same array for every part where tied), and
        ``"zone_cell"``, ``"zone_hidden"``: booleans, true where a unit keeps its previous value.
        Only the entries of regularisers that are on.
    """
    k_input, k_recurrent, k_weight, k_zone = jax.random.split(key, 4)
    if zone_key is not None:
        k_zone = zone_key
    masks: Masks = {}
    for field, entry, kernel, k in (
        ("dropout_input", "input", "kernel_x", k_input),
        ("dropout_recurrent", "recurrent", "kernel_h", k_recurrent),
    ):
        rate = getattr(spec, field)
        if not rate:
            continue
        parts = _parts_with(params, kernel)
        width = params[parts[0]][kernel].shape[0]
        dtype = params[parts[0]][kernel].dtype
        if spec.dropout_tied:
            mask = _inverted(k, rate, (*batch, width), dtype)
            masks[entry] = {part: mask for part in parts}
        else:
            keys = jax.random.split(k, len(parts))
            masks[entry] = {
                part: _inverted(kp, rate, (*batch, width), dtype)
                for part, kp in zip(parts, keys, strict=True)
            }
    if spec.weight_drop:
        parts = _parts_with(params, "kernel_h")
        keys = jax.random.split(k_weight, len(parts))
        masks["weight"] = {}
        for part, kp in zip(parts, keys, strict=True):
            kernel = params[part]["kernel_h"]
            masks["weight"][part] = _inverted(kp, spec.weight_drop, kernel.shape, kernel.dtype)
    lead = () if steps is None else (steps,)
    k_cell, k_hidden = jax.random.split(k_zone)
    size = params["candidate"]["bias"].shape[-1]
    if spec.zoneout_cell:
        masks["zone_cell"] = jax.random.bernoulli(k_cell, spec.zoneout_cell, (*lead, *batch, size))
    if spec.zoneout_hidden:
        width = spec.projection or size
        masks["zone_hidden"] = jax.random.bernoulli(
            k_hidden, spec.zoneout_hidden, (*lead, *batch, width)
        )
    return masks


def at_step(masks: Masks, t: int) -> Masks:
    """One step's masks from a sequence's: zoneout's at ``t``, the others as they are."""
    return {k: (v[t] if k.startswith("zone_") else v) for k, v in masks.items()}


def expected_zone(spec: SpecBase) -> dict[str, float | None]:
    """Zoneout at evaluation: the rates, for ``z * old + (1 - z) * new``."""
    return {
        "cell": getattr(spec, "zoneout_cell", 0.0) or None,
        "hidden": getattr(spec, "zoneout_hidden", 0.0) or None,
    }


def training_zone(masks: Masks) -> dict[str, Array | None]:
    """Zoneout in training: one step's keep-old masks."""
    return {"cell": masks.get("zone_cell"), "hidden": masks.get("zone_hidden")}


def mix(new: Array, old: Array, keep: Array | float | None) -> Array:
    """Zoneout of one state: ``new`` where nothing is kept, the previous value where ``keep``
    (a boolean mask) says so, or in expectation ``keep * old + (1 - keep) * new`` for a rate."""
    if keep is None:
        return new
    if isinstance(keep, float):
        return keep * old + (1.0 - keep) * new
    return jnp.where(keep, old, new)


def drop_weights(params: dict, masks: Masks | None) -> dict:
    """The parameters with weight drop's masks applied to the recurrent kernels."""
    if not masks or "weight" not in masks:
        return params
    return {
        part: (
            {**p, "kernel_h": p["kernel_h"] * masks["weight"][part]}
            if part in masks["weight"]
            else p
        )
        for part, p in params.items()
    }


# --------------------------------------------------------------------------------------------------
# Layer normalisation.
# --------------------------------------------------------------------------------------------------


def layer_norm(s: Array, scale: Array, shift: Array) -> Array:
    """``scale * (s - mean) / sqrt(var + eps) + shift`` over the last axis (eps 1e-5)."""
    mean = jnp.mean(s, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(s - mean), axis=-1, keepdims=True)
    return (s - mean) * jax.lax.rsqrt(var + EPSILON) * scale + shift


def groups(spec: SpecBase, blocks: tuple[str, ...], joint_candidate: bool) -> tuple[int, ...]:
    """How many consecutive blocks of a fused vector share their statistics: all of them
    (``joint_candidate``), the gates together and the candidate alone, or each alone."""
    if spec.layer_norm_stats == "gate":
        return (1,) * len(blocks)
    if joint_candidate or "candidate" not in blocks:
        return (len(blocks),)
    assert blocks[-1] == "candidate", blocks
    return tuple(n for n in (len(blocks) - 1, 1) if n)


def normalise(s: Array, scale: Array, shift: Array, sizes: tuple[int, ...], size: int) -> Array:
    """Layer normalisation of a fused vector (..., k*H) whose consecutive groups of ``sizes``
    blocks have their own statistics; ``scale`` and ``shift`` (k*H,) elementwise."""
    if len(sizes) == 1:
        return layer_norm(s, scale, shift)
    cuts = [size * n for n in itertools.accumulate(sizes)][:-1]
    pieces = jnp.split(s, cuts, axis=-1)
    scales, shifts = jnp.split(scale, cuts, axis=-1), jnp.split(shift, cuts, axis=-1)
    return jnp.concatenate(
        [layer_norm(p, a, b) for p, a, b in zip(pieces, scales, shifts, strict=True)], axis=-1
    )


# --------------------------------------------------------------------------------------------------
# One regularised step, shared by GatedCell and GatedRNN.
# --------------------------------------------------------------------------------------------------


def _blockwise(v: Array, masks: list[Array], w: Array, tied: bool) -> Array:
    """``concat_k((v * m_k) @ w_k)`` for the column blocks ``w_k`` of ``w`` (r, k*H): the same
    FLOPs as the unmasked fused matmul, in one matmul per block (measured as fast as, or faster
    than, one batched einsum over the blocks on the CPU: experiments/bench, "Regularisers")."""
    if tied:
        return (v * masks[0]) @ w
    blocks = jnp.split(w, len(masks), axis=-1)
    return jnp.concatenate([(v * m) @ wk for m, wk in zip(masks, blocks, strict=True)], axis=-1)


def input_term(family, spec: SpecBase, layout, x: Array, masks: Masks | None) -> Array:
    """``[LN](x W + b) [+ b]`` of one step (the LSTM's authors' form adds ``b`` again after
    normalising), with the input dropout masks."""
    masks = masks or {}
    if "input" in masks and layout.blocks:
        parts = [masks["input"][b] for b in layout.blocks]
        proj = _blockwise(x, parts, layout.wx, spec.dropout_tied)
    else:
        proj = x @ layout.wx
    proj = proj + layout.bias
    if "input" in spec.layer_norm and layout.blocks:
        sizes = groups(spec, layout.blocks, family.joint_candidate)
        norms = layout.norms
        proj = normalise(proj, norms["input_scale"], norms["input_shift"], sizes, layout.size)
        if family.norm_rebias:
            proj = proj + layout.bias
    return proj


def recurrent_term(family, spec: SpecBase, layout, carry, masks: Masks | None) -> Array:
    """``[LN](h U)`` of one step, with the recurrent dropout masks."""
    masks = masks or {}
    read = layout.read(carry)
    if layout.w is None:
        return jnp.zeros((*read.shape[:-1], 0), read.dtype)
    if "recurrent" in masks and layout.recurrent_blocks:  # one recurrent input (LSTMSpec checks)
        parts = [masks["recurrent"][b] for b in layout.recurrent_blocks]
        rec = _blockwise(read, parts, layout.w, spec.dropout_tied)
    else:
        rec = recur(read, layout.w)
    if "recurrent" in spec.layer_norm and layout.recurrent_blocks:
        sizes = groups(spec, layout.recurrent_blocks, family.joint_candidate)
        norms = layout.norms
        rec = normalise(rec, norms["recurrent_scale"], norms["recurrent_shift"], sizes, layout.size)
    return rec


def prepare(family, spec: SpecBase, params: dict, masks: Masks | None):
    """``(layout, consts)`` for ``step``: the fused layout of ``params`` with weight drop's
    masks applied, and the step's constants with the recurrent dropout masks of parts whose
    recurrent matmul is the step's own (the GRU's candidate with the reset before it:
    ``dropout_h_<part>``). The same for one step (``GatedCell``) and a whole scan."""
    layout = family.fused(spec, drop_weights(params, masks))
    consts = dict(layout.consts)
    for part, mask in ((masks or {}).get("recurrent") or {}).items():
        if part not in layout.recurrent_blocks:
            consts[f"dropout_h_{part}"] = mask
    return layout, consts


def step(family, spec: SpecBase, layout, consts, x: Array, carry, masks: Masks | None, probe=None):
    """One step of a regularised cell: ``(carry, h, gates)``.

    ``masks`` are training masks (``draw``, one step's zoneout entries) or ``None`` at evaluation
    (no dropout; zoneout in expectation). The input term stays inside the scan: computed for
    every step ahead of it, it measured slower on the CPU (as for the plain cells).
    """
    proj = input_term(family, spec, layout, x, masks)
    rec = recurrent_term(family, spec, layout, carry, masks)
    pre = layout.split(proj, rec, x)
    new_carry, _, gates = family.step(spec, pre, carry, consts, probe)
    if getattr(spec, "zoneout_cell", 0.0) or getattr(spec, "zoneout_hidden", 0.0):
        zone = expected_zone(spec) if masks is None else training_zone(masks)
        new_carry = family.zoneout(spec, new_carry, carry, zone)
    return new_carry, family.hidden(new_carry), gates
