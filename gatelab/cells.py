"""GatedCell: one time step of any spec, one matmul per part. The readable reference.

Notation: ``b`` batch, ``d`` input features, ``h`` hidden features (``H``). ``GatedRNN`` (rnn.py)
is the fast path over whole sequences; both call the family's one step function
(``gatelab/families``), and ``GatedRNN`` equals ``flax.linen.RNN(GatedCell(...))`` in values and
gradients.

Parameters are named after what they belong to, the same for both (docs/reference.md,
"Conventions"): ``forget``, ``input``, ``output``, ``candidate`` (LSTM); ``update``, ``reset``,
``candidate`` (GRU and the min family); each with ``kernel_x`` (D, H), ``kernel_h`` (H, H; not in
the min family), ``bias`` (H,), ``peephole`` (H,) where peepholes are on, ``bias_h`` (H,) for the
GRU candidate's recurrent bias where the reset gate acts after the matmul; FGR adds
``gate_recurrence/kernel`` (G*H, G*H). The newer families name theirs the same way: sLSTM's
``kernel_h`` per head (NH, DH, DH), RG-LRU's ``decay/lambda`` (H,), IndRNN's ``recurrence/u``
(H,). A removed (``"open"``) or tied gate owns nothing and costs nothing.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gatelab import families
from gatelab.families import LSTMSpec, Spec, regularise
from gatelab.families.base import (
    Initializer,
    broadcast_vectors,
    default_kernel_init,
    default_recurrent_init,
)

__all__ = ["GatedCell"]

Array = jax.Array


class GatedCell(nn.RNNCellBase):
    """One step of a cell of any family (``gatelab.families``) whose gates follow ``spec``.

    A ``flax.linen`` cell with Flax's interface: ``__call__(carry, x) -> (carry, y)``,
    ``initialize_carry(rng, input_shape)``, ``num_feature_axes``; ``flax.linen.RNN`` and
    ``Bidirectional`` take it unchanged. Carries: LSTM ``(c, h)`` as in Flax, ``(c, h, a)`` with
    FGR (``a`` the previous learned-gate activations, (..., G*H)); sLSTM ``(c, n, m, h)``; every
    other family ``h``. The equations of the three Greff-era families follow; each family's
    spec class gives its own (``gatelab variants NAME`` prints them).

    LSTM (``LSTMSpec``; Greff et al. 2017)::

        z = g(x W_z + h U_z + b_z)
        i = gate(input),  s_i = x W_i + h U_i + b_i [+ p_i * c] [+ a R_i]
        f = gate(forget), s_f = x W_f + h U_f + b_f [+ p_f * c] [+ a R_f]
        c' = f * c + i * z
        o = gate(output), s_o = x W_o + h U_o + b_o [+ p_o * c'] [+ a R_o]
        h' = o * act(c')

    GRU (``GRUSpec``; Cho et al. 2014, with ``u`` the fraction written)::

        u = gate(update), r = gate(reset)
        h~ = g(x W_c + b_c + r * (h U_c + b_ch))     reset_after=True
        h~ = g(x W_c + b_c + (r * h) U_c)            reset_after=False
        h' = (1 - u) * h + u * h~

    Min family (``MinSpec``; Feng et al. 2024): gates and candidate of ``x`` only,
    ``h' = a * h + b`` with ``a = 1 - u, b = u * h~`` (minGRU) or ``a = f', b = i' * h~`` (minLSTM).

    ``gate(.)`` is sigma(s) for a learned gate, 1 for an open one (skipped), ``1 - sigma(s_src -
    tie_shift)`` for ``"1-src"``, and the source's activation for ``"src"``. With the ``"gates"``
    collection mutable, the live gates' activations are sown there as one dict,
    ``gates/activations: {gate: (..., H)}`` (and the family's states, such as the LSTM cell, as
    ``state/<name>``).

    Regularisers (``dropout_*``, ``zoneout_*``, ``weight_drop``, ``layer_norm``) compute one step
    through the fused layout ``GatedRNN`` scans (``regularise.step``). In training
    (``deterministic=False``) the masks are drawn in the cell: those that hold for a whole
    sequence from the ``"dropout"`` stream, zoneout's from the ``"zoneout"`` stream, so under
    ``flax.linen.RNN`` the first must be shared over time and the second split::

        nn.RNN(GatedCell(H, spec, deterministic=False),
               split_rngs={"params": False, "dropout": False, "zoneout": True})

    or pass one step's ``masks`` (``regularise.at_step`` of a sequence's ``regularise.draw``).

    Attributes:
        features: hidden size ``H``.
        spec: the cell's spec (``LSTMSpec``, ``GRUSpec``, ``MinSpec``, ``SLSTMSpec``,
            ``RGLRUSpec`` or ``IndRNNSpec``).
        deterministic: evaluation (no dropout, zoneout in expectation); ``False``: training.
    """

    features: int
    spec: Spec = LSTMSpec()
    deterministic: bool = True
    kernel_init: Initializer = default_kernel_init
    recurrent_kernel_init: Initializer = default_recurrent_init
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, carry, inputs: Array, masks: dict | None = None):
        """One step: ``carry`` from ``initialize_carry``, ``inputs`` (..., D); ``masks``: this
        step's training masks (regularisers only; drawn here when ``deterministic=False``)."""
        family = families.family(self.spec)
        params = families.declare_params(
            self,
            self.spec,
            inputs.shape[-1],
            self.features,
            self.kernel_init,
            self.recurrent_kernel_init,
            self.param_dtype,
        )
        if regularise.regularised(self.spec):
            carry, h, gates = self._regularised(family, params, carry, inputs, masks)
        else:
            params = broadcast_vectors(params, inputs.ndim)
            carry, h, gates = self._step(family, params, carry, inputs)
        if gates:  # one dict: a sow named "forget" would clash with the submodule "forget"
            self.sow("gates", "activations", gates)
        for name, value in family.observe(carry).items():
            self.sow("state", name, value)
        return carry, h

    def _regularised(self, family, params, carry, inputs, masks):
        spec = self.spec
        if inputs.ndim != 2:
            raise ValueError(
                f"GatedCell with regularisers takes inputs (batch, features), got {inputs.shape}"
            )
        if masks is None and not self.deterministic and regularise.stochastic(spec):
            zone = self.make_rng("zoneout") if spec.zoneout_cell or spec.zoneout_hidden else None
            masks = regularise.draw(
                spec, params, self.make_rng("dropout"), inputs.shape[:1], None, zone
            )
            if self.is_mutable_collection("masks"):
                self.sow("masks", "drawn", masks)
        layout, consts = regularise.prepare(family, spec, params, masks)
        carry = tuple(carry) if isinstance(carry, list) else carry
        return regularise.step(family, spec, layout, consts, inputs, carry, masks)

    def _step(self, family, params, carry, inputs):
        pre, consts = family.inputs(self.spec, params, inputs, carry)
        if family.step is not None:
            carry, h, gates = family.step(self.spec, pre, carry, consts)
        else:  # a linear recurrence: h' = a * h + b
            a, b, gates = family.coefficients(self.spec, pre, consts)
            h = b if a is None else a * carry + b
            carry = h
        return carry, h, gates

    @nn.nowrap
    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]):
        """Zeros: ``(c, h)`` (LSTM), ``(c, h, a)`` (FGR) or ``h`` for ``input_shape`` (..., D)."""
        batch = tuple(input_shape[:-1])
        return families.family(self.spec).zero_carry(
            self.spec, batch, self.features, self.param_dtype
        )

    @property
    def num_feature_axes(self) -> int:
        return 1
