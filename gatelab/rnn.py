"""GatedRNN: a whole sequence through a gated cell, fast.

Notation: ``b`` batch, ``t`` time, ``d`` input features, ``h`` hidden features (``H``), ``k`` the
number of live parameter blocks (learned gates plus the candidate), ``G`` the learned gates.

``GatedRNN`` owns exactly the parameters of ``GatedCell`` (same names, same shapes, same
initialisation) and equals ``flax.linen.RNN(GatedCell(...))`` in values and gradients: both call
the family's one step function (``gatelab/families``). Inside, the live blocks are concatenated so
that each time step does one input matmul ``(b, d) x (d, k*H)`` and one recurrent matmul
``(b, H) x (H, k*H)`` (and a hand-written backward pass on request). A removed or tied gate is no
block: it costs no FLOPs. A linear recurrence (the min family, whose gates see only ``x``) is
projected at once and handed to ``linear_scan``.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.recurrent import flip_sequences

from gatelab import families
from gatelab.families import LSTMSpec, Spec, regularise
from gatelab.families.base import (
    Family,
    Initializer,
    default_kernel_init,
    default_recurrent_init,
    recur,
)

__all__ = ["GatedRNN", "fused_recurrence", "linear_scan", "SCANS"]

Array = jax.Array

SCANS = ("sequential", "associative", "log")


def _masked(mask: Array | None, new, old):
    if mask is None:
        return new
    return jax.tree_util.tree_map(lambda n, o: jnp.where(mask, n, o), new, old)


# --------------------------------------------------------------------------------------------------
# The recurrence, and a hand-written backward pass for it.
# --------------------------------------------------------------------------------------------------
#
# Every step of a recurrence through h (the LSTM and GRU families) is
#     p_t = x_t @ wx + b;  carry_t, y_t = cell(p_t, read(carry_{t-1}) @ w, carry_{t-1}, m_t, k)
# two matmuls (all live blocks fused) and elementwise work. The input projection stays inside the
# scan: hoisting it out as one (t*b, d) x (d, k*H) matmul measured slower on the CPU
# (experiments/bench/results/2026-11-27.md, "Input projection inside the scan"). Autodiff through
# `lax.scan` accumulates dw = sum_t read_t^T ds_t with one small matmul per step inside the
# backward loop; the hand-written backward does only ds_t w^T per step (and the cell's
# elementwise vjp), and the weight and input gradients afterwards as single large matmuls over all
# steps, as cuDNN does.


def _run_cell(cell, read, params, x, carry, mask, consts, unroll):
    """The forward scan; also returns each step's projection, recurrent term and previous carry."""
    wx, b, w = params

    def step(carry, inputs):
        x_t, m = inputs
        proj = x_t @ wx + b
        rec = recur(read(carry), w)
        new_carry, y, _ = cell(proj, rec, carry, m, consts, x_t)
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
        proj, rec, prev, m, dy, x_t = inputs
        _, cell_vjp = jax.vjp(
            lambda p, r, c, k, xt: cell(p, r, c, m, k, xt)[:2], proj, rec, prev, consts, x_t
        )
        d_proj, d_rec, d_prev, d_k, d_xt = cell_vjp((d_carry, dy))  # d_xt: x used directly
        read_prev, read_vjp = jax.vjp(read, prev)
        (d_v,) = jax.linear_transpose(lambda v: recur(v, w), read_prev)(d_rec)  # d_rec w^T
        (d_read,) = read_vjp(d_v)
        return (add(d_prev, d_read), add(d_consts, d_k)), (d_proj, d_rec, d_xt)

    zeros = jax.tree_util.tree_map(jnp.zeros_like, consts)
    (d_carry, d_consts), (d_projs, d_recs, d_direct) = jax.lax.scan(
        step, (d_final, zeros), (projs, recs, prevs, mask, d_ys, x), reverse=True, unroll=unroll
    )
    # The weight and input gradients: one large matmul each, over all steps.
    reads = jax.vmap(read)(prevs)
    (d_w,) = jax.linear_transpose(lambda k: recur(reads, k), w)(d_recs)  # sum_t read_t^T d_rec_t
    d_wx = jnp.einsum("tbd,tbk->dk", x, d_projs)
    d_b = jnp.sum(d_projs, axis=(0, 1)).reshape(b.shape)
    d_x = jnp.einsum("tbk,dk->tbd", d_projs, wx) + d_direct
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
        new_carry, y, extras = cell(x_t @ wx + b, recur(read(carry), w), carry, m, consts, x_t, p)
        return new_carry, ((y, extras) if capture else y)

    final, ys = jax.lax.scan(step, carry, (x, mask, probe), unroll=unroll)
    if not capture:
        return final, ys
    ys, extras = ys
    return final, ys, extras


