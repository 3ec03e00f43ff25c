"""GatedRNN: a whole sequence through a gated cell, fast.

Notation: ``b`` batch, ``t`` time, ``d`` input features, ``h`` hidden features (``H``), ``k`` the
number of live parameter blocks (learned gates plus the candidate), ``G`` the learned gates.

``GatedRNN`` owns exactly the parameters of ``GatedCell`` (same names, same shapes, same
initialisation) and equals ``flax.linen.RNN(GatedCell(...))`` in values and gradients; inside it
concatenates the live blocks so that each time step does one input matmul ``(b, d) x (d, k*H)``
and one recurrent matmul ``(b, H) x (H, k*H)`` (and a hand-written backward pass on request). A
removed or tied gate is no block: it costs no FLOPs. The min family, whose gates see only ``x``,
runs as one ``jax.lax.associative_scan`` on accelerators.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.recurrent import flip_sequences

from gatelab.cells import (
    Initializer,
    Params,
    activation,
    declare_params,
    default_kernel_init,
    default_recurrent_init,
    gate_value,
    gated,
)
from gatelab.specs import GRUSpec, LSTMSpec, MinSpec, Spec

__all__ = ["GatedRNN", "fused_recurrence", "lstm_sequence", "gru_sequence", "min_sequence"]

Array = jax.Array


def _fuse(params: Params, blocks: list[str], name: str) -> Array:
    """The named parameter of every block, concatenated on the last axis."""
    return jnp.concatenate([params[b][name] for b in blocks], axis=-1)


def _project(params: Params, blocks: list[str], x: Array) -> Array:
    """All blocks' input projections at once, ``x W_x + b``: (t, b, d) -> (t, b, k*H)."""
    w_x = _fuse(params, blocks, "kernel_x")
    bias = _fuse(params, blocks, "bias").reshape(1, 1, -1)
    return jnp.einsum("tbd,dk->tbk", x, w_x) + bias


def _split(s: Array, names: list[str], size: int) -> dict[str, Array]:
    """The blocks of ``s`` (..., k*H) by name. ``jnp.split``, not slicing: its transpose is one
    concatenate, where slices transpose to a sum of zero-padded blocks, which XLA's CPU backend
    evaluates per element of the whole width (the GRU trained 1.3x slower at H=128)."""
    if not names:
        return {}
    assert s.shape[-1] == len(names) * size, (s.shape, names, size)
    return dict(zip(names, jnp.split(s, len(names), axis=-1), strict=True))


def _masked(mask: Array | None, new, old):
    if mask is None:
        return new
    return jax.tree_util.tree_map(lambda n, o: jnp.where(mask, n, o), new, old)


# --------------------------------------------------------------------------------------------------
# The recurrence, and a hand-written backward pass for it.
# --------------------------------------------------------------------------------------------------
#
# Every LSTM- and GRU-family step is
#     p_t = x_t @ wx + b;  carry_t, y_t = cell(p_t, read(carry_{t-1}) @ w, carry_{t-1}, m_t, k)
# two matmuls (all live blocks fused) and elementwise work. The input projection stays inside the
# scan: hoisting it out as one (t*b, d) x (d, k*H) matmul measured 1.3-1.6x slower on the CPU
# (experiments/bench, "projection"). Autodiff through `lax.scan` accumulates dw = sum_t
# read_t^T ds_t with one small matmul per step inside the backward loop; the hand-written
# backward does only ds_t w^T per step (and the cell's elementwise vjp), and the weight and input
# gradients afterwards as single large matmuls over all steps, as cuDNN does.


def _run_cell(cell, read, params, x, carry, mask, consts, unroll):
    """The forward scan; also returns each step's projection, recurrent term and previous carry."""
    wx, b, w = params

    def step(carry, inputs):
        x_t, m = inputs
        proj = x_t @ wx + b
        rec = read(carry) @ w
        new_carry, y, _ = cell(proj, rec, carry, m, consts)
        return new_carry, (y, proj, rec, carry)

    final, (ys, projs, recs, prevs) = jax.lax.scan(step, carry, (x, mask), unroll=unroll)
    return (final, ys), (projs, recs, prevs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 7))
