"""The contenders: one training step each, compiled and ready for ``measure.interleave``.

Every contender trains one recurrent layer on a fixed random batch: inputs (b, t, d), the MSE of
all outputs (b, t, H) against a fixed random target, Adam at 1e-3. JAX contenders are a jitted
``train_step(state, x, y) -> (state, loss)`` with the state donated, as in ``gatelab.train``;
PyTorch contenders are eager ``nn.LSTM`` / ``nn.GRU`` with ``torch.optim.Adam``.

FLOPs are counted from ``gatelab.param_count``: a forward pass does a multiply-add per parameter
per sequence element (the matmul weights; biases and peepholes, under 2% of the parameters here,
are counted alike), a training step three times that (the backward pass as twice the forward).

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
from experiments.bench.measure import Contender
from gatelab import runtime

# The throughput table's contenders, in table order. `lstm:fused` is the hand-written backward
# pass; vanilla and NIG run at the largest hidden size only, where NIG and NFG meet vanilla.
GATELAB = ("lstm", "lstm:fused", "gru", "NFG", "CIFG", "mingru")
LARGEST_ONLY = ("vanilla", "NIG")
LIBRARIES = ("flax-lstm", "flax-gru", "torch-lstm", "torch-gru")
LEARNING_RATE = 1e-3


@dataclasses.dataclass(frozen=True)
class Shape:
    """The problem: ``batch`` sequences of ``steps`` x ``features``, ``hidden`` units.

    ``cheap``: compile with ``gatelab.runtime.CHEAP_COMPILE`` (the quick form: it compiles faster
    and runs slower, which a smoke test does not mind).
    """

    batch: int
    steps: int
    features: int
    hidden: int
    cheap: bool = False

    def flops(self, variant: str) -> float:
        """FLOPs of one training step of ``variant`` (see the module docstring)."""
        params = gatelab.param_count(gatelab.variant(variant), self.features, self.hidden)
        return 3 * 2.0 * self.batch * self.steps * params


def throughput_names(largest: bool) -> list[str]:
    """The throughput table's contenders at one hidden size, in table order."""
    return [*GATELAB, *(LARGEST_ONLY if largest else ()), *LIBRARIES]


