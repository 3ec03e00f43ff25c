"""GatedCell: one time step of any spec, written gate by gate. The readable reference.

Notation: ``b`` batch, ``d`` input features, ``h`` hidden features (``H``), ``sigma`` the logistic
sigmoid. ``GatedRNN`` (rnn.py) is the fast path over whole sequences and equals
``flax.linen.RNN(GatedCell(...))`` in values and gradients.

Parameters are named after what they belong to, the same for both (DESIGN.md):
``forget``, ``input``, ``output``, ``candidate`` (LSTM); ``update``, ``reset``, ``candidate`` (GRU
and the min family); each with ``kernel_x`` (D, H), ``kernel_h`` (H, H; not in the min family),
``bias`` (H,), ``peephole`` (H,) where peepholes are on, ``bias_h`` (H,) for the GRU candidate's
recurrent bias where the reset gate acts after the matmul; FGR adds ``gate_recurrence/kernel``
(G*H, G*H). A removed (``"open"``) or tied gate owns nothing and costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gatelab.specs import GRUSpec, LSTMSpec, MinSpec, Spec

__all__ = [
    "GatedCell",
    "activation",
    "broadcast_vectors",
    "declare_params",
    "gate_value",
    "gated",
]

Array = jax.Array
Params = dict[str, dict[str, Array]]
Initializer = Callable[..., Array]

default_kernel_init = nn.initializers.lecun_normal()
default_recurrent_init = nn.initializers.orthogonal()


# --------------------------------------------------------------------------------------------------
# Gate arithmetic shared with the fast path.
# --------------------------------------------------------------------------------------------------


def activation(name: str) -> Callable[[Array], Array]:
    """The candidate or cell activation named in a spec."""
    match name:
        case "tanh":
            return jnp.tanh
        case "identity":
            return lambda x: x
        case "g":  # minGRU's positive candidate: x + 0.5 for x >= 0, sigma(x) below.
            return lambda x: jnp.where(x >= 0, x + 0.5, jax.nn.sigmoid(x))
        case "sigmoid":
            return jax.nn.sigmoid
    raise ValueError(f"unknown activation {name!r}")


def gate_value(spec: Spec, gate: str, pre: dict[str, Array]) -> Array | None:
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


def broadcast_vectors(params: Params, ndim: int) -> Params:
    """Reshapes every (H,) parameter to (1, ..., 1, H) for operands of rank ``ndim``.

    Explicit, so that code runs under ``jax_numpy_rank_promotion="raise"``.
    """
    lead = (1,) * (ndim - 1)
    return jax.tree_util.tree_map(lambda v: v.reshape(lead + v.shape) if v.ndim == 1 else v, params)


def gated(gate: Array | None, x: Array) -> Array:
    """``gate * x``, where an open gate (``None``) is the constant 1 and costs nothing."""
    return x if gate is None else gate * x


# --------------------------------------------------------------------------------------------------
# Parameters: one submodule per part, so checkpoints read as what was ablated.
# --------------------------------------------------------------------------------------------------


class _Part(nn.Module):
    """The parameters of one gate or of the candidate (no computation)."""

    input_size: int
    features: int
    recurrent: bool = True
    peephole: bool = False
    recurrent_bias: bool = False
    bias_init: Initializer = nn.initializers.zeros_init()
    kernel_init: Initializer = default_kernel_init
    recurrent_kernel_init: Initializer = default_recurrent_init
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self) -> dict[str, Array]:
        d, h = self.input_size, self.features
        params = {"kernel_x": self.param("kernel_x", self.kernel_init, (d, h), self.param_dtype)}
        if self.recurrent:
            params["kernel_h"] = self.param(
                "kernel_h", self.recurrent_kernel_init, (h, h), self.param_dtype
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
        return params


def _constant(value) -> Initializer:
    return lambda key, shape, dtype=jnp.float32: jnp.broadcast_to(jnp.asarray(value, dtype), shape)


def _chrono_init(tmax: float, sign: float) -> Initializer:
    """``sign * log U[1, T_max - 1]`` (Tallec & Ollivier 2018)."""

    def init(key, shape, dtype=jnp.float32):
        return sign * jnp.log(jax.random.uniform(key, shape, dtype, 1.0, tmax - 1.0))

    return init


def declare_params(
    module: nn.Module,
    spec: Spec,
    input_size: int,
    features: int,
    kernel_init: Initializer = default_kernel_init,
    recurrent_kernel_init: Initializer = default_recurrent_init,
    param_dtype: Any = jnp.float32,
) -> Params:
    """Creates (or reads) the parameters of ``spec`` inside ``module``'s compact call.

    Initialisation: lecun-normal input kernels, orthogonal recurrent kernels, zero biases except
    the spec's forget bias (or chrono), zero peepholes, lecun-normal FGR kernel.

    Returns:
        ``{part: {name: array}}`` for the parts that exist.
    """
    part = lambda name, **kw: _Part(  # noqa: E731
        input_size,
        features,
        kernel_init=kernel_init,
        recurrent_kernel_init=recurrent_kernel_init,
        param_dtype=param_dtype,
        name=name,
        **kw,
    )()
    params: Params = {}
    match spec:
        case LSTMSpec():
            learned = spec.learned_gates
            # Forget first: with chrono, the input bias is its negation (one random draw).
            if "forget" in learned:
                init = (
                    _chrono_init(spec.chrono_tmax, 1.0)
                    if spec.chrono_tmax
                    else _constant(spec.forget_bias)
                )
                params["forget"] = part("forget", peephole=spec.peepholes, bias_init=init)
            if "input" in learned:
                if spec.forget == "1-input":
                    # f = 1 - sigma(b_i - beta) = sigma(beta - b_i) starts at sigma(forget_bias),
                    # or at sigma(log U[1, T_max - 1]) with chrono.
                    init = (
                        _chrono_init(spec.chrono_tmax, -1.0)
                        if spec.chrono_tmax
                        else _constant(-spec.forget_bias)
                    )
                    if spec.tie_shift:
                        base, shift = init, spec.tie_shift
                        init = lambda key, shape, dtype=jnp.float32: base(key, shape, dtype) + shift  # noqa: E731
                elif spec.chrono_tmax and "forget" in learned:
                    init = _constant(-params["forget"]["bias"])
                else:
                    init = nn.initializers.zeros_init()
                params["input"] = part("input", peephole=spec.peepholes, bias_init=init)
            if "output" in learned:
                params["output"] = part("output", peephole=spec.peepholes)
            params["candidate"] = part("candidate")
            if spec.gate_recurrence and learned:
                size = len(learned) * features
                params["gate_recurrence"] = {
                    "kernel": _FGR(size, kernel_init, param_dtype, name="gate_recurrence")()
                }
            # Canonical order for readers of the tree: input, forget, output, candidate.
            order = [*spec.gates, "candidate", "gate_recurrence"]
            return {k: params[k] for k in order if k in params}
        case GRUSpec():
            biases = {"update": spec.update_bias, "reset": spec.reset_bias}
            for gate in spec.learned_gates:
                params[gate] = part(gate, bias_init=_constant(biases[gate]))
            params["candidate"] = part("candidate", recurrent_bias=spec.recurrent_candidate_bias)
            return params
        case MinSpec():
            for gate in spec.learned_gates:
                params[gate] = part(gate, recurrent=False)
            params["candidate"] = part("candidate", recurrent=False)
            return params
    raise TypeError(f"not a spec: {spec!r}")


class _FGR(nn.Module):
    size: int
    kernel_init: Initializer
    param_dtype: Any

    @nn.compact
    def __call__(self) -> Array:
        return self.param("kernel", self.kernel_init, (self.size, self.size), self.param_dtype)


# --------------------------------------------------------------------------------------------------
# The cell.
# --------------------------------------------------------------------------------------------------


class GatedCell(nn.RNNCellBase):
    """One step of an LSTM, GRU or min-family cell whose gates follow ``spec``.

    A ``flax.linen`` cell with Flax's interface: ``__call__(carry, x) -> (carry, y)``,
    ``initialize_carry(rng, input_shape)``, ``num_feature_axes``; ``flax.linen.RNN`` and
    ``Bidirectional`` take it unchanged. Carries: LSTM ``(c, h)`` as in Flax, ``(c, h, a)`` with
    FGR (``a`` the previous learned-gate activations, (..., G*H)); GRU and min family ``h``.

    LSTM (``LSTMSpec``; Greff et al. 2017, REFERENCE.md 1.1-1.2)::

        z = g(x W_z + h U_z + b_z)
        i = gate(input),  s_i = x W_i + h U_i + b_i [+ p_i * c] [+ a R_i]
        f = gate(forget), s_f = x W_f + h U_f + b_f [+ p_f * c] [+ a R_f]
        c' = f * c + i * z
        o = gate(output), s_o = x W_o + h U_o + b_o [+ p_o * c'] [+ a R_o]
        h' = o * act(c')

    GRU (``GRUSpec``; Cho et al. 2014, with ``u`` the fraction written)::

        u = gate(update), r = gate(reset)
        h~ = g(x W_c + b_c + r * (h U_c + b_ch))     reset_after=True
        h~ = g(x W_c + (r * h) U_c + b_c)            reset_after=False
        h' = (1 - u) * h + u * h~

    Min family (``MinSpec``; Feng et al. 2024): the same with gates and candidate of ``x`` only,
    ``h' = (1 - u) * h + u * h~`` (minGRU) or ``h' = f' * h + i' * h~`` (minLSTM).

    ``gate(.)`` is sigma(s) for a learned gate, 1 for an open one (skipped), ``1 - sigma(s_src -
    tie_shift)`` for ``"1-src"``, and the source's activation for ``"src"``. With the ``"gates"``
    collection mutable, the live gates' activations are sown there as one dict,
    ``gates/activations: {gate: (..., H)}`` (and the LSTM cell state as ``state/cell``).

    Attributes:
        features: hidden size ``H``.
        spec: the cell's spec (``LSTMSpec``, ``GRUSpec`` or ``MinSpec``).
    """

    features: int
    spec: Spec = LSTMSpec()
    kernel_init: Initializer = default_kernel_init
    recurrent_kernel_init: Initializer = default_recurrent_init
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, carry, inputs: Array):
        """One step: ``carry`` from ``initialize_carry``, ``inputs`` (..., D)."""
        params = declare_params(
            self,
            self.spec,
            inputs.shape[-1],
            self.features,
            self.kernel_init,
            self.recurrent_kernel_init,
            self.param_dtype,
        )
        params = broadcast_vectors(params, inputs.ndim)
        match self.spec:
            case LSTMSpec():
                return self._lstm(params, carry, inputs)
            case GRUSpec():
                return self._gru(params, carry, inputs)
            case MinSpec():
                return self._min(params, carry, inputs)
        raise TypeError(f"not a spec: {self.spec!r}")

    def _sow(self, values: dict[str, Array | None]) -> None:
        # One dict: a sow named "forget" would clash with the submodule of that name.
        live = {gate: value for gate, value in values.items() if value is not None}
        if live:
            self.sow("gates", "activations", live)

    def _lstm(self, params: Params, carry, x: Array):
        spec = self.spec
        learned = spec.learned_gates
        if spec.gate_recurrence:
            c, h, a = carry
        else:
            (c, h), a = carry, None
        size = self.features

        def preact(gate: str, cell: Array) -> Array:
            p = params[gate]
            s = x @ p["kernel_x"] + h @ p["kernel_h"] + p["bias"]
            if spec.peepholes:
                s = s + p["peephole"] * cell
            if a is not None:
                k = learned.index(gate)
                s = s + a @ params["gate_recurrence"]["kernel"][:, k * size : (k + 1) * size]
            return s

        # Input and forget gates see c_{t-1}; with peepholes the output gate waits for c_t.
        late = ("output",) if spec.peepholes else ()
        pre = {g: preact(g, c) for g in learned if g not in late}
        cand = params["candidate"]
        z = activation(spec.candidate_activation)(
            x @ cand["kernel_x"] + h @ cand["kernel_h"] + cand["bias"]
        )
        i = gate_value(spec, "input", pre)
        f = gate_value(spec, "forget", pre)
        new_c = gated(f, c) + gated(i, z)
        for gate in late:
            if gate in learned:
                pre[gate] = preact(gate, new_c)
        o = gate_value(spec, "output", pre)
        new_h = gated(o, activation(spec.cell_activation)(new_c))
        self._sow({"input": i, "forget": f, "output": o})
        self.sow("state", "cell", new_c)
        if a is None:
            return (new_c, new_h), new_h
        new_a = jnp.concatenate([jax.nn.sigmoid(pre[g]) for g in learned], axis=-1)
        return (new_c, new_h, new_a), new_h

    def _gru(self, params: Params, h: Array, x: Array):
        spec = self.spec
        pre = {
            g: x @ params[g]["kernel_x"] + h @ params[g]["kernel_h"] + params[g]["bias"]
            for g in spec.learned_gates
        }
        u = gate_value(spec, "update", pre)
        r = gate_value(spec, "reset", pre)
        cand = params["candidate"]
        if spec.reset_after:
            recurrent = h @ cand["kernel_h"]
            if spec.recurrent_candidate_bias:
                recurrent = recurrent + cand["bias_h"]
            s = x @ cand["kernel_x"] + cand["bias"] + gated(r, recurrent)
        else:
            s = x @ cand["kernel_x"] + gated(r, h) @ cand["kernel_h"] + cand["bias"]
        h_tilde = activation(spec.candidate_activation)(s)
        new_h = h_tilde if u is None else (1.0 - u) * h + u * h_tilde
        self._sow({"update": u, "reset": r})
        return new_h, new_h

    def _min(self, params: Params, h: Array, x: Array):
        spec = self.spec
        pre = {g: x @ params[g]["kernel_x"] + params[g]["bias"] for g in spec.learned_gates}
        cand = params["candidate"]
        h_tilde = activation(spec.candidate_activation)(x @ cand["kernel_x"] + cand["bias"])
        if spec.family == "gru":
            u = gate_value(spec, "update", pre)
            new_h = h_tilde if u is None else (1.0 - u) * h + u * h_tilde
            self._sow({"update": u})
            return new_h, new_h
        f = gate_value(spec, "forget", pre)
        i = gate_value(spec, "input", pre)
        self._sow({"forget": f, "input": i})
        if spec.normalize:
            total = (1.0 if f is None else f) + (1.0 if i is None else i)
            f = (1.0 if f is None else f) / total
            i = (1.0 if i is None else i) / total
        new_h = gated(f, h) + gated(i, h_tilde)
        return new_h, new_h

    @nn.nowrap
    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]):
        """Zeros: ``(c, h)`` (LSTM), ``(c, h, a)`` (FGR) or ``h`` for ``input_shape`` (..., D)."""
        shape = tuple(input_shape[:-1]) + (self.features,)
        zeros = jnp.zeros(shape, self.param_dtype)
        match self.spec:
            case LSTMSpec(gate_recurrence=True):
                size = len(self.spec.learned_gates) * self.features
                gates = jnp.zeros(tuple(input_shape[:-1]) + (size,), self.param_dtype)
                return zeros, zeros, gates
            case LSTMSpec():
                return zeros, zeros
        return zeros

    @property
    def num_feature_axes(self) -> int:
        return 1