def fused_recurrence(cell, read, params, x, carry, mask, consts, unroll=1):
    """``(carry_T, ys)`` of the recurrence above over time-major ``x`` (t, b, d), with
    ``params = (wx, b, w)``, differentiated by the hand-written backward pass.

    ``cell`` and ``read`` must be pure functions of their arguments (no captured arrays).
    """
    return _run_cell(cell, read, params, x, carry, mask, consts, unroll)[0]


def _fused_forward(cell, read, params, x, carry, mask, consts, unroll):
    out, saved = _run_cell(cell, read, params, x, carry, mask, consts, unroll)
    return out, (params, x, mask, consts, saved)


def _fused_backward(cell, read, unroll, residuals, cotangents):
    (wx, b, w), x, mask, consts, (projs, recs, prevs) = residuals
    d_final, d_ys = cotangents
    add = lambda a, c: jax.tree_util.tree_map(jnp.add, a, c)  # noqa: E731

    def step(carry, inputs):
        d_carry, d_consts = carry
        proj, rec, prev, m, dy = inputs
        _, cell_vjp = jax.vjp(lambda p, r, c, k: cell(p, r, c, m, k)[:2], proj, rec, prev, consts)
        d_proj, d_rec, d_prev, d_k = cell_vjp((d_carry, dy))
        _, read_vjp = jax.vjp(read, prev)
        (d_read,) = read_vjp(d_rec @ w.T)  # the one matmul per step
        return (add(d_prev, d_read), add(d_consts, d_k)), (d_proj, d_rec)

    zeros = jax.tree_util.tree_map(jnp.zeros_like, consts)
    (d_carry, d_consts), (d_projs, d_recs) = jax.lax.scan(
        step, (d_final, zeros), (projs, recs, prevs, mask, d_ys), reverse=True, unroll=unroll
    )
    # The weight and input gradients: one large matmul each, over all steps.
    d_w = jnp.einsum("tbi,tbk->ik", jax.vmap(read)(prevs), d_recs)
    d_wx = jnp.einsum("tbd,tbk->dk", x, d_projs)
    d_b = jnp.sum(d_projs, axis=(0, 1)).reshape(b.shape)
    d_x = jnp.einsum("tbk,dk->tbd", d_projs, wx)
    return (d_wx, d_b, d_w), d_x, d_carry, None, d_consts


fused_recurrence.defvjp(_fused_forward, _fused_backward)


def _scan_cells(cell, read, params, x, carry, mask, consts, unroll, capture, fused, probe=None):
    """Runs a cell over time: the fused backward pass, or plain autodiff (and gate capture).

    ``probe`` (t, b, H), if given, is added to the hidden state at every step: the gradient of
    a loss with respect to a zero probe is its gradient with respect to each step's h_t.
    """
    if fused and not capture and probe is None:
        return fused_recurrence(cell, read, params, x, carry, mask, consts, unroll)
    wx, b, w = params

    def step(carry, inputs):
        x_t, m, p = inputs
        new_carry, y, extras = cell(x_t @ wx + b, read(carry) @ w, carry, m, consts, p)
        return new_carry, ((y, extras) if capture else y)

    final, ys = jax.lax.scan(step, carry, (x, mask, probe), unroll=unroll)
    if not capture:
        return final, ys
    ys, extras = ys
    return final, ys, extras


def _input_params(params: Params, blocks: list[str]) -> tuple[Array, Array]:
    """The fused input kernel (d, k*H) and bias (1, k*H) of the live blocks."""
    return _fuse(params, blocks, "kernel_x"), _fuse(params, blocks, "bias")[None, :]


def _finish(new_carry, new_h, carry, m):
    """Holds the carry and zeroes the output past a sequence's end."""
    new_carry = _masked(m, new_carry, carry)
    y = new_h if m is None else jnp.where(m, new_h, 0.0)
    return new_carry, y


def _live(values: dict[str, Array | None]) -> dict[str, Array]:
    return {g: v for g, v in values.items() if v is not None}


# --------------------------------------------------------------------------------------------------
# LSTM family.
# --------------------------------------------------------------------------------------------------


