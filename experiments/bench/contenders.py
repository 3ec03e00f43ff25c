"""The contenders: one training step each, compiled and ready for ``measure.interleave``.

Every contender trains one recurrent layer on a fixed random batch: inputs (b, t, d), an MSE
loss on all outputs (b, t, H) against a fixed random target, Adam at 1e-3. JAX contenders are a
jitted ``train_step(state, x, y) -> (state, loss)`` with the state donated, as in
``gatelab.train``; PyTorch contenders are eager ``nn.LSTM`` / ``nn.GRU`` with
``torch.optim.Adam``.

Notation: ``b`` batch, ``t`` time, ``d`` input features, ``H`` hidden features, ``r`` runs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import gatelab
from experiments.bench.measure import TRAIN_FLOPS_FACTOR, Contender, rnn_forward_flops

__all__ = [
    "Shape",
    "throughput_names",
    "throughput_contender",
    "projection_contenders",
    "gates_contenders",
    "unroll_contenders",
    "runs_contenders",
]

Array = jax.Array
LEARNING_RATE = 1e-3

# The throughput table's contenders, in table order. `lstm:fused` is GatedRNN's hand-written
# backward pass (a design row); vanilla and NIG run at the largest hidden size only, where the
# issue's target compares them (and NFG) with vanilla.
GATELAB = ("lstm", "lstm:fused", "gru", "NFG", "CIFG", "mingru")
LARGEST_ONLY = ("vanilla", "NIG")
LIBRARIES = ("flax-lstm", "flax-gru", "torch-lstm", "torch-gru")


@dataclasses.dataclass(frozen=True)
class Shape:
    """The benchmark's problem: a batch of ``batch`` sequences of ``steps`` x ``features``.

    ``fast_compile`` (the quick form only) compiles with LLVM's optimisations off: 1.7x faster
    to compile, slower to run, which a smoke test does not mind.
    """

    batch: int
    steps: int
    features: int
    hidden: int
    fast_compile: bool = False

    @property
    def elements(self) -> int:
        return self.batch * self.steps


def _data(shape: Shape, runs: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fixed random inputs (b, t, d) and targets (b, t, H), with a leading (r,) for runs."""
    rng = np.random.default_rng(0)
    lead = () if runs is None else (runs,)
    x = rng.standard_normal((*lead, shape.batch, shape.steps, shape.features), np.float32)
    y = rng.standard_normal((*lead, shape.batch, shape.steps, shape.hidden), np.float32)
    return x, y


# ==================================================================================================
# JAX contenders.
# ==================================================================================================


def _train_step(forward: Callable[[Any, Array], Array], tx: optax.GradientTransformation):
    """One Adam step of the MSE of ``forward(params, x)`` against ``y``, for one run."""

    def step(state, x: Array, y: Array):
        params, opt_state = state
        loss, grads = jax.value_and_grad(lambda p: jnp.mean((forward(p, x) - y) ** 2))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    return step


def _compile(fn: Callable, shape: Shape, *args) -> tuple[Callable, float]:
    """``fn`` jitted with its first argument donated, compiled ahead; and the seconds that took
    (tracing, lowering and XLA compilation)."""
    options = {"xla_backend_optimization_level": 0} if shape.fast_compile else None
    start = time.perf_counter()
    compiled = jax.jit(fn, donate_argnums=0).lower(*args).compile(compiler_options=options)
    return compiled, time.perf_counter() - start


def _stepper(compiled: Callable, state: Any, x: Array, y: Array) -> Callable[[int], None]:
    """``run(n)``: ``n`` steps of ``compiled`` from ``state`` (carried across calls; donated),
    blocked on the last loss."""
    box = [state]

    def run(n: int) -> None:
        loss = None
        for _ in range(n):
            box[0], loss = compiled(box[0], x, y)
        jax.block_until_ready(loss)

    return run


def _jax_contender(
    name: str,
    init: Callable[[Array, Array], Any],
    forward: Callable[[Any, Array], Array],
    shape: Shape,
    flops: float,
    group: str,
    info: dict[str, Any] | None = None,
) -> Contender:
    """A single-run JAX contender from ``init(key, x) -> params`` and ``forward``."""
    x, y = (jnp.asarray(a) for a in _data(shape))
    tx = optax.adam(LEARNING_RATE)
    params = init(jax.random.key(0), x)
    state = (params, tx.init(params))
    compiled, compile_s = _compile(_train_step(forward, tx), shape, state, x, y)
    run = _stepper(compiled, state, x, y)
    return Contender(name, run, flops, shape.elements, compile_s, group, info or {})