def _data(shape: Shape, runs: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fixed random inputs (b, t, d) and targets (b, t, H), with a leading (r,) for runs."""
    rng = np.random.default_rng(0)
    lead = () if runs is None else (runs,)
    x = rng.standard_normal((*lead, shape.batch, shape.steps, shape.features), np.float32)
    y = rng.standard_normal((*lead, shape.batch, shape.steps, shape.hidden), np.float32)
    return x, y


def _train_step(module: nn.Module, pick: Callable):
    """One Adam step of the MSE of ``pick(module(x))`` against ``y``, for one run."""
    tx = optax.adam(LEARNING_RATE)

    def step(state, x, y):
        params, opt_state = state
        loss_fn = lambda p: jnp.mean((pick(module.apply({"params": p}, x)) - y) ** 2)
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    def init(key, x):
        params = module.init(key, x)["params"]
        return params, tx.init(params)

    return step, init


def _compiled(fn: Callable, shape: Shape, *args) -> tuple[Callable, float]:
    """``fn`` jitted with its state donated and compiled ahead; and the seconds that took."""
    start = time.perf_counter()
    options = runtime.CHEAP_COMPILE if shape.cheap else None
    compiled = jax.jit(fn, donate_argnums=0).lower(*args).compile(compiler_options=options)
    return compiled, time.perf_counter() - start


def _stepper(compiled: Callable, state: Any, x, y) -> Callable[[int], None]:
    """``run(n)``: ``n`` steps from the state (carried across calls), blocked on the last loss."""
    box = [state]

    def run(n: int) -> None:
        for _ in range(n):
            box[0], loss = compiled(box[0], x, y)
        jax.block_until_ready(loss)

    return run


def _module(name: str, module: nn.Module, shape: Shape, variant: str, pick=None) -> Contender:
    """A contender training the Flax ``module``; ``pick`` selects its (b, t, H) outputs."""
    step, init = _train_step(module, pick or (lambda out: out))
    x, y = (jnp.asarray(a) for a in _data(shape))
    state = init(jax.random.key(0), x)
    compiled, compile_s = _compiled(step, shape, state, x, y)
    run = _stepper(compiled, state, x, y)
    return Contender(name, run, shape.flops(variant), shape.batch * shape.steps, compile_s)


def _gatelab(name: str, shape: Shape, variant: str = "lstm", **options) -> Contender:
    """``gatelab.GatedRNN(H, variant(...), **options)``: its outputs are ``(carry, ys)``."""
    module = gatelab.GatedRNN(shape.hidden, gatelab.variant(variant), **options)
    return _module(name, module, shape, variant, lambda out: out[1])


def _torch(name: str, kind: str, shape: Shape) -> Contender:
    """``nn.LSTM`` / ``nn.GRU`` (batch first), eager, with ``torch.optim.Adam``."""
    import torch

    torch.manual_seed(0)
    layer = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
    model = layer(shape.features, shape.hidden, batch_first=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    x, y = (torch.from_numpy(a) for a in _data(shape))

    def run(n: int) -> None:  # eager on the CPU: a step is done when its call returns
        for _ in range(n):
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(model(x)[0], y).backward()
            optimizer.step()

    return Contender(name, run, shape.flops(kind), shape.batch * shape.steps)


# ==================================================================================================
# The throughput table.
# ==================================================================================================


def throughput(name: str, shape: Shape) -> Contender:
    """The throughput table's contender ``name`` (see ``throughput_names``)."""
    match name:
        case "lstm:fused":
            return _gatelab(name, shape, backward="fused")
        case "flax-lstm":
            return _module(name, nn.RNN(nn.OptimizedLSTMCell(shape.hidden)), shape, "lstm")
        case "flax-gru":
            return _module(name, nn.RNN(nn.GRUCell(shape.hidden)), shape, "gru")
        case "torch-lstm" | "torch-gru":
            return _torch(name, name.removeprefix("torch-"), shape)
    return _gatelab(name, shape, name)


# ==================================================================================================
# The design rows.
# ==================================================================================================


class PlainLSTM(nn.Module):
    """A plain LSTM (gates i, f, g, o; forget bias 1) over x (b, t, d) -> (b, t, H).

    Inside the scan each step computes ``x_t wx + b + h w``; hoisted, ``x wx + b`` is one
    (t*b, d) x (d, 4H) matmul before the scan and each step adds ``h w``.
    """

    features: int
    hoisted: bool

    @nn.compact
    def __call__(self, x):
        h4 = 4 * self.features
        wx = self.param("wx", nn.initializers.lecun_normal(), (x.shape[-1], h4))
        w = self.param("w", nn.initializers.lecun_normal(), (self.features, h4))
        b = self.param("b", nn.initializers.zeros, (h4,))
        zeros = jnp.zeros((x.shape[0], self.features), x.dtype)

        def step(carry, p):
            c, h = carry
            i, f, g, o = jnp.split(p + h @ w if self.hoisted else p @ wx + b + h @ w, 4, -1)
            c = jax.nn.sigmoid(f + 1.0) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (c, h), h

        xs = jnp.swapaxes(x, 0, 1)  # (t, b, d)
        _, ys = jax.lax.scan(step, (zeros, zeros), xs @ wx + b if self.hoisted else xs)
        return jnp.swapaxes(ys, 0, 1)


def projection(shape: Shape) -> list[Contender]:
    """The input projection inside the scan against hoisted out of it (a plain LSTM)."""
    return [
        _module(f"projection {where}", PlainLSTM(shape.hidden, hoisted), shape, "lstm")
        for where, hoisted in (("inside the scan", False), ("hoisted", True))
    ]


def gates(shape: Shape) -> list[Contender]:
    """One matmul for all gates (``GatedRNN``) against one per gate (``nn.RNN(GatedCell)``),
    for ``lstm``: the same parameters, values and gradients."""
    per_gate = nn.RNN(gatelab.GatedCell(shape.hidden, gatelab.variant("lstm")))
    return [
        _gatelab("gates fused (GatedRNN)", shape),
        _module("gates per gate (nn.RNN(GatedCell))", per_gate, shape, "lstm"),
    ]


def unroll(shape: Shape) -> list[Contender]:
    """``GatedRNN(unroll=u)`` for ``lstm``, u = 1, 2, 4."""
    return [_gatelab(f"unroll {u}", shape, unroll=u) for u in (1, 2, 4)]


REGULARISERS = {
    "none": {},
    "dropout (untied)": {"dropout_input": 0.25, "dropout_recurrent": 0.25},
    "dropout (tied)": {"dropout_input": 0.25, "dropout_recurrent": 0.25, "dropout_tied": True},
    "zoneout": {"zoneout_cell": 0.5, "zoneout_hidden": 0.05},
    "weight drop": {"weight_drop": 0.5},
    "layer norm": {"layer_norm": ("input", "recurrent", "cell")},
}


def regularisers(shape: Shape) -> list[Contender]:
    """``lstm`` with each regulariser of ``gatelab.families.regularise`` (training: masks drawn
    from a fresh key every step, as the runner does) against none."""
    out = []
    for label, fields in REGULARISERS.items():
        spec = gatelab.variant("lstm").replace(**fields)
        module = gatelab.GatedRNN(shape.hidden, spec)
        tx = optax.adam(LEARNING_RATE)

        def step(state, x, y, module=module, tx=tx):
            params, opt_state, count = state
            key = jax.random.fold_in(jax.random.key(1), count)
            rngs = {"dropout": key}

            def loss_fn(p):
                out = module.apply({"params": p}, x, deterministic=False, rngs=rngs)[1]
                return jnp.mean((out - y) ** 2)

            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state, count + 1), loss

        x, y = (jnp.asarray(a) for a in _data(shape))
        params = module.init(jax.random.key(0), x)["params"]
        state = (params, tx.init(params), jnp.array(0, jnp.int32))
        compiled, compile_s = _compiled(step, shape, state, x, y)
        run = _stepper(compiled, state, x, y)
        out.append(Contender(label, run, shape.flops("lstm"), shape.batch * shape.steps, compile_s))
    return out


