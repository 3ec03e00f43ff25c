"""The IndRNN family: independently recurrent units, ``h = relu(W x + u * h + b)`` with a vector
``u`` (Li et al. 2018; docs/reference.md, section 6).

Each unit sees only its own past, so there is no recurrent matmul. Notation: ``b`` batch, ``d``
input features, ``H`` hidden features. Carry: ``h`` (b, H).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from gatelab.families.base import Family, Fused, Parts, activation, split_blocks
from gatelab.specs import SpecBase, validate_choice, validate_float

__all__ = ["IndRNNSpec", "FAMILY"]

Array = jax.Array

ACTIVATIONS = ("relu", "tanh")


@dataclasses.dataclass(frozen=True, repr=False)
class IndRNNSpec(SpecBase):
    """An IndRNN cell (Li et al. 2018) whose recurrence ablates.

    Equations::

        h_t = act(W x_t + u * h_{t-1} + b)        u (H,): each unit's own recurrent weight
        recurrence="open": u = 0 (no memory: a feed-forward layer applied at every step)

    With ``magnitude`` set, ``u`` starts uniform in ``[0, bound]`` and is projected back into
    ``[-bound, bound]`` after every optimisation step, ``bound = magnitude^(1 / tmax)``, the
    authors' constraint that keeps ``|u|^T`` (a gradient's factor over ``T`` steps) at most
    ``magnitude``; without it ``u`` starts uniform in ``[0, 1]`` (the bare cell's). The input
    kernel is initialised as the authors' ``kaiming_uniform(a=8)``, biases at 0.

    Attributes:
        recurrence: ``"learned"`` (``u``) or ``"open"`` (``u = 0``: removed).
        activation: ``"relu"`` (the paper's) or ``"tanh"``.
        magnitude: ``MAG`` of the constraint (the authors use 2 to 10), or ``None``: none.
        tmax: ``T`` of the constraint, the number of steps the gradient must cross.
    """

    recurrence: str = "learned"
    activation: str = "relu"
    magnitude: float | None = None
    tmax: float = 100.0

    GATES = ()  # no gate: u is a recurrent weight, and removing it is not a constant 1

    def __post_init__(self):
        validate_choice(self, "recurrence", ("learned", "open"))
        validate_choice(self, "activation", ACTIVATIONS)
        validate_float(self, "tmax")
        if self.tmax < 1:
            raise ValueError(f"IndRNNSpec.tmax={self.tmax!r} must be at least 1")
        if self.magnitude is not None:
            validate_float(self, "magnitude")
            if self.magnitude <= 0:
                raise ValueError(f"IndRNNSpec.magnitude={self.magnitude!r} must be positive")

    @property
    def bound(self) -> float:
        """The largest ``|u|``: ``magnitude^(1 / tmax)``, or 1 without a constraint."""
        return 1.0 if self.magnitude is None else self.magnitude ** (1.0 / self.tmax)


def declare(spec: IndRNNSpec, parts: Parts) -> dict:
    """``candidate``: ``kernel_x`` (D, H), ``bias``; ``recurrence/u`` (H,) unless open."""
    kernel = nn.initializers.variance_scaling(2.0 / 65.0, "fan_in", "uniform")  # a = 8
    params = {"candidate": parts.part("candidate", recurrent=False, kernel_init=kernel)}
    if spec.recurrence == "learned":
        bound = spec.bound
        uniform = lambda key, shape, dtype=jnp.float32: jax.random.uniform(  # noqa: E731
            key, shape, dtype, 0.0, bound
        )
        params["recurrence"] = {"u": parts.vector("recurrence", "u", uniform)}
    return params


def breakdown(spec: IndRNNSpec, input_size: int, features: int) -> dict[str, int]:
    """``D*H + H`` for the candidate and ``H`` for ``u``."""
    parts = {"candidate": input_size * features + features}
    if spec.recurrence == "learned":
        parts["recurrence"] = features
    return parts


def inputs(spec: IndRNNSpec, params: dict, x: Array, h: Array) -> tuple[dict, dict]:
    candidate = params["candidate"]
    pre = {"candidate": x @ candidate["kernel_x"] + candidate["bias"]}
    return pre, ({"u": params["recurrence"]["u"]} if "recurrence" in params else {})


def fused(spec: IndRNNSpec, params: dict) -> Fused:
    """The input projection is the only matmul; ``u * h`` is the step's."""
    candidate = params["candidate"]
    size = candidate["bias"].shape[-1]
    consts = {"u": params["recurrence"]["u"][None, :]} if "recurrence" in params else {}
    return Fused(
        candidate["kernel_x"],
        candidate["bias"][None, :],
        lambda proj, rec, x: split_blocks(proj, ["candidate"], size),
        consts=consts,
    )


def step(spec: IndRNNSpec, pre: dict, h: Array, consts: dict, probe: Array | None = None):
    s = pre["candidate"] + consts["u"] * h if "u" in consts else pre["candidate"]
    new_h = activation(spec.activation)(s)
    if probe is not None:
        new_h = new_h + probe
    return new_h, new_h, {}


def constrain(spec: IndRNNSpec, params: dict) -> dict:
    """``u`` back into ``[-bound, bound]`` after an update (with ``magnitude`` set)."""
    if spec.magnitude is None or "recurrence" not in params:
        return params
    u = jnp.clip(params["recurrence"]["u"], -spec.bound, spec.bound)
    return {**params, "recurrence": {"u": u}}


FAMILY = Family(
    spec=IndRNNSpec,
    declare=declare,
    breakdown=breakdown,
    inputs=inputs,
    fused=fused,
    step=step,
    constrain=constrain,
)