def _flax_contender(
    name: str, module: nn.Module, shape: Shape, flops: float, group: str, pick: Callable
) -> Contender:
    """A contender of a Flax module; ``pick`` selects the (b, t, H) outputs of its result."""
    return _jax_contender(
        name,
        lambda key, x: module.init(key, x)["params"],
        lambda params, x: pick(module.apply({"params": params}, x)),
        shape,
        flops,
        group,
    )


def _gatelab(name: str, shape: Shape, group: str, **options) -> Contender:
    """``gatelab.GatedRNN(H, variant(name))`` with ``options`` (``unroll``, ``backward``)."""
    spec = gatelab.variant(name)
    module = gatelab.GatedRNN(shape.hidden, spec, **options)
    flops = TRAIN_FLOPS_FACTOR * rnn_forward_flops(
        "spec", shape.features, shape.hidden, shape.batch, shape.steps, spec
    )
    return _flax_contender(name, module, shape, flops, group, lambda out: out[1])


# ==================================================================================================
# PyTorch contenders.
# ==================================================================================================


def _torch_contender(name: str, kind: str, shape: Shape, group: str) -> Contender:
    """``nn.LSTM`` / ``nn.GRU`` (batch first), eager, with ``torch.optim.Adam``."""
    import torch

    torch.manual_seed(0)
    layer = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
    model = layer(shape.features, shape.hidden, batch_first=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    x, y = (torch.from_numpy(a) for a in _data(shape))

    def run(n: int) -> None:  # eager on the CPU: each step is done when its call returns
        for _ in range(n):
            optimizer.zero_grad(set_to_none=True)
            outputs, _ = model(x)
            loss = torch.nn.functional.mse_loss(outputs, y)
            loss.backward()
            optimizer.step()

    flops = TRAIN_FLOPS_FACTOR * rnn_forward_flops(
        kind, shape.features, shape.hidden, shape.batch, shape.steps
    )
    return Contender(name, run, flops, shape.elements, None, group)


# ==================================================================================================
# Section 1: the throughput table.
# ==================================================================================================


def throughput_names(largest: bool) -> list[str]:
    """The contenders of the throughput table at one hidden size, in table order."""
    return [*GATELAB, *(LARGEST_ONLY if largest else ()), *LIBRARIES]


def throughput_contender(name: str, shape: Shape) -> Contender:
    """The throughput table's contender ``name`` (see ``throughput_names``) at ``shape``."""
    group = "throughput"
    f, h, b, t = shape.features, shape.hidden, shape.batch, shape.steps
    match name:
        case "lstm:fused":
            contender = _gatelab("lstm", shape, group, backward="fused")
            contender.name = name
            return contender
        case "flax-lstm":
            flops = TRAIN_FLOPS_FACTOR * rnn_forward_flops("lstm", f, h, b, t)
            module = nn.RNN(nn.OptimizedLSTMCell(h))
            return _flax_contender(name, module, shape, flops, group, lambda out: out)
        case "flax-gru":
            flops = TRAIN_FLOPS_FACTOR * rnn_forward_flops("gru", f, h, b, t)
            module = nn.RNN(nn.GRUCell(h))
            return _flax_contender(name, module, shape, flops, group, lambda out: out)
        case "torch-lstm":
            return _torch_contender(name, "lstm", shape, group)
        case "torch-gru":
            return _torch_contender(name, "gru", shape, group)
    return _gatelab(name, shape, group)


# ==================================================================================================
# Section 5: design rows.
# ==================================================================================================


def _lstm_params(key: Array, features: int, hidden: int) -> dict[str, Array]:
    """A plain LSTM's fused parameters: ``wx`` (d, 4H), ``w`` (H, 4H), ``b`` (4H,)."""
    kx, kh = jax.random.split(key)
    return {
        "wx": jax.random.normal(kx, (features, 4 * hidden)) / np.sqrt(features),
        "w": jax.random.normal(kh, (hidden, 4 * hidden)) / np.sqrt(hidden),
        "b": jnp.zeros((4 * hidden,)),
    }


def lstm_scan(params: dict[str, Array], x: Array, hoisted: bool) -> Array:
    """A plain LSTM (gates i, f, g, o; forget bias 1) over x (b, t, d) -> (b, t, H).

    Inside the scan each step computes ``x_t wx + b + h w``; hoisted, ``x wx + b`` is one
    (t*b, d) x (d, 4H) matmul before the scan and each step adds ``h w``.
    """
    xs = jnp.swapaxes(x, 0, 1)  # (t, b, d)
    hidden = params["w"].shape[0]
    zeros = jnp.zeros((x.shape[0], hidden), x.dtype)

    def cell(carry, s):
        c, h = carry
        i, f, g, o = jnp.split(s, 4, axis=-1)
        c = jax.nn.sigmoid(f + 1.0) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), h

    if hoisted:
        projections = jnp.einsum("tbd,dk->tbk", xs, params["wx"]) + params["b"]
        _, ys = jax.lax.scan(
            lambda carry, p: cell(carry, p + carry[1] @ params["w"]), (zeros, zeros), projections
        )
    else:
        _, ys = jax.lax.scan(
            lambda carry, x_t: cell(
                carry, x_t @ params["wx"] + params["b"] + carry[1] @ params["w"]
            ),
            (zeros, zeros),
            xs,
        )
    return jnp.swapaxes(ys, 0, 1)


