"""The minimal family, whose gates see only ``x_t``: minGRU and minLSTM (Feng et al. 2024;
docs/reference.md, section 5).

Both are linear recurrences ``h_t = a_t * h_{t-1} + b_t`` with ``a, b`` functions of ``x`` alone:
the family gives its coefficients and ``gatelab.rnn.linear_scan`` runs them (sequentially, as an
associative scan, or on logarithms). Notation: ``b`` batch, ``d`` input features, ``H`` hidden
features. Carry: ``h`` (b, H).
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
    fuse,
    gate_value,
    live,
    split_blocks,
)
from gatelab.specs import (
    GateMode,
    SpecBase,
    validate_bool,
    validate_choice,
    validate_gates,
)

__all__ = ["MinSpec", "FAMILY"]

Array = jax.Array

MIN_ACTIVATIONS = ("g", "identity", "tanh")


@dataclasses.dataclass(frozen=True, repr=False)
class MinSpec(SpecBase):
    """The minimal family, whose gates see only ``x_t`` (Feng et al. 2024, arXiv:2410.01201).

    Equations (docs/reference.md, "Min family"; ``Lin`` an affine map of ``x_t`` alone)::

        family="gru"  (minGRU):   u_t = sigma(Lin(x_t));   h~_t = g(Lin(x_t))
                                  h_t = (1 - u_t) * h_{t-1} + u_t * h~_t
        family="lstm" (minLSTM):  f_t = sigma(Lin(x_t)), i_t = sigma(Lin(x_t)), h~_t = g(Lin(x_t))
                                  normalize: f'_t = f_t / (f_t + i_t), i'_t = i_t / (f_t + i_t)
                                  h_t = f'_t * h_{t-1} + i'_t * h~_t

    Both are ``h_t = a_t * h_{t-1} + b_t`` with ``a, b`` independent of ``h``, so a whole sequence
    is one ``jax.lax.associative_scan``. With ``log_space`` the scan runs on logarithms (the paper's
    Appendix B, after Heinsen): ``log h = a* + logcumsumexp(log b - a*)``, ``a* = cumsum(log a)``,
    which needs a positive candidate, ``g(x) = x + 0.5`` for ``x >= 0`` and ``sigma(x)`` otherwise.

    Attributes:
        family: ``"gru"`` (gate ``update``) or ``"lstm"`` (gates ``forget`` and ``input``).
        update: minGRU's ``z``, the fraction of the candidate written (family ``"gru"`` only).
        forget: minLSTM's ``f`` (family ``"lstm"`` only).
        input: minLSTM's ``i`` (family ``"lstm"`` only).
        normalize: minLSTM's time-independent normalisation ``f / (f + i)``, ``i / (f + i)``.
        log_space: run the scan on logarithms (requires ``candidate_activation="g"``).
        candidate_activation: ``"g"`` (positive, as in the paper's log-space form),
            ``"identity"`` (the paper's sequential form) or ``"tanh"``.
    """

    family: str = "gru"
    update: GateMode = "learned"
    forget: GateMode = "learned"
    input: GateMode = "learned"
    normalize: bool = True
    log_space: bool = True
    candidate_activation: str = "g"

    FAMILY_GATES = {"gru": ("update",), "lstm": ("forget", "input")}

    def __post_init__(self):
        validate_choice(self, "family", tuple(self.FAMILY_GATES))
        for gate in ("update", "forget", "input"):
            if gate not in self.gates and getattr(self, gate) != "learned":
                raise ValueError(
                    f"MinSpec.{gate} applies to family="
                    f"{'gru' if gate == 'update' else 'lstm'!r} only; with "
                    f"family={self.family!r} the gates are: {', '.join(self.gates)}"
                )
        validate_gates(self, self.gates)
        validate_bool(self, "normalize")
        validate_bool(self, "log_space")
        validate_choice(self, "candidate_activation", MIN_ACTIVATIONS)
        if self.log_space and self.candidate_activation != "g":
            raise ValueError(
                f"MinSpec.candidate_activation={self.candidate_activation!r} with log_space=True: "
                "the log-space scan needs a positive candidate; allowed: 'g' (or set "
                "log_space=False)"
            )

    @property
    def gates(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.FAMILY_GATES[self.family]


# --------------------------------------------------------------------------------------------------
# Parameters.
# --------------------------------------------------------------------------------------------------


def declare(spec: MinSpec, parts: Parts) -> dict:
    """Every learned gate and the candidate: ``kernel_x, bias`` (no recurrent kernels)."""
    params = {g: parts.part(g, recurrent=False) for g in spec.learned_gates}
    params["candidate"] = parts.part("candidate", recurrent=False)
    return params


def breakdown(spec: MinSpec, input_size: int, features: int) -> dict[str, int]:
    """``D*H + H`` per learned gate and for the candidate."""
    block = input_size * features + features
    return {**dict.fromkeys(spec.learned_gates, block), "candidate": block}


def fused(spec: MinSpec, params: dict) -> Fused:
    """Every block's input projection in one matmul; there is no recurrent matmul."""
    blocks = [*spec.learned_gates, "candidate"]
    size = params["candidate"]["bias"].shape[-1]
    return Fused(
        fuse(params, blocks, "kernel_x"),
        fuse(params, blocks, "bias")[None, :],
        lambda proj, rec, x: split_blocks(proj, blocks, size),
    )


def inputs(spec: MinSpec, params: dict, x: Array, h: Array) -> tuple[dict, dict]:
    """``Lin(x) = x W + b`` of every learned gate and of the candidate."""
    blocks = [*spec.learned_gates, "candidate"]
    return {p: x @ params[p]["kernel_x"] + params[p]["bias"] for p in blocks}, {}


# --------------------------------------------------------------------------------------------------
# The coefficients of h_t = a_t * h_{t-1} + b_t.
# --------------------------------------------------------------------------------------------------


def _log_sigmoid_pair(s: Array) -> tuple[Array, Array]:
    """``log sigma(s)`` and ``log(1 - sigma(s))``, stable."""
    return -jax.nn.softplus(-s), -jax.nn.softplus(s)


def _log_g(s: Array) -> Array:
    """``log g(s)`` with ``g(s) = s + 0.5`` for ``s >= 0`` and ``sigma(s)`` below."""
    return jnp.where(s >= 0, jnp.log(jnp.maximum(s, 0.0) + 0.5), -jax.nn.softplus(-s))


def _log_gate(spec: MinSpec, gate: str, pre: dict[str, Array]) -> Array | None:
    """``log`` of ``gate_value`` (``None`` for an open gate: log 1 = 0)."""
    kind, source = spec.mode(gate)
    match kind:
        case "learned":
            return _log_sigmoid_pair(pre[gate])[0]
        case "complement":
            return _log_sigmoid_pair(pre[source])[1]
        case "shared":
            return _log_sigmoid_pair(pre[source])[0]
    return None


def coefficients(spec: MinSpec, pre: dict[str, Array], consts: dict, log: bool = False):
    """``(a, b, gates)`` of the recurrence; with ``log`` (a log-space spec), ``log a`` and
    ``log b``. minGRU with an open update gate has no recurrence: ``a`` is ``None`` and
    ``h_t = b_t = h~_t`` (never in logarithms)."""
    k = pre["candidate"]
    gates = live({g: gate_value(spec, g, pre) for g in spec.gates})
    if spec.family == "gru" and spec.update == "open":
        return None, activation(spec.candidate_activation)(k), gates
    if log:
        if spec.family == "gru":
            log_a, log_u = _log_sigmoid_pair(pre["update"])[::-1]
            return log_a, log_u + _log_g(k), gates
        log_f = _log_gate(spec, "forget", pre)
        log_i = _log_gate(spec, "input", pre)
        log_f = jnp.zeros_like(k) if log_f is None else log_f
        log_i = jnp.zeros_like(k) if log_i is None else log_i
        if spec.normalize:
            total = jnp.logaddexp(log_f, log_i)
            log_f, log_i = log_f - total, log_i - total
        return log_f, log_i + _log_g(k), gates
    h_tilde = activation(spec.candidate_activation)(k)
    if spec.family == "gru":
        u = gates["update"]
        return 1.0 - u, u * h_tilde, gates
    f, i = gates.get("forget"), gates.get("input")
    f = jnp.ones_like(k) if f is None else f
    i = jnp.ones_like(k) if i is None else i
    if spec.normalize:
        f, i = f / (f + i), i / (f + i)
    return f, i * h_tilde, gates


FAMILY = Family(
    spec=MinSpec,
    declare=declare,
    breakdown=breakdown,
    inputs=inputs,
    fused=fused,
    coefficients=coefficients,
)