def lstm_sequence(
    spec: LSTMSpec,
    params: Params,
    x: Array,
    carry: tuple,
    mask: Array | None = None,
    unroll: int = 1,
    capture: bool = False,
    fused: bool = False,
    probe: Array | None = None,
):
    """Runs an LSTM spec over time-major inputs.

    Args:
        spec: the cell's spec.
        params: the parameters of ``declare_params``.
        x: inputs (t, b, d).
        carry: ``(c, h)`` or, with FGR, ``(c, h, a)``, each (b, ...).
        mask: optional (t, b, 1) booleans; past a sequence's end the carry is held and y is zero.
        unroll: time steps per scan iteration.
        capture: also return the live gates' activations and the cell state, each (t, b, H).
        fused: use the hand-written backward pass (``fused_recurrence``) instead of autodiff.
        probe: optional (t, b, H) added to h_t at every step (see ``_scan_cells``).

    Returns:
        ``(carry, ys)`` with ``ys`` (t, b, H), or ``(carry, ys, captured)`` with ``capture``.
    """
    size = carry[0].shape[-1]
    learned = list(spec.learned_gates)
    blocks = [*learned, "candidate"]
    wx, b = _input_params(params, blocks)
    w = _fuse(params, blocks, "kernel_h")
    fgr = spec.gate_recurrence and bool(learned)
    if fgr:
        # FGR: the previous gate activations a join h as recurrent input; their kernel R feeds
        # only the gate columns, so [h, a] @ [[W_h], [R, 0]] is still one matmul.
        r = params["gate_recurrence"]["kernel"]
        w = jnp.concatenate([w, jnp.pad(r, ((0, 0), (0, size)))], axis=0)
    consts = {g: params[g]["peephole"][None, :] for g in learned if spec.peepholes}  # (1, H) each
    late = ("output",) if spec.peepholes else ()
    g_act = activation(spec.candidate_activation)
    c_act = activation(spec.cell_activation)

    def read(carry):
        return jnp.concatenate([carry[1], carry[2]], -1) if fgr else carry[1]

    def cell(proj, rec, carry, m, peepholes, probe=None):
        c = carry[0]
        parts = _split(proj + rec, blocks, size)
        pre = {g: parts[g] for g in learned}
        for g in peepholes:
            if g not in late:
                pre[g] = pre[g] + peepholes[g] * c
        z = g_act(parts["candidate"])
        early = {g: v for g, v in pre.items() if g not in late}
        i = gate_value(spec, "input", early)
        f = gate_value(spec, "forget", early)
        new_c = gated(f, c) + gated(i, z)
        if "output" in peepholes:
            pre["output"] = pre["output"] + peepholes["output"] * new_c
        o = gate_value(spec, "output", pre)
        new_h = gated(o, c_act(new_c))
        if probe is not None:
            new_h = new_h + probe
        new_carry = (new_c, new_h)
        if len(carry) == 3:
            gates = [jax.nn.sigmoid(pre[g]) for g in learned]
            new_carry += (jnp.concatenate(gates, -1) if gates else carry[2],)
        new_carry, y = _finish(new_carry, new_h, carry, m)
        return new_carry, y, (_live({"input": i, "forget": f, "output": o}), new_c)

    out = _scan_cells(
        cell, read, (wx, b, w), x, tuple(carry), mask, consts, unroll, capture, fused, probe
    )
    if not capture:
        return out
    carry, ys, (gates, cells) = out
    return carry, ys, {"gates": gates, "state": {"cell": cells}}


# --------------------------------------------------------------------------------------------------
# GRU family.
# --------------------------------------------------------------------------------------------------


