"""What every cell family is made of: the ``Family`` record, gate arithmetic, parameter parts.

A family module (``lstm.py``, ``gru.py``, ``minimal.py``) holds its spec class, the declaration
of its parameters, its pure step function (or, for a linear recurrence, its scan coefficients),
its zero carry and its parameter breakdown, and exports them as one ``Family``. ``GatedCell``
(one matmul per part) and ``GatedRNN`` (fused matmuls) call the same functions, so each family's
equations are written once. docs/design.md ("Adding a family") walks through a new one.

Notation: ``b`` batch (any leading axes), ``d`` input features, ``H`` hidden features.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gatelab.specs import SpecBase

__all__ = [
    "Family",
    "Fused",
    "zero_hidden",
    "Parts",
    "Params",
    "Initializer",
    "activation",
    "gate_value",
    "gated",
    "live",
    "broadcast_vectors",
    "split_blocks",
    "fuse",
    "recur",
    "constant_init",
    "chrono_init",
    "default_kernel_init",
    "default_recurrent_init",
]

Array = jax.Array
Params = dict[str, dict[str, Array]]
Initializer = Callable[..., Array]

default_kernel_init = nn.initializers.lecun_normal()
default_recurrent_init = nn.initializers.orthogonal()


# --------------------------------------------------------------------------------------------------
# The family record.
# --------------------------------------------------------------------------------------------------


def _the_carry(carry: Array) -> Array:
    return carry


@dataclasses.dataclass(frozen=True)
class Fused:
    """A recurrence's matmuls fused across its parameter blocks (``GatedRNN``'s fast path).

    Each time step computes ``proj = x_t @ wx + bias`` and ``rec = read(carry) @ w``, then
    ``split(proj, rec, x_t)`` gives the pre-activations the family's ``step`` takes (``x_t``
    itself for the parts that read the input without a kernel, e.g. MUT1's ``tanh(x)``).

    Attributes:
        wx: the input kernels of every block, concatenated: (d, k*H).
        bias: their biases: (1, k*H).
        split: ``(proj, rec, x) -> pre``; a pure function (it closes over no array).
        w: the recurrent kernels: (r, k'*H), ``r`` the width of ``read(carry)`` (or per head,
            (heads, r / heads, k'*H / heads), where ``read`` gives (b, heads, 1, r / heads));
            or a tuple of kernels (r_j, n_j) with ``n_0 = k'*H`` and ``n_j <= k'*H``, one per
            recurrent input, each product added to the first ``n_j`` columns (``recur``: FGR's
            gate activations feed only the gate columns); ``None``: no recurrent matmul
            (IndRNN, a linear recurrence; ``rec`` is then empty).
        read: carry -> the recurrent matmul's input (b, r), or the tuple of inputs (b, r_j)
            when ``w`` is a tuple; a pure function of the carry (by default the carry itself,
            where it is ``h`` alone).
        consts: arrays the step needs at every time step (peepholes, a kernel applied late).
        size: ``H``, the width of one block.
        blocks: the parts whose input kernels ``wx``'s column blocks are, in order (the
            regularisers' per-part masks and layer norm groups read it).
        recurrent_blocks: the parts whose recurrent kernels ``w``'s column blocks are.
        norms: layer normalisation's fused gains and shifts: ``input_scale``, ``input_shift``,
            ``recurrent_scale``, ``recurrent_shift`` (k*H,) where the spec normalises the term.
    """

    wx: Array
    bias: Array
    split: Callable[[Array, Array, Array], dict[str, Array]]
    w: Array | None = None
    read: Callable[[Any], Array] = _the_carry
    consts: dict[str, Array] = dataclasses.field(default_factory=dict)
    size: int = 0
    blocks: tuple[str, ...] = ()
    recurrent_blocks: tuple[str, ...] = ()
    norms: dict[str, Array] = dataclasses.field(default_factory=dict)


def recur(v, w) -> Array:
    """The recurrent term ``v @ w``; with tuples (``Fused.w``), ``sum_j pad(v_j @ w_j)``: the
    first input's product spans every column, each further one is added to its first
    columns. Separate products where one padded matmul would multiply zeros: FGR's 5 seeds
    train 1.18x faster so, 13H^2 multiply-adds a row instead of 16H^2 (485 s against 572 s,
    ``python -m experiments.bench --study``, experiments/bench/results/study*.md)."""
    if not isinstance(w, tuple):
        return v @ w
    rec = v[0] @ w[0]
    width = rec.shape[-1]
    for vj, wj in zip(v[1:], w[1:], strict=True):
        term = vj @ wj
        rec = rec + jnp.pad(term, [(0, 0)] * (term.ndim - 1) + [(0, width - term.shape[-1])])
    return rec


def _nothing(carry) -> dict[str, Array]:
    return {}


def zero_hidden(spec, batch: tuple[int, ...], features: int, dtype) -> Array:
    """The zero carry of a family whose carry is ``h`` alone: (*batch, features)."""
    return jnp.zeros((*batch, features), dtype)


@dataclasses.dataclass(frozen=True)
class Family:
    """One cell family: the functions ``GatedCell``, ``GatedRNN`` and the counters need.

    Every function takes the spec first. Exactly one of ``step`` (a recurrence through ``h``)
    and ``coefficients`` (a linear recurrence with coefficients of ``x`` only) is set.

    Attributes:
        spec: the family's spec class (the registry's key).
        declare: ``(spec, parts) -> params``: creates the parameters through ``parts``.
        breakdown: ``(spec, input_size, features) -> {part: count}`` in closed form.
        zero_carry: ``(spec, batch_shape, features, dtype) -> carry`` of zeros (default: a
            carry that is ``h`` alone).
        hidden: ``carry -> h``: the hidden state a readout reads (default: the carry itself).
        inputs: ``(spec, params, x, carry) -> (pre, consts)``: the pre-activations of one
            step with one matmul per part (``GatedCell``, the readable reference).
        fused: ``(spec, params) -> Fused``: the same with the blocks' matmuls fused (a linear
            recurrence has no recurrent matmul: ``GatedRNN`` projects the whole sequence at once).
        step: ``(spec, pre, carry, consts, probe) -> (carry, h, gates)``: one time step from
            the pre-activations; ``probe`` (or ``None``) is added to ``h``; ``gates`` holds the
            live gates' activations.
        coefficients: ``(spec, pre, consts, log) -> (a, b, gates)`` of ``h_t = a_t h_{t-1} + b_t``
            (``a = None``: ``h_t = b_t``); with ``log``, ``log a`` and ``log b`` instead.
        observe: ``carry -> {name: array}``: state worth capturing besides ``h`` (the cell).
        check: ``(spec, input_size, features)``: raises ``ValueError`` (naming the field) for a
            spec that cannot take these sizes (a head count that does not divide ``H``, a part
            that needs ``D = H``); called before any parameter exists.
        constrain: ``(spec, params) -> params``: a projection the runner applies after every
            optimisation step (IndRNN's bound on its recurrent weights); ``None``: none.
        fused_backward: whether ``GatedRNN(backward="fused")`` can take the family (its
            hand-written backward needs one dense recurrent kernel).
        zoneout: ``(spec, new_carry, old_carry, keep) -> carry``: zoneout of the carry's states,
            ``keep = {"cell": ..., "hidden": ...}`` masks or rates (``regularise.mix``); families
            without regulariser fields have none.
        joint_candidate: whether ``layer_norm_stats="joint"`` normalises the candidate's block
            with the gates' (LSTM) or alone (GRU).
        norm_rebias: whether the normalised input term gets its bias again (the LSTM's authors'
            form, ``LN(W x + b) + LN(U h) + b``).
    """

    spec: type[SpecBase]
    declare: Callable[..., Params]
    breakdown: Callable[..., dict[str, int]]
    inputs: Callable[..., tuple[dict[str, Array], dict[str, Array]]]
    fused: Callable[..., Fused]
    zero_carry: Callable[..., Any] = zero_hidden
    hidden: Callable[[Any], Array] = _the_carry
    step: Callable[..., tuple[Any, Array, dict[str, Array]]] | None = None
    coefficients: Callable[..., tuple[Array | None, Array, dict[str, Array]]] | None = None
    observe: Callable[[Any], dict[str, Array]] = _nothing
    check: Callable[..., None] | None = None
    constrain: Callable[..., Params] | None = None
    fused_backward: bool = True
    zoneout: Callable[..., Any] | None = None
    joint_candidate: bool = True
    norm_rebias: bool = False

    def __post_init__(self):
        if (self.step is None) == (self.coefficients is None):
            raise TypeError(f"{self.spec.__name__}'s family needs a step or coefficients, not both")


# --------------------------------------------------------------------------------------------------
# Gate arithmetic.
# --------------------------------------------------------------------------------------------------


def activation(name: str) -> Callable[[Array], Array]:
    """The activation named in a spec (a candidate, a cell, IndRNN's unit)."""
    match name:
        case "tanh":
            return jnp.tanh
        case "identity":
            return lambda x: x
        case "g":  # minGRU's positive candidate: x + 0.5 for x >= 0, sigma(x) below.
            return lambda x: jnp.where(x >= 0, x + 0.5, jax.nn.sigmoid(x))
        case "sigmoid":
            return jax.nn.sigmoid
        case "relu":  # IndRNN's
            return jax.nn.relu
    raise ValueError(f"unknown activation {name!r}")


def gate_value(spec: SpecBase, gate: str, pre: dict[str, Array]) -> Array | None:
    """The value of ``gate`` from the pre-activations of the learned gates.

    Returns:
        ``None`` for an open gate (the constant 1: callers skip the multiplication), else the
        activation: ``sigma(s)``, ``1 - sigma(s_src - tie_shift)`` or the source's ``sigma``.
    """
    kind, source = spec.mode(gate)
    match kind:
        case "learned":
            return jax.nn.sigmoid(pre[gate])
        case "open":
            return None
        case "complement":
            shift = getattr(spec, "tie_shift", 0.0)
            return 1.0 - jax.nn.sigmoid(pre[source] - shift if shift else pre[source])
        case "shared":
            return jax.nn.sigmoid(pre[source])
    raise AssertionError(kind)


def gated(gate: Array | None, x: Array) -> Array:
    """``gate * x``, where an open gate (``None``) is the constant 1 and costs nothing."""
    return x if gate is None else gate * x


def live(values: dict[str, Array | None]) -> dict[str, Array]:
    """The gates that are not open (``None``)."""
    return {g: v for g, v in values.items() if v is not None}


def broadcast_vectors(params: Params, ndim: int) -> Params:
    """Reshapes every (H,) parameter to (1, ..., 1, H) for operands of rank ``ndim``.

    Explicit, so that code runs under ``jax_numpy_rank_promotion="raise"``.
    """
    lead = (1,) * (ndim - 1)
    return jax.tree_util.tree_map(lambda v: v.reshape(lead + v.shape) if v.ndim == 1 else v, params)


def fuse(params: Params, blocks: list[str], name: str) -> Array:
    """The named parameter of every block, concatenated on the last axis."""
    return jnp.concatenate([params[b][name] for b in blocks], axis=-1)


def split_blocks(s: Array, names: list[str], size: int) -> dict[str, Array]:
    """The blocks of ``s`` (..., k*H) by name. ``jnp.split``, not slicing: its transpose is one
    concatenate, where slices transpose to a sum of zero-padded blocks, which XLA's CPU backend
    evaluates per element of the whole width (experiments/bench/results/2026-11-27.md, "Gate
    blocks split with jnp.split")."""
    if not names:
        return {}
    assert s.shape[-1] == len(names) * size, (s.shape, names, size)
    return dict(zip(names, jnp.split(s, len(names), axis=-1), strict=True))


# --------------------------------------------------------------------------------------------------
# Parameters: one submodule per part, so checkpoints read as what was ablated.
# --------------------------------------------------------------------------------------------------


def constant_init(value) -> Initializer:
    return lambda key, shape, dtype=jnp.float32: jnp.broadcast_to(jnp.asarray(value, dtype), shape)


def chrono_init(tmax: float, sign: float) -> Initializer:
    """``sign * log U[1, T_max - 1]`` (Tallec & Ollivier 2018)."""

    def init(key, shape, dtype=jnp.float32):
        return sign * jnp.log(jax.random.uniform(key, shape, dtype, 1.0, tmax - 1.0))

    return init


class _Part(nn.Module):
    """The parameters of one gate or of the candidate (no computation): ``kernel_x`` (D, H)
    unless ``input`` is off, ``kernel_h`` (H, H) or ``recurrent_shape`` where ``recurrent``,
    ``bias`` (H,), and ``peephole``, ``bias_h`` (H,) where asked for."""

    input_size: int
    features: int
    input: bool = True
    recurrent: bool = True
    recurrent_shape: tuple[int, ...] | None = None
    peephole: bool = False
    recurrent_bias: bool = False
    norm: tuple[str, ...] = ()
    bias_init: Initializer = nn.initializers.zeros_init()
    kernel_init: Initializer = default_kernel_init
    recurrent_kernel_init: Initializer = default_recurrent_init
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self) -> dict[str, Array]:
        d, h = self.input_size, self.features
        params = {}
        if self.input:
            params["kernel_x"] = self.param("kernel_x", self.kernel_init, (d, h), self.param_dtype)
        if self.recurrent:
            shape = self.recurrent_shape or (h, h)
            params["kernel_h"] = self.param(
                "kernel_h", self.recurrent_kernel_init, shape, self.param_dtype
            )
        params["bias"] = self.param("bias", self.bias_init, (h,), self.param_dtype)
        if self.peephole:
            params["peephole"] = self.param(
                "peephole", nn.initializers.zeros_init(), (h,), self.param_dtype
            )
        if self.recurrent_bias:
            params["bias_h"] = self.param(
                "bias_h", nn.initializers.zeros_init(), (h,), self.param_dtype
            )
        for term, present in (("input", self.input), ("recurrent", self.recurrent)):
            if term in self.norm and present:
                ones, zeros = nn.initializers.ones_init(), nn.initializers.zeros_init()
                params[f"ln_{term}_scale"] = self.param(
                    f"ln_{term}_scale", ones, (h,), self.param_dtype
                )
                params[f"ln_{term}_shift"] = self.param(
                    f"ln_{term}_shift", zeros, (h,), self.param_dtype
                )
        return params


class _Norm(nn.Module):
    """Layer normalisation's ``scale`` (ones) and ``shift`` (zeros), (H,), of one term."""

    features: int
    param_dtype: Any

    @nn.compact
    def __call__(self) -> dict[str, Array]:
        shape = (self.features,)
        return {
            "scale": self.param("scale", nn.initializers.ones_init(), shape, self.param_dtype),
            "shift": self.param("shift", nn.initializers.zeros_init(), shape, self.param_dtype),
        }


class _Vector(nn.Module):
    """One (H,) parameter under the name of its part (IndRNN's ``recurrence/u``)."""

    name_of_param: str
    features: int
    initializer: Initializer
    param_dtype: Any

    @nn.compact
    def __call__(self) -> Array:
        return self.param(self.name_of_param, self.initializer, (self.features,), self.param_dtype)


class _Matrix(nn.Module):
    """One ``kernel`` under its own name (FGR's gate recurrence, LSTMP's projection)."""

    shape: tuple[int, ...]
    kernel_init: Initializer
    param_dtype: Any

    @nn.compact
    def __call__(self) -> Array:
        return self.param("kernel", self.kernel_init, self.shape, self.param_dtype)


@dataclasses.dataclass(frozen=True)
class Parts:
    """Creates (or reads) parameters inside a module's compact call, for a family's ``declare``.

    Initialisation: lecun-normal input kernels, orthogonal recurrent kernels, zero biases unless
    the family says otherwise, zero peepholes.
    """

    module: nn.Module
    input_size: int
    features: int
    kernel_init: Initializer = default_kernel_init
    recurrent_kernel_init: Initializer = default_recurrent_init
    param_dtype: Any = jnp.float32

    def part(self, name: str, **options) -> dict[str, Array]:
        """``{[kernel_x], [kernel_h], bias, [peephole], [bias_h]}`` of the part ``name``; options
        are ``_Part``'s (``input``, ``recurrent``, ``recurrent_shape``, ``peephole``,
        ``recurrent_bias``, ``bias_init``, and ``kernel_init`` or ``recurrent_kernel_init``
        where the family's initialisation differs from the layer's)."""
        inits = {
            "kernel_init": self.kernel_init,
            "recurrent_kernel_init": self.recurrent_kernel_init,
        }
        return _Part(
            self.input_size,
            self.features,
            param_dtype=self.param_dtype,
            parent=self.module,
            name=name,
            **{**inits, **options},
        )()

    def vector(self, part: str, name: str, init: Initializer) -> Array:
        """A (H,) ``part/name``, initialised by ``init``."""
        return _Vector(name, self.features, init, self.param_dtype, parent=self.module, name=part)()

    def matrix(self, name: str, size: int, columns: int | None = None) -> Array:
        """A (size, columns or size) ``name/kernel``, initialised like the input kernels."""
        shape = (size, size if columns is None else columns)
        return _Matrix(shape, self.kernel_init, self.param_dtype, parent=self.module, name=name)()

    def norm(self, name: str) -> dict[str, Array]:
        """Layer normalisation's ``name/scale`` and ``name/shift`` (H,)."""
        return _Norm(self.features, self.param_dtype, parent=self.module, name=name)()