def _finish(new_carry, new_h, carry, m):
    """Holds the carry and zeroes the output past a sequence's end."""
    new_carry = _masked(m, new_carry, carry)
    y = new_h if m is None else jnp.where(m, new_h, 0.0)
    return new_carry, y


def _recurrence(family: Family, spec: Spec, params, x, carry, mask, unroll, capture, fused, probe):
    """A recurrence through ``h`` over time-major ``x`` (t, b, d): ``(carry, ys)``, and with
    ``capture`` also ``{"gates": {gate: (t, b, H)}, "state": {name: (t, b, ...)}}``."""
    layout = family.fused(spec, params)
    carry = tuple(carry) if isinstance(carry, list) else carry  # a scan's carry keeps its type
    w = layout.w
    if w is None:  # no recurrent matmul: an empty one, so that every family scans alike
        w = jnp.zeros((layout.read(carry).shape[-1], 0), layout.wx.dtype)
    if fused and any(k.ndim != 2 for k in jax.tree_util.tree_leaves(w)):
        raise ValueError(
            f"backward='fused' needs dense recurrent kernels; {type(spec).__name__} has "
            f"per-head kernels {jax.tree_util.tree_map(jnp.shape, w)}: use "
            "model.backward=autodiff"
        )

    def cell(proj, rec, carry, m, consts, x, probe=None):
        pre = layout.split(proj, rec, x)
        new_carry, new_h, gates = family.step(spec, pre, carry, consts, probe)
        observed = family.observe(new_carry)
        new_carry, y = _finish(new_carry, new_h, carry, m)
        return new_carry, y, (gates, observed)

    params = (layout.wx, layout.bias, w)
    out = _scan_cells(
        cell, layout.read, params, x, carry, mask, layout.consts, unroll, capture, fused, probe
    )
    if not capture:
        return out
    carry, ys, (gates, observed) = out
    return carry, ys, {"gates": gates, "state": observed}


def _regularised(family, spec, params, x, carry, mask, unroll, capture, probe, masks):
    """A recurrence with regularisers or layer norm (``regularise.step`` at every step), by
    autodiff. ``masks`` (``regularise.draw`` over the sequence) in training, ``None`` at
    evaluation. The masks that hold for the whole sequence are constants of the scan; zoneout's
    are its inputs, one per step."""
    layout, consts = regularise.prepare(family, spec, params, masks)
    carry = tuple(carry) if isinstance(carry, list) else carry
    constant = {k: v for k, v in (masks or {}).items() if not k.startswith("zone_")}
    zones = {k: v for k, v in (masks or {}).items() if k.startswith("zone_")}

    def body(carry, inputs):
        x_t, m, p, zone = inputs
        step_masks = None if masks is None else {**constant, **zone}
        new_carry, new_h, gates = regularise.step(
            family, spec, layout, consts, x_t, carry, step_masks, p
        )
        observed = family.observe(new_carry)
        new_carry, y = _finish(new_carry, new_h, carry, m)
        return new_carry, ((y, (gates, observed)) if capture else y)

    final, ys = jax.lax.scan(body, carry, (x, mask, probe, zones), unroll=unroll)
    if not capture:
        return final, ys
    ys, (gates, observed) = ys
    return final, ys, {"gates": gates, "state": observed}


# --------------------------------------------------------------------------------------------------
# Linear recurrences: h_t = a_t * h_{t-1} + b_t with a, b of x only.
# --------------------------------------------------------------------------------------------------


def linear_scan(a: Array | None, b: Array, h: Array, scan: str = "sequential") -> Array:
    """Every state of ``h_t = a_t * h_{t-1} + b_t`` from ``h_0 = h`` (b, H), time-major (t, b, H).

    Args:
        a: the coefficients (t, b, H), or ``None`` for ``h_t = b_t`` (no recurrence).
        b: the inputs (t, b, H).
        h: the initial state (b, H), of any sign.
        scan: ``"sequential"`` (an elementwise ``lax.scan``), ``"associative"``
            (``jax.lax.associative_scan``: O(log t) depth, the parallel form), or ``"log"``:
            ``a`` and ``b`` are ``log a_t`` and ``log b_t`` (``b_t > 0``) and the associative scan
            runs on logarithms (Feng et al. 2024, Appendix B, after Heinsen): the recurrence is
            linear in ``h_0``, so ``h_t = A_t * h_0 + H_t`` with ``A_t = prod_{s<=t} a_s`` and
            ``log H_t = a*_t + logcumsumexp(log b - a*)_t``, ``a* = cumsum(log a)``.

    Returns:
        (t, b, H).
    """
    if a is None:
        return b
    match scan:
        case "log":
            a_star = jnp.cumsum(a, axis=0)
            from_zero = a_star + jax.lax.associative_scan(jnp.logaddexp, b - a_star, axis=0)
            return jnp.exp(a_star) * h[None] + jnp.exp(from_zero)
        case "sequential":

            def step(h, ab):
                h = ab[0] * h + ab[1]
                return h, h

            return jax.lax.scan(step, h, (a, b))[1]
        case "associative":

            def combine(first, second):
                a1, b1 = first
                a2, b2 = second
                return a1 * a2, a2 * b1 + b2

            a_all, b_all = jax.lax.associative_scan(combine, (a, b), axis=0)
            return a_all * h[None] + b_all
    raise ValueError(f"scan={scan!r}; allowed: {', '.join(SCANS)}")