def projection_contenders(shape: Shape) -> list[Contender]:
    """The input projection inside the scan against hoisted out of it (standalone LSTM)."""
    flops = TRAIN_FLOPS_FACTOR * rnn_forward_flops(
        "lstm", shape.features, shape.hidden, shape.batch, shape.steps
    )
    return [
        _jax_contender(
            f"projection {where}",
            lambda key, x: _lstm_params(key, shape.features, shape.hidden),
            lambda params, x, hoisted=hoisted: lstm_scan(params, x, hoisted),
            shape,
            flops,
            "projection",
            {"form": where},
        )
        for where, hoisted in (("inside the scan", False), ("hoisted", True))
    ]


def gates_contenders(shape: Shape) -> list[Contender]:
    """One fused matmul for all gates (``GatedRNN``) against one per gate
    (``nn.RNN(GatedCell)``), for ``lstm``: the same parameters, values and gradients."""
    spec = gatelab.variant("lstm")
    flops = TRAIN_FLOPS_FACTOR * rnn_forward_flops(
        "spec", shape.features, shape.hidden, shape.batch, shape.steps, spec
    )
    fused = _gatelab("lstm", shape, "gates")
    fused.name, fused.info = "gates fused (GatedRNN)", {"form": "fused"}
    per_gate = _flax_contender(
        "gates per gate (nn.RNN(GatedCell))",
        nn.RNN(gatelab.GatedCell(shape.hidden, spec)),
        shape,
        flops,
        "gates",
        lambda out: out,
    )
    per_gate.info = {"form": "per gate"}
    return [fused, per_gate]


def unroll_contenders(shape: Shape, unrolls: tuple[int, ...] = (1, 2, 4)) -> list[Contender]:
    """``GatedRNN(unroll=u)`` for ``lstm``."""
    out = []
    for unroll in unrolls:
        contender = _gatelab("lstm", shape, "unroll", unroll=unroll)
        contender.name, contender.info = f"unroll {unroll}", {"form": f"unroll={unroll}"}
        out.append(contender)
    return out


def runs_contenders(shape: Shape, runs: int = 8) -> list[Contender]:
    """A group of ``runs`` seeds of ``lstm``, each on its own batch: ``jax.vmap`` over the runs,
    ``jax.lax.map`` over them, or ``runs`` separate calls of the one-run step."""
    spec = gatelab.variant("lstm")
    module = gatelab.GatedRNN(shape.hidden, spec)
    forward = lambda params, x: module.apply({"params": params}, x)[1]  # noqa: E731
    tx = optax.adam(LEARNING_RATE)
    step = _train_step(forward, tx)
    x, y = (jnp.asarray(a) for a in _data(shape, runs))
    keys = jax.random.split(jax.random.key(0), runs)
    params = jax.vmap(lambda key: module.init(key, x[0])["params"])(keys)
    stacked = (params, jax.vmap(tx.init)(params))
    flops = (
        runs
        * TRAIN_FLOPS_FACTOR
        * rnn_forward_flops("spec", shape.features, shape.hidden, shape.batch, shape.steps, spec)
    )
    elements = runs * shape.elements
    out = []

    def grouped(name: str, fn: Callable) -> Contender:
        state = jax.tree_util.tree_map(jnp.copy, stacked)
        compiled, compile_s = _compile(fn, shape, state, x, y)
        run = _stepper(compiled, state, x, y)
        return Contender(name, run, flops, elements, compile_s, "runs", {"form": name})

    out.append(grouped("vmap", jax.vmap(step)))
    out.append(
        grouped("lax.map", lambda s, xs, ys: jax.lax.map(lambda args: step(*args), (s, xs, ys)))
    )

    states = [jax.tree_util.tree_map(lambda a, i=i: a[i], stacked) for i in range(runs)]
    xs, ys = [x[i] for i in range(runs)], [y[i] for i in range(runs)]
    compiled, compile_s = _compile(step, shape, states[0], xs[0], ys[0])

    def sequential(n: int) -> None:
        losses = []
        for _ in range(n):
            for i in range(runs):
                states[i], loss = compiled(states[i], xs[i], ys[i])
                losses.append(loss)
        jax.block_until_ready(losses)

    name = f"{runs} sequential calls"
    out.append(Contender(name, sequential, flops, elements, compile_s, "runs", {"form": name}))
    return out