def gru_sequence(
    spec: GRUSpec,
    params: Params,
    x: Array,
    h: Array,
    mask: Array | None = None,
    unroll: int = 1,
    capture: bool = False,
    fused: bool = False,
    probe: Array | None = None,
):
    """Runs a GRU spec over time-major inputs (arguments as ``lstm_sequence``; carry ``h``).

    With the reset gate after the matmul, gates and candidate share one recurrent matmul; before
    it, the candidate's recurrent matmul ``(r * h) U_c`` waits for ``r`` and stays in the cell.
    """
    size = h.shape[-1]
    learned = list(spec.learned_gates)
    blocks = [*learned, "candidate"]
    wx, b = _input_params(params, blocks)
    recurrent_blocks = blocks if spec.reset_after else learned
    if recurrent_blocks:
        w = _fuse(params, recurrent_blocks, "kernel_h")
    else:  # MGU-like specs with nothing before the candidate: an empty matmul
        w = jnp.zeros((size, 0), h.dtype)
    consts = {}
    if "bias_h" in params["candidate"]:
        consts["bias_h"] = params["candidate"]["bias_h"][None, :]
    if not spec.reset_after:
        consts["kernel_c"] = params["candidate"]["kernel_h"]
    g_act = activation(spec.candidate_activation)

    def cell(proj, rec, h, m, consts, probe=None):
        parts = _split(proj, blocks, size)
        rec = _split(rec, recurrent_blocks, size)
        pre = {g: parts[g] + rec[g] for g in learned}
        u = gate_value(spec, "update", pre)
        r = gate_value(spec, "reset", pre)
        if spec.reset_after:
            recurrent = rec["candidate"]
            if "bias_h" in consts:
                recurrent = recurrent + consts["bias_h"]
            s = parts["candidate"] + gated(r, recurrent)
        else:
            s = parts["candidate"] + gated(r, h) @ consts["kernel_c"]
        h_tilde = g_act(s)
        new_h = h_tilde if u is None else (1.0 - u) * h + u * h_tilde
        if probe is not None:
            new_h = new_h + probe
        new_h, y = _finish(new_h, new_h, h, m)
        return new_h, y, _live({"update": u, "reset": r})

    out = _scan_cells(
        cell, lambda h: h, (wx, b, w), x, h, mask, consts, unroll, capture, fused, probe
    )
    if not capture:
        return out
    h, ys, gates = out
    return h, ys, {"gates": gates}


# --------------------------------------------------------------------------------------------------
# Min family: h_t = a_t * h_{t-1} + b_t with a, b of x only.
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


def min_sequence(
    spec: MinSpec,
    params: Params,
    x: Array,
    h: Array,
    capture: bool = False,
    scan: str = "associative",
    probe: Array | None = None,
):
    """Runs a min-family spec over time-major inputs.

    With ``scan="associative"`` the whole sequence is one ``jax.lax.associative_scan`` (the
    paper's parallel form: O(log t) depth, the fast choice on accelerators). With
    ``scan="sequential"`` the same recurrence runs as an elementwise ``lax.scan``: on the CPU it
    compiles 25-35x faster and runs no slower at the sizes measured in ``experiments/bench``.

    The recurrence ``h_t = a_t * h_{t-1} + b_t`` is linear in ``h_0``, so
    ``h_t = A_t * h_0 + H_t`` with ``A_t = prod_{s<=t} a_s`` and ``H_t`` the scan from zero; in log
    space ``log H_t = a*_t + logcumsumexp(log b - a*)_t`` with ``a* = cumsum(log a)`` (Feng et al.
    2024, Appendix B), computed with ``jax.lax.associative_scan(jnp.logaddexp, ...)``.

    Args:
        spec: the min-family spec.
        params: the parameters of ``declare_params``.
        x: inputs (t, b, d).
        h: initial state (b, H).
        capture: also return the gates' activations, each (t, b, H).
        scan: ``"associative"`` or ``"sequential"`` (above).
        probe: optional (t, b, H) added to h_t at every step (linear space, so the scan runs
            sequentially then).

    Returns:
        ``(ys, captured)``: every step's state (t, b, H) and the captured gates (or ``None``).
        The caller selects the final carry (the min family is causal, so padding never leaks).
    """
    learned = list(spec.learned_gates)
    blocks = [*learned, "candidate"]
    size = h.shape[-1]
    parts = _split(_project(params, blocks, x), blocks, size)
    pre = {g: parts[g] for g in learned}
    k = parts["candidate"]
    captured = None
    if capture:
        values = {g: gate_value(spec, g, pre) for g in spec.gates}
        captured = {"gates": {g: v for g, v in values.items() if v is not None}}

    if spec.family == "gru" and spec.update == "open":
        ys = activation(spec.candidate_activation)(k)  # h_t = h~_t
        return (ys if probe is None else ys + probe), captured
    if probe is not None:
        scan = "sequential"
    if spec.log_space and scan == "associative":
        if spec.family == "gru":
            log_a, log_u = _log_sigmoid_pair(pre["update"])[::-1]
            log_b = log_u + _log_g(k)
        else:
            log_f = _log_gate(spec, "forget", pre)
            log_i = _log_gate(spec, "input", pre)
            log_f = jnp.zeros_like(k) if log_f is None else log_f
            log_i = jnp.zeros_like(k) if log_i is None else log_i
            if spec.normalize:
                total = jnp.logaddexp(log_f, log_i)
                log_f, log_i = log_f - total, log_i - total
            log_a, log_b = log_f, log_i + _log_g(k)
        a_star = jnp.cumsum(log_a, axis=0)
        from_zero = a_star + jax.lax.associative_scan(jnp.logaddexp, log_b - a_star, axis=0)
        ys = jnp.exp(a_star) * h[None] + jnp.exp(from_zero)
        return ys, captured

    h_tilde = activation(spec.candidate_activation)(k)
    if spec.family == "gru":
        u = gate_value(spec, "update", pre)
        a, b = 1.0 - u, u * h_tilde
    else:
        f = gate_value(spec, "forget", pre)
        i = gate_value(spec, "input", pre)
        f = jnp.ones_like(k) if f is None else f
        i = jnp.ones_like(k) if i is None else i
        if spec.normalize:
            f, i = f / (f + i), i / (f + i)
        a, b = f, i * h_tilde
    if probe is not None:
        b = b + probe

    if scan == "sequential":

        def step(h, ab):
            h = ab[0] * h + ab[1]
            return h, h

        return jax.lax.scan(step, h, (a, b))[1], captured

    def combine(first, second):
        a1, b1 = first
        a2, b2 = second
        return a1 * a2, a2 * b1 + b2

    a_all, b_all = jax.lax.associative_scan(combine, (a, b), axis=0)
    return a_all * h[None] + b_all, captured