def runs(shape: Shape, count: int = 8) -> list[Contender]:
    """A group of ``count`` seeds of ``lstm``, each on its own batch: ``jax.vmap`` over the
    runs, ``jax.lax.map`` over them, or ``count`` calls of the one-run step."""
    module = gatelab.GatedRNN(shape.hidden, gatelab.variant("lstm"))
    step, init = _train_step(module, lambda out: out[1])
    x, y = (jnp.asarray(a) for a in _data(shape, count))
    stacked = jax.vmap(init)(jax.random.split(jax.random.key(0), count), x)
    flops, elements = count * shape.flops("lstm"), count * shape.batch * shape.steps
    forms = {
        "vmap": jax.vmap(step),
        "lax.map": lambda s, xs, ys: jax.lax.map(lambda args: step(*args), (s, xs, ys)),
    }
    out = []
    for name, fn in forms.items():
        state = jax.tree_util.tree_map(jnp.copy, stacked)
        compiled, compile_s = _compiled(fn, shape, state, x, y)
        run = _stepper(compiled, state, x, y)
        out.append(Contender(name, run, flops, elements, compile_s))

    states = [jax.tree_util.tree_map(lambda a, i=i: a[i], stacked) for i in range(count)]
    xs, ys = list(x), list(y)  # sliced once, not in the timed loop
    compiled, compile_s = _compiled(step, shape, states[0], xs[0], ys[0])

    def sequential(n: int) -> None:
        losses = []
        for _ in range(n):
            for i in range(count):
                states[i], loss = compiled(states[i], xs[i], ys[i])
                losses.append(loss)
        jax.block_until_ready(losses)

    out.append(Contender(f"{count} sequential calls", sequential, flops, elements, compile_s))
    return out