def _linear(family: Family, spec: Spec, params, x, h, capture: bool, scan: str, probe):
    """A linear recurrence over time-major ``x`` (t, b, d): ``(ys, captured)``.

    ``probe`` (t, b, H) is added to every ``h_t``: a term of ``b_t`` in linear space, so the scan
    is sequential then. The caller selects the final carry (the recurrence is causal, so padding
    never leaks into valid steps).
    """
    layout = family.fused(spec, params)
    proj = jnp.einsum("tbd,dk->tbk", x, layout.wx) + layout.bias[None]
    pre = layout.split(proj, None, x)
    if probe is not None:
        scan = "sequential"
    log = scan == "associative" and getattr(spec, "log_space", False)
    a, b, gates = family.coefficients(spec, pre, layout.consts, log)
    if a is None:
        ys = b if probe is None else b + probe
    else:
        if probe is not None:
            b = b + probe
        ys = linear_scan(a, b, h, "log" if log else scan)
    return ys, ({"gates": gates} if capture else None)


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
        unroll: time steps per scan iteration (recurrences through ``h``).
        min_scan: how a linear recurrence (the min family) scans: ``"associative"``
            (``jax.lax.associative_scan``, on logarithms where the spec says so),
            ``"sequential"`` (``lax.scan``), or ``"auto"``: sequential on the CPU, where
            associative scans compile much more slowly and run no faster, associative on
            accelerators (experiments/bench/results/2026-11-27.md, "The min family's scan on
            the CPU").
        backward: ``"autodiff"`` (JAX differentiates the scan) or ``"fused"`` (recurrences
            through ``h``: the hand-written backward pass of ``fused_recurrence``, one recurrent
            matmul per step and the weight gradients as large matmuls afterwards). The config
            key ``model.backward`` chooses it; autodiff is the default because it measured
            faster on the CPU (the results file above, "Hand-written backward pass").

    Regularisers (the spec's ``dropout_*``, ``zoneout_*``, ``weight_drop``, ``layer_norm``;
    ``gatelab.families.regularise``) run through their own scan by autodiff. In training
    (``deterministic=False``) their masks are drawn once per call, outside the scan, from the
    ``"dropout"`` stream (``rngs={"dropout": key}``), or given as ``masks``; with the
    ``"masks"`` collection mutable they are sown there. At evaluation nothing is random.
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
        deterministic: bool = True,
        masks: dict | None = None,
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
            deterministic: evaluation (no dropout, zoneout in expectation); ``False`` trains
                with masks drawn from the ``"dropout"`` stream (specs with regularisers).
            masks: training masks to use instead (``regularise.draw(spec, params, key, (b,),
                t)``); zoneout's in processing order.

        Returns:
            ``(carry, outputs)`` with ``outputs`` (b, t, H).
        """
        spec = self.spec
        family = families.family(spec)
        params = families.declare_params(
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
            initial_carry = family.zero_carry(spec, batch, self.features, self.param_dtype)
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
        if regularise.regularised(spec):
            if self._fused:
                raise ValueError(
                    f"backward='fused' does not take regularisers ({spec!r}); "
                    "use model.backward=autodiff"
                )
            if masks is None and not deterministic and regularise.stochastic(spec):
                key = self.make_rng("dropout")
                masks = regularise.draw(spec, params, key, batch, steps)
            if masks is not None and self.is_mutable_collection("masks"):
                self.sow("masks", "drawn", masks)
            out = _regularised(
                family, spec, params, x, initial_carry, mask, self.unroll, capture, probe, masks
            )
            if capture:
                out, captured = out[:2], out[2]
            carry, ys = out
        elif family.step is not None:
            out = _recurrence(
                family, spec, params, x, initial_carry, mask, self.unroll, capture,
                self._fused, probe,
            )  # fmt: skip
            if capture:
                out, captured = out[:2], out[2]
            carry, ys = out
        else:
            ys, captured = _linear(
                family, spec, params, x, initial_carry, capture, _min_scan(self.min_scan), probe
            )
            if seq_lengths is None:
                carry = ys[-1]
            else:
                last = jnp.clip(seq_lengths - 1, 0, steps - 1)
                carry = ys[last, jnp.arange(batch[0])]
                carry = jnp.where(seq_lengths[:, None] > 0, carry, initial_carry)
                ys = jnp.where(mask, ys, 0.0)
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
            for name, value in captured.get("state", {}).items():
                self.sow("state", name, value)
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