# --------------------------------------------------------------------------------------------------
# The layer.
# --------------------------------------------------------------------------------------------------


class GatedRNN(nn.Module):
    """A whole sequence through the cell of ``spec``: ``(b, t, d) -> (carry, (b, t, H))``.

    Same parameters as ``GatedCell`` (so ``{"params": {"cell": params}}`` drives
    ``nn.RNN(GatedCell(...))``) and the same values and gradients; outputs are returned in input
    order also with ``reverse`` (like ``nn.RNN(..., keep_order=True)``).

    Attributes:
        features: hidden size ``H``.
        spec: the cell's spec.
        reverse: process each sequence from its last valid step to its first.
        unroll: time steps per scan iteration (LSTM and GRU families).
        min_scan: how the min family scans: ``"associative"`` (``jax.lax.associative_scan``,
            log-space where the spec says so), ``"sequential"`` (``lax.scan``), or ``"auto"``:
            sequential on the CPU, where associative scans compile slowly (5-10 s against
            0.2 s at t = 256-2048) and run no faster, associative on accelerators.
        backward: ``"autodiff"`` (JAX differentiates the scan) or ``"fused"`` (LSTM and GRU
            families: the hand-written backward pass of ``fused_recurrence``, one recurrent
            matmul per step and the weight gradients as large matmuls afterwards). Autodiff is
            the default because it measured faster on the 2-core AVX2 CPU here: the fused
            backward trained at 0.49-1.05x of its speed over three runs of
            ``experiments/bench`` (hidden 32-512).
    """

    features: int
    spec: Spec = LSTMSpec()
    reverse: bool = False
    unroll: int = 1
    min_scan: str = "auto"
    backward: str = "autodiff"
    kernel_init: Initializer = default_kernel_init
    recurrent_kernel_init: Initializer = default_recurrent_init
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self,
        inputs: Array,
        *,
        initial_carry=None,
        seq_lengths: Array | None = None,
        probe: Array | None = None,
    ):
        """Runs the sequence.

        Args:
            inputs: (b, t, d).
            initial_carry: as ``GatedCell.initialize_carry`` gives; zeros by default.
            seq_lengths: optional (b,) integer lengths: outputs past a sequence's length are zero
                and the final carry is the carry at its last valid step.
            probe: optional (b, t, H) added to the hidden state at every step; at zero, the
                gradient of a loss with respect to it is the loss's gradient with respect to
                each step's h_t (``gatelab inspect`` plots its norm: how far back the signal
                reaches).

        Returns:
            ``(carry, outputs)`` with ``outputs`` (b, t, H).
        """
        spec = self.spec
        params = declare_params(
            self,
            spec,
            inputs.shape[-1],
            self.features,
            self.kernel_init,
            self.recurrent_kernel_init,
            self.param_dtype,
        )
        batch, steps = inputs.shape[:-2], inputs.shape[-2]
        if len(batch) != 1:
            raise ValueError(f"GatedRNN expects inputs (batch, time, features), got {inputs.shape}")
        if initial_carry is None:
            initial_carry = _zero_carry(spec, batch[0], self.features, self.param_dtype)
        if self.reverse:
            inputs = flip_sequences(inputs, seq_lengths, num_batch_dims=1, time_major=False)
            if probe is not None:
                probe = flip_sequences(probe, seq_lengths, num_batch_dims=1, time_major=False)
        x = jnp.swapaxes(inputs, 0, 1)  # (t, b, d)
        if probe is not None:
            probe = jnp.swapaxes(probe, 0, 1)
        mask = None
        if seq_lengths is not None:
            mask = (jnp.arange(steps)[:, None] < seq_lengths[None, :])[..., None]
        capture = self.is_mutable_collection("gates")
        captured = None
        match spec:
            case LSTMSpec():
                out = lstm_sequence(
                    spec, params, x, initial_carry, mask, self.unroll, capture, self._fused, probe
                )
            case GRUSpec():
                out = gru_sequence(
                    spec, params, x, initial_carry, mask, self.unroll, capture, self._fused, probe
                )
            case MinSpec():
                ys, captured = min_sequence(
                    spec, params, x, initial_carry, capture, _min_scan(self.min_scan), probe
                )
                if seq_lengths is None:
                    carry = ys[-1]
                else:
                    last = jnp.clip(seq_lengths - 1, 0, steps - 1)
                    carry = ys[last, jnp.arange(batch[0])]
                    carry = jnp.where(seq_lengths[:, None] > 0, carry, initial_carry)
                    ys = jnp.where(mask, ys, 0.0)
                out = (carry, ys)
        if capture and not isinstance(spec, MinSpec):
            out, captured = out[:2], out[2]
        carry, ys = out
        outputs = self._order(jnp.swapaxes(ys, 0, 1), seq_lengths)
        if captured is not None:
            captured = jax.tree_util.tree_map(
                lambda v: self._order(jnp.swapaxes(v, 0, 1), seq_lengths), captured
            )
            if mask is not None:
                valid = jnp.swapaxes(mask, 0, 1)
                captured = jax.tree_util.tree_map(lambda v: jnp.where(valid, v, 0.0), captured)
            if captured["gates"]:
                self.sow("gates", "activations", captured["gates"])
            if "state" in captured:
                self.sow("state", "cell", captured["state"]["cell"])
            self.sow("state", "hidden", outputs)
        return carry, outputs

    @property
    def _fused(self) -> bool:
        if self.backward not in ("fused", "autodiff"):
            raise ValueError(f"GatedRNN.backward={self.backward!r}; allowed: 'fused', 'autodiff'")
        return self.backward == "fused"

    def _order(self, values: Array, seq_lengths: Array | None) -> Array:
        if not self.reverse:
            return values
        return flip_sequences(values, seq_lengths, num_batch_dims=1, time_major=False)


def _min_scan(choice: str) -> str:
    if choice == "auto":
        return "sequential" if jax.default_backend() == "cpu" else "associative"
    if choice not in ("associative", "sequential"):
        raise ValueError(
            f"GatedRNN.min_scan={choice!r}; allowed: 'auto', 'associative', 'sequential'"
        )
    return choice


def _zero_carry(spec: Spec, batch: int, features: int, dtype) -> Any:
    zeros = jnp.zeros((batch, features), dtype)
    match spec:
        case LSTMSpec(gate_recurrence=True):
            return zeros, zeros, jnp.zeros((batch, len(spec.learned_gates) * features), dtype)
        case LSTMSpec():
            return zeros, zeros
    return zeros
