"""The RG-LRU family: Griffin's real-gated linear recurrent unit with its gates ablatable (De et
al. 2024, RecurrentGemma; docs/reference.md, section 6).

Its gates see only ``x``, so the recurrence is linear, ``h_t = a_t * h_{t-1} + b_t``, and runs
through ``gatelab.rnn.linear_scan`` like the min family (associative on accelerators, sequential
on the CPU). Notation: ``b`` batch, ``d`` input features, ``H`` hidden features. Carry: ``h``
(b, H). The cell alone: Griffin's recurrent block around it (a Conv1D before it, a GeLU branch
multiplying its output, the gated MLP) is not part of it.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from gatelab.families.base import Family, Fused, Parts, fuse, live, split_blocks
from gatelab.specs import SpecBase, validate_bool, validate_choice, validate_float

__all__ = ["RGLRUSpec", "FAMILY", "sqrt_bound_derivative"]

Array = jax.Array

GATE_MODES = ("learned", "open")
MAX_SQRT_GRADIENT = 1000.0  # the authors' bound on d sqrt(1 - a^2)


@dataclasses.dataclass(frozen=True, repr=False)
class RGLRUSpec(SpecBase):
    """An RG-LRU (De et al. 2024) whose recurrence gate, input gate and normalisation ablate.

    Equations (the authors' code; ``Lin`` an affine map of ``x_t``)::

        u_t = Lin(x_t)                       (projection=True; u_t = x_t with projection=False)
        r_t = gate(recurrence): sigma(Lin(x_t))        i_t = gate(input): sigma(Lin(x_t))
        log a_t = -c * r_t * softplus(Lambda)          a_t = exp(log a_t)
        h_t = a_t * h_{t-1} + sqrt(1 - a_t^2) * (i_t * u_t)      (normalise=False: no sqrt)

    ``Lambda`` (H,) is initialised so that ``a = sigma(-Lambda)`` at ``r = 1`` lies uniformly on
    the ring ``[min_radius, max_radius]`` (uniform in ``a^2``). The square root's derivative is
    bounded (by 1000, as the authors do) so that ``a -> 1`` cannot make it infinite. An open
    recurrence gate (``r = 1``) leaves a time-invariant decay ``a^c`` (LRU-like).

    Attributes:
        recurrence: the recurrence gate ``r``: ``"learned"`` or ``"open"``.
        input: the input gate ``i``: ``"learned"`` or ``"open"``.
        normalise: multiply the input by ``sqrt(1 - a_t^2)``.
        c: the constant of ``log a``; the authors' is 8.
        projection: ``u_t`` is an affine map of ``x_t`` (the projection Griffin's block applies
            before its RG-LRU); ``False``: ``u_t = x_t`` itself, which needs ``D = H``.
        min_radius, max_radius: the ring of the initial ``a`` (the authors': 0.9, 0.999).
    """

    recurrence: str = "learned"
    input: str = "learned"
    normalise: bool = True
    c: float = 8.0
    projection: bool = True
    min_radius: float = 0.9
    max_radius: float = 0.999

    GATES = ("recurrence", "input")

    def __post_init__(self):
        validate_choice(self, "recurrence", GATE_MODES)
        validate_choice(self, "input", GATE_MODES)
        validate_bool(self, "normalise")
        validate_bool(self, "projection")
        for field in ("c", "min_radius", "max_radius"):
            validate_float(self, field)
        if self.c <= 0:
            raise ValueError(f"RGLRUSpec.c={self.c!r} must be positive")
        if not 0.0 < self.min_radius < self.max_radius < 1.0:
            raise ValueError(
                f"RGLRUSpec.min_radius={self.min_radius!r}, max_radius={self.max_radius!r}: "
                "need 0 < min_radius < max_radius < 1"
            )


def _check(spec: RGLRUSpec, input_size: int, features: int) -> None:
    if not spec.projection and input_size != features:
        raise ValueError(
            f"RGLRUSpec.projection=False feeds x itself into the recurrence, which needs as many "
            f"input features as hidden ones (got {input_size} and {features}); allowed: "
            "projection=True, or a layer whose input is as wide as its state"
        )


# --------------------------------------------------------------------------------------------------
# Parameters.
# --------------------------------------------------------------------------------------------------


def _input_blocks(spec: RGLRUSpec) -> list[str]:
    return [*spec.learned_gates, *(["candidate"] if spec.projection else [])]


def ring_init(min_radius: float, max_radius: float):
    """``Lambda`` with ``sigma(-Lambda)`` uniform on a ring: ``a^2 ~ U[min^2, max^2]``."""

    def init(key, shape, dtype=jnp.float32):
        unit = jax.random.uniform(key, shape, jnp.float32)
        log_a = 0.5 * jnp.log(unit * (max_radius**2 - min_radius**2) + min_radius**2 + 1e-8)
        return jnp.log(jnp.exp(-log_a) - 1.0).astype(dtype)  # the inverse of softplus

    return init


def declare(spec: RGLRUSpec, parts: Parts) -> dict:
    """Every learned gate: ``kernel_x`` (D, H) ~ N(0, 1/D), ``bias`` 0; the ``candidate``
    projection where on; ``decay/lambda`` (H,) on the ring."""
    gate_kernel = nn.initializers.variance_scaling(1.0, "fan_in", "normal")
    params = {
        g: parts.part(g, recurrent=False, kernel_init=gate_kernel) for g in spec.learned_gates
    }
    if spec.projection:
        params["candidate"] = parts.part("candidate", recurrent=False)
    params["decay"] = {
        "lambda": parts.vector("decay", "lambda", ring_init(spec.min_radius, spec.max_radius))
    }
    return params


def breakdown(spec: RGLRUSpec, input_size: int, features: int) -> dict[str, int]:
    """``D*H + H`` per learned gate and for the projection, ``H`` for ``Lambda``."""
    block = input_size * features + features
    return {**dict.fromkeys(_input_blocks(spec), block), "decay": features}


def inputs(spec: RGLRUSpec, params: dict, x: Array, h: Array) -> tuple[dict, dict]:
    """``Lin(x)`` of every learned gate and of the projection (or ``x`` itself)."""
    pre = {p: x @ params[p]["kernel_x"] + params[p]["bias"] for p in _input_blocks(spec)}
    if not spec.projection:
        pre["candidate"] = x
    return pre, {"lambda": params["decay"]["lambda"]}


def fused(spec: RGLRUSpec, params: dict) -> Fused:
    """Every block's input projection in one matmul; there is no recurrent matmul."""
    blocks = _input_blocks(spec)
    size = params["decay"]["lambda"].shape[-1]
    dtype = params["decay"]["lambda"].dtype

    def split(proj, rec, x):
        pre = split_blocks(proj, blocks, size)
        return pre if spec.projection else {**pre, "candidate": x}

    if blocks:
        wx, bias = fuse(params, blocks, "kernel_x"), fuse(params, blocks, "bias")[None, :]
    else:  # no gate, no projection: nothing to project
        wx, bias = jnp.zeros((size, 0), dtype), jnp.zeros((1, 0), dtype)
    consts = {"lambda": params["decay"]["lambda"][None, None, :]}  # against (t, b, H)
    return Fused(wx, bias, split, consts=consts)


# --------------------------------------------------------------------------------------------------
# The coefficients of h_t = a_t * h_{t-1} + b_t.
# --------------------------------------------------------------------------------------------------


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def sqrt_bound_derivative(x: Array, max_gradient: float) -> Array:
    """``sqrt(x)`` whose derivative is at most ``max_gradient`` (it is evaluated at
    ``max(x, 1 / (4 max_gradient^2))``), as the authors bound it near ``a = 1``."""
    return jnp.sqrt(x)


def _sqrt_forward(x, max_gradient):
    return jnp.sqrt(x), x


def _sqrt_backward(max_gradient, x, g):
    bounded = jnp.maximum(x, 1.0 / (4.0 * max_gradient**2))
    return (g / (2.0 * jnp.sqrt(bounded)),)


sqrt_bound_derivative.defvjp(_sqrt_forward, _sqrt_backward)


def coefficients(spec: RGLRUSpec, pre: dict, consts: dict, log: bool = False):
    """``(a, b, gates)``; never in logarithms (``b`` has either sign)."""
    r = jax.nn.sigmoid(pre["recurrence"]) if spec.recurrence == "learned" else None
    i = jax.nn.sigmoid(pre["input"]) if spec.input == "learned" else None
    rate = jax.nn.softplus(consts["lambda"])
    log_a = -spec.c * (rate if r is None else r * rate)
    a = jnp.exp(log_a)
    b = pre["candidate"] if i is None else i * pre["candidate"]
    if spec.normalise:
        b = b * sqrt_bound_derivative(1.0 - jnp.exp(2.0 * log_a), MAX_SQRT_GRADIENT)
    if r is None:  # a time-invariant decay: one (H,) row for every step and example
        a = jnp.broadcast_to(a, b.shape)
    return a, b, live({"recurrence": r, "input": i})


FAMILY = Family(
    spec=RGLRUSpec,
    declare=declare,
    breakdown=breakdown,
    inputs=inputs,
    fused=fused,
    coefficients=coefficients,
    check=_check,
)
