"""The sLSTM family: xLSTM's scalar-memory LSTM with every part ablatable (Beck et al. 2024;
docs/reference.md, section 6).

Notation: ``b`` batch, ``d`` input features, ``H`` hidden features, ``NH`` heads of ``DH = H / NH``
units. Carry ``(c, n, m, h)``: the cell, the normaliser, the stabiliser and the hidden state, all
(b, H), all starting at zero. The cell alone: xLSTM's block around it (a causal Conv1D feeding
the input and forget gates, a per-head GroupNorm, the residual feed-forward) is not part of it.
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from gatelab.families.base import Family, Fused, Parts, fuse, gated, live, split_blocks
from gatelab.specs import SpecBase, validate_bool, validate_choice, validate_float

__all__ = ["SLSTMSpec", "FAMILY"]

Array = jax.Array

INPUT_GATES = ("exponential", "sigmoid", "open")
FORGET_GATES = ("sigmoid", "exponential", "open")
OUTPUT_GATES = ("learned", "open")
RECURRENT_INITS = ("zeros", "uniform")
FORGET_INITS = ("powerlaw", "linspace")


@dataclasses.dataclass(frozen=True, repr=False)
class SLSTMSpec(SpecBase):
    """An sLSTM cell (Beck et al. 2024, xLSTM) whose gates, normaliser and mixing ablate.

    Equations (``~`` marks pre-activations, ``s~ = W x_t + R h_{t-1} + b`` with ``R``
    block-diagonal over the heads; the stabilised form of the authors' code)::

        log i = i~ (exponential) | log sigma(i~) (sigmoid) | 0 (open)
        log f = log sigma(f~) (sigmoid) | f~ (exponential) | 0 (open)
        m_t = log i                        where n_{t-1} = 0
              max(log i, log f + m_{t-1})  elsewhere              (no gradient through m)
        i' = min(exp(log i - m_t), 1);  f' = min(exp(log f + m_{t-1} - m_t), 1)
        c_t = f' * c_{t-1} + i' * tanh(z~)
        n_t = f' * n_{t-1} + i'
        h_t = o * c_t / n_t,  o = sigma(o~) (learned) | 1 (open)
    without the normaliser (only with a sigmoid input gate; the code's own "lstm" cell):
        c_t = f * c_{t-1} + i * tanh(z~),  h_t = o * tanh(c_t)

    The captured gates are the stabilised ``i'`` and ``f'`` (in [0, 1]) and ``o``; ``m``
    cancels in ``c / n``, so the stabiliser is not an ablation.

    Attributes:
        input: the input gate: ``"exponential"`` (the paper's), ``"sigmoid"`` or ``"open"``.
        forget: the forget gate: ``"sigmoid"`` (the authors' code), ``"exponential"`` (the
            paper's alternative) or ``"open"``.
        output: ``"learned"`` or ``"open"``.
        normaliser: the normaliser state ``n`` (off needs ``input="sigmoid"``).
        mixing: recurrent kernels ``R`` (memory mixing); off: the gates see only ``x``.
        heads: ``NH``, the diagonal blocks of ``R``: 1 is a dense recurrence, ``H`` a diagonal
            one; it must divide the hidden size.
        recurrent_init: ``"zeros"`` (the authors' default: no mixing at the start) or
            ``"uniform"`` (U(+-1/sqrt(H)), their "standard").
        forget_init: the forget bias per head: ``"powerlaw"`` (the authors' default, from +5
            down to -7 across a head's units, steeper with depth) or ``"linspace"`` (3 to 6).
        forget_depth: the layer's depth for the power law, 0 (the first block) to 1 (the last).
    """

    input: str = "exponential"
    forget: str = "sigmoid"
    output: str = "learned"
    normaliser: bool = True
    mixing: bool = True
    heads: int = 1
    recurrent_init: str = "zeros"
    forget_init: str = "powerlaw"
    forget_depth: float = 0.0

    GATES = ("input", "forget", "output")

    def __post_init__(self):
        validate_choice(self, "input", INPUT_GATES)
        validate_choice(self, "forget", FORGET_GATES)
        validate_choice(self, "output", OUTPUT_GATES)
        validate_bool(self, "normaliser")
        validate_bool(self, "mixing")
        validate_choice(self, "recurrent_init", RECURRENT_INITS)
        validate_choice(self, "forget_init", FORGET_INITS)
        validate_float(self, "forget_depth")
        if isinstance(self.heads, bool) or not isinstance(self.heads, int) or self.heads < 1:
            raise ValueError(f"SLSTMSpec.heads={self.heads!r} must be a positive integer")
        if not 0.0 <= self.forget_depth <= 1.0:
            raise ValueError(f"SLSTMSpec.forget_depth={self.forget_depth!r} must be in [0, 1]")
        if not self.normaliser and self.input != "sigmoid":
            raise ValueError(
                f"SLSTMSpec.normaliser=False with input={self.input!r}: without the normaliser "
                "nothing undoes an exponential gate's scale; allowed with normaliser=False: "
                "input='sigmoid'"
            )

    def mode(self, gate: str):
        return ("open", None) if getattr(self, gate) == "open" else ("learned", None)

    @property
    def learned_gates(self) -> tuple[str, ...]:
        """The gates that are not open: each owns parameters, exponential or sigmoid."""
        return tuple(g for g in self.GATES if getattr(self, g) != "open")

    live_gates = learned_gates

    def describe_gate(self, gate: str) -> str:
        value = getattr(self, gate)
        if value == "open":
            return "removed (constant 1)"
        if value == "exponential" and self.normaliser:
            return "exponential, stabilised: exp(log - m) in [0, 1]"
        return value


def _check(spec: SLSTMSpec, input_size: int, features: int) -> None:
    if features % spec.heads:
        divisors = [k for k in range(1, features + 1) if features % k == 0]
        raise ValueError(
            f"SLSTMSpec.heads={spec.heads} must divide the hidden size {features}; allowed: "
            + ", ".join(map(str, divisors))
        )


# --------------------------------------------------------------------------------------------------
# Parameters.
# --------------------------------------------------------------------------------------------------


def _blocks(spec: SLSTMSpec) -> list[str]:
    """The parts with parameters, in the fused order: the live gates, then the candidate z."""
    return [*spec.learned_gates, "candidate"]


def _forget_bias(spec: SLSTMSpec, heads: int):
    """The authors' forget-bias initialisations, per head (``DH`` units each)."""

    def init(key, shape, dtype=jnp.float32):
        size = shape[0] // heads
        k = jnp.arange(size, dtype=jnp.float32) / max(size - 1, 1)
        if spec.forget_init == "powerlaw":
            one = -(-5.0 + 12.0 * k ** (0.3 + 1.3 * spec.forget_depth))
        else:
            one = jnp.linspace(3.0, 6.0, size)
        return jnp.tile(one, heads).astype(dtype)

    return init


def declare(spec: SLSTMSpec, parts: Parts) -> dict:
    """Every live gate and the candidate: ``kernel_x`` (D, H) ~ N(0, 2 / (5 D)), ``kernel_h``
    per head (NH, DH, DH) where there is mixing, ``bias`` (H,) (the forget gate's per
    ``forget_init``, the others 0)."""
    h, heads = parts.features, spec.heads
    kernel = nn.initializers.normal(stddev=math.sqrt(2.0 / (5.0 * parts.input_size)))
    if spec.recurrent_init == "zeros":
        recurrent = nn.initializers.zeros_init()
    else:
        bound = 1.0 / math.sqrt(h)
        recurrent = lambda key, shape, dtype=jnp.float32: jax.random.uniform(  # noqa: E731
            key, shape, dtype, -bound, bound
        )
    options = {
        "recurrent": spec.mixing,
        "recurrent_shape": (heads, h // heads, h // heads),
        "kernel_init": kernel,
        "recurrent_kernel_init": recurrent,
    }
    params = {}
    for part in _blocks(spec):
        bias = _forget_bias(spec, heads) if part == "forget" else nn.initializers.zeros_init()
        params[part] = parts.part(part, bias_init=bias, **options)
    return params


def breakdown(spec: SLSTMSpec, input_size: int, features: int) -> dict[str, int]:
    """Every live gate and the candidate: ``D*H + H`` and ``H*H / NH`` with mixing."""
    block = input_size * features + features
    if spec.mixing:
        block += features * features // spec.heads
    return dict.fromkeys(_blocks(spec), block)


def zero_carry(spec: SLSTMSpec, batch: tuple[int, ...], features: int, dtype):
    zeros = jnp.zeros((*batch, features), dtype)
    return zeros, zeros, zeros, zeros


# --------------------------------------------------------------------------------------------------
# Pre-activations: per part (GatedCell) or fused (GatedRNN).
# --------------------------------------------------------------------------------------------------


def _per_head(h: Array, kernel: Array) -> Array:
    """``h`` (..., H) through the block-diagonal ``kernel`` (NH, DH, DH'): (..., NH * DH')."""
    heads = kernel.shape[0]
    blocks = h.reshape(*h.shape[:-1], heads, h.shape[-1] // heads)
    out = jnp.einsum("...ni,nio->...no", blocks, kernel)
    return out.reshape(*h.shape[:-1], -1)


def inputs(spec: SLSTMSpec, params: dict, x: Array, carry) -> tuple[dict, dict]:
    """``s~ = x W + b [+ h R]`` for every live gate and the candidate."""
    h = carry[3]
    pre = {}
    for part in _blocks(spec):
        p = params[part]
        s = x @ p["kernel_x"] + p["bias"]
        pre[part] = s + _per_head(h, p["kernel_h"]) if spec.mixing else s
    return pre, {}


def fused(spec: SLSTMSpec, params: dict) -> Fused:
    """One input matmul for every block; with mixing, one recurrent matmul: dense with one head,
    per head with several (``h`` read as (b, NH, 1, DH) against (1, NH, DH, k*DH), each head's
    blocks side by side)."""
    blocks = _blocks(spec)
    size = params["candidate"]["bias"].shape[-1]
    wx, bias = fuse(params, blocks, "kernel_x"), fuse(params, blocks, "bias")[None, :]
    heads = spec.heads
    per_head = spec.mixing and heads > 1
    if not spec.mixing:
        w = None
    elif heads == 1:  # a dense recurrence: one plain (H, k*H) matmul, as the LSTM's
        w = jnp.concatenate([params[b]["kernel_h"][0] for b in blocks], axis=-1)
    else:
        w = jnp.concatenate([params[b]["kernel_h"] for b in blocks], axis=-1)[None]

    def read(carry):
        h = carry[3]
        return h.reshape(h.shape[0], heads, 1, size // heads) if per_head else h

    def split(proj, rec, x):
        pre = split_blocks(proj, blocks, size)
        if not spec.mixing:
            return pre
        if not per_head:
            return {b: pre[b] + r for b, r in split_blocks(rec, blocks, size).items()}
        # (b, NH, 1, k*DH) -> block j of every head, laid out as h is: (b, NH * DH).
        per_block = rec.reshape(rec.shape[0], heads, len(blocks), size // heads)
        return {
            b: pre[b] + per_block[:, :, j].reshape(rec.shape[0], size) for j, b in enumerate(blocks)
        }

    return Fused(wx, bias, split, w, read)


# --------------------------------------------------------------------------------------------------
# The step.
# --------------------------------------------------------------------------------------------------


def _log_gate(kind: str, s: Array | None, like: Array) -> Array:
    """``log`` of a gate's value before stabilisation."""
    match kind:
        case "exponential":
            return s
        case "sigmoid":
            return jax.nn.log_sigmoid(s)
    return jnp.zeros_like(like)  # open: log 1


def _clamped_exp(x: Array) -> Array:
    """``min(exp(x), 1)`` whose derivative is ``exp``'s: the clamp only guards the first step
    (where ``c = n = 0`` make it irrelevant), and ``x = 0`` is where ``m`` took its value, so a
    clamp's derivative there (half, at the tie) would be wrong. The authors' CUDA kernel
    differentiates the same way."""
    return jnp.exp(x - jax.lax.stop_gradient(jnp.maximum(x, 0.0)))


def step(spec: SLSTMSpec, pre: dict, carry, consts: dict, probe: Array | None = None):
    """One step from the pre-activations (the live gates' and the candidate's)."""
    c, n, m, _ = carry
    z = jnp.tanh(pre["candidate"])
    log_i = _log_gate(spec.input, pre.get("input"), c)
    log_f = _log_gate(spec.forget, pre.get("forget"), c)
    o = jax.nn.sigmoid(pre["output"]) if spec.output == "learned" else None
    if spec.normaliser:
        new_m = jnp.where(n == 0.0, log_i, jnp.maximum(log_i, log_f + m))
        new_m = jax.lax.stop_gradient(new_m)  # as the authors' kernels: no gradient through m
        i = _clamped_exp(log_i - new_m)
        f = _clamped_exp(log_f + m - new_m)
        new_c = f * c + i * z
        new_n = f * n + i
        new_h = gated(o, new_c / new_n)
    else:
        i, f = jnp.exp(log_i), jnp.exp(log_f)
        new_c, new_n, new_m = f * c + i * z, n, m
        new_h = gated(o, jnp.tanh(new_c))
    if probe is not None:
        new_h = new_h + probe
    gates = {
        "input": None if spec.input == "open" else i,
        "forget": None if spec.forget == "open" else f,
        "output": o,
    }
    return (new_c, new_n, new_m, new_h), new_h, live(gates)


FAMILY = Family(
    spec=SLSTMSpec,
    declare=declare,
    breakdown=breakdown,
    zero_carry=zero_carry,
    hidden=lambda carry: carry[3],
    inputs=inputs,
    fused=fused,
    step=step,
    observe=lambda carry: {"cell": carry[0], "normaliser": carry[1]},
    check=_check,
    fused_backward=False,  # per-head recurrent kernels
)
