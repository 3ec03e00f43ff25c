"""The LSTM family: Greff et al.'s cell with every part ablatable (docs/reference.md, section 2).

Notation: ``b`` batch, ``d`` input features, ``H`` hidden features, ``G`` the learned gates.
Carry ``(c, h)`` as in Flax, ``(c, h, a)`` with full gate recurrence (``a`` the previous step's
learned-gate activations, (b, G*H)).
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
    chrono_init,
    constant_init,
    fuse,
    gate_value,
    gated,
    live,
    split_blocks,
)
from gatelab.families.regularise import Regularised, layer_norm, mix
from gatelab.specs import (
    ACTIVATIONS,
    GateMode,
    parse_mode,
    validate_bool,
    validate_choice,
    validate_float,
    validate_gates,
)

__all__ = ["LSTMSpec", "FAMILY"]

Array = jax.Array


@dataclasses.dataclass(frozen=True, repr=False)
class LSTMSpec(Regularised):
    """An LSTM cell: Greff et al. (2017), with every part ablatable (docs/reference.md, section 2).

    Equations (``sigma`` the logistic sigmoid; ``[...]`` present only where switched on)::

        z_t = g(W_z x_t + U_z h_{t-1} + b_z)                          candidate ("block input")
        i_t = gate(input):  sigma(W_i x_t + U_i h_{t-1} [+ p_i * c_{t-1}] [+ R_i a_{t-1}] + b_i)
        f_t = gate(forget): sigma(W_f x_t + U_f h_{t-1} [+ p_f * c_{t-1}] [+ R_f a_{t-1}] + b_f)
        c_t = f_t * c_{t-1} + i_t * z_t
        o_t = gate(output): sigma(W_o x_t + U_o h_{t-1} [+ p_o * c_t] [+ R_o a_{t-1}] + b_o)
        h_t = o_t * act(c_t)                        [LSTMP: h_t = W_hr (o_t * act(c_t)), size P]

    where ``a_{t-1}`` concatenates the previous step's activations of the learned gates (FGR), and
    ``gate(.)`` is replaced by 1 (``"open"``), ``1 - sigma(s_src - tie_shift)`` (``"1-src"``) or
    the source's activation (``"src"``).

    Attributes:
        forget: mode of the forget gate (fraction of ``c_{t-1}`` kept).
        input: mode of the input gate (fraction of the candidate written).
        output: mode of the output gate (fraction of ``act(c_t)`` shown).
        candidate_activation: ``g``: ``"tanh"`` or ``"identity"`` (Greff's NIAF).
        cell_activation: ``act``: ``"tanh"`` or ``"identity"`` (Greff's NOAF).
        peepholes: diagonal peepholes, Greff's form: input and forget gates see ``c_{t-1}``,
            the output gate sees the new ``c_t``.
        gate_recurrence: full gate recurrence (Greff's FGR): every learned gate also sees the
            previous activations of all learned gates through one ``(G*H, G*H)`` kernel.
        forget_bias: initial value of the forget gate's bias (Jozefowicz et al. 2015: 1.0). With
            ``forget="1-input"`` it initialises the input bias so that ``f`` starts at
            ``sigma(forget_bias)``. Never a constant added in the forward pass.
        chrono_tmax: when set, chrono initialisation (Tallec & Ollivier 2018):
            ``b_f ~ log U[1, T_max - 1]`` and ``b_i = -b_f``; with ``forget="1-input"`` it sets
            the input bias to ``-log U[1, T_max - 1]``.
        tie_shift: ``beta`` of a complement tie, ``1 - sigma(s - beta)``; JANET uses 1.

    The regularisers (``dropout_input``, ``dropout_recurrent``, ``dropout_tied``,
    ``zoneout_cell``, ``zoneout_hidden``, ``weight_drop``, ``layer_norm``, ``layer_norm_stats``)
    and the recurrent projection (``projection``) are keyword fields shared with ``GRUSpec``
    (``regularise.Regularised``). With layer norm, the authors' form (Ba et al. 2016)::

        (i, f, o, z) = split(LN(W x_t + b) + LN(U h_{t-1}) + b),   h_t = o_t * act(LN(c_t))

    with statistics over the four blocks together (``layer_norm_stats="gate"``: each alone);
    the carry holds the unnormalised ``c_t``.
    """

    forget: GateMode = "learned"
    input: GateMode = "learned"
    output: GateMode = "learned"
    candidate_activation: str = "tanh"
    cell_activation: str = "tanh"
    peepholes: bool = False
    gate_recurrence: bool = False
    forget_bias: float = 1.0
    chrono_tmax: float | None = None
    tie_shift: float = 0.0

    GATES = ("input", "forget", "output")

    def __post_init__(self):
        validate_gates(self, self.GATES)
        validate_choice(self, "candidate_activation", ACTIVATIONS)
        validate_choice(self, "cell_activation", ACTIVATIONS)
        validate_bool(self, "peepholes")
        validate_bool(self, "gate_recurrence")
        validate_float(self, "forget_bias")
        validate_float(self, "tie_shift")
        self._validate_regularisers("lstm")
        if self.dropout_recurrent and self.gate_recurrence:
            raise ValueError(
                f"LSTMSpec.dropout_recurrent={self.dropout_recurrent!r} with gate_recurrence=True: "
                "the recurrent input then also holds the previous gate activations, which "
                "variational dropout does not define; allowed: dropout_recurrent=0 with FGR"
            )
        if self.peepholes:
            # The output gate's peephole sees c_t, which needs i_t and f_t first.
            for gate in ("input", "forget"):
                if parse_mode(getattr(self, gate))[1] == "output":
                    raise ValueError(
                        f"LSTMSpec.{gate}={getattr(self, gate)!r} with peepholes=True is a cycle: "
                        "the output gate's peephole sees c_t, which needs the input and forget "
                        "gates first. Allowed for "
                        f"{gate} with peepholes: 'learned', 'open', "
                        + ", ".join(f"'1-{g}', '{g}'" for g in ("input", "forget") if g != gate)
                    )
        if self.chrono_tmax is not None:
            validate_float(self, "chrono_tmax")
            if self.chrono_tmax <= 2:
                raise ValueError(
                    f"LSTMSpec.chrono_tmax={self.chrono_tmax!r} must be > 2 "
                    "(biases are drawn from log U[1, T_max - 1]) or None"
                )
            if self.forget not in ("learned", "1-input"):
                raise ValueError(
                    f"LSTMSpec.chrono_tmax needs forget='learned' or forget='1-input', "
                    f"not forget={self.forget!r}"
                )


def _check(spec: LSTMSpec, input_size: int, features: int) -> None:
    if spec.projection and spec.projection >= features:
        raise ValueError(
            f"LSTMSpec.projection={spec.projection} must be smaller than the hidden size "
            f"{features} (LSTMP projects h to P < H; 0: no projection)"
        )


# --------------------------------------------------------------------------------------------------
# Parameters.
# --------------------------------------------------------------------------------------------------


def declare(spec: LSTMSpec, parts: Parts) -> dict:
    """Every learned gate and the candidate: ``kernel_x, kernel_h, bias`` (``peephole`` with
    peepholes, layer norm's ``ln_*`` with ``layer_norm``); FGR: ``gate_recurrence/kernel``
    (G*H, G*H); ``cell_norm/{scale, shift}`` with ``"cell"`` in ``layer_norm``; LSTMP:
    ``projection/kernel`` (H, P) and every ``kernel_h`` (P, H). The forget bias (or chrono) is
    the forget gate's initial bias, or the input gate's negated one with ``forget="1-input"``."""
    learned = spec.learned_gates
    params = {}
    options = {"norm": spec.layer_norm}
    if spec.projection:
        options["recurrent_shape"] = (spec.projection, parts.features)
    # Forget first: with chrono, the input bias is its negation (one random draw).
    if "forget" in learned:
        init = constant_init(spec.forget_bias)
        if spec.chrono_tmax:
            init = chrono_init(spec.chrono_tmax, 1.0)
        params["forget"] = parts.part("forget", peephole=spec.peepholes, bias_init=init, **options)
    if "input" in learned:
        if spec.forget == "1-input":
            # f = 1 - sigma(b_i - beta) = sigma(beta - b_i) starts at sigma(forget_bias), or at
            # sigma(log U[1, T_max - 1]) with chrono.
            init = (
                chrono_init(spec.chrono_tmax, -1.0)
                if spec.chrono_tmax
                else constant_init(-spec.forget_bias)
            )
            if spec.tie_shift:
                base, shift = init, spec.tie_shift
                init = lambda key, shape, dtype=jnp.float32: base(key, shape, dtype) + shift  # noqa: E731
        elif spec.chrono_tmax and "forget" in learned:
            init = constant_init(-params["forget"]["bias"])
        else:
            init = constant_init(0.0)
        params["input"] = parts.part("input", peephole=spec.peepholes, bias_init=init, **options)
    if "output" in learned:
        params["output"] = parts.part("output", peephole=spec.peepholes, **options)
    params["candidate"] = parts.part("candidate", **options)
    if spec.gate_recurrence and learned:
        size = len(learned) * parts.features
        params["gate_recurrence"] = {"kernel": parts.matrix("gate_recurrence", size)}
    if "cell" in spec.layer_norm:
        params["cell_norm"] = parts.norm("cell_norm")
    if spec.projection:
        kernel = parts.matrix("projection", parts.features, spec.projection)
        params["projection"] = {"kernel": kernel}
    # Canonical order for readers of the tree: input, forget, output, candidate.
    order = [*spec.gates, "candidate", "gate_recurrence", "cell_norm", "projection"]
    return {k: params[k] for k in order if k in params}


def breakdown(spec: LSTMSpec, input_size: int, features: int) -> dict[str, int]:
    """Every learned gate and the candidate own ``D*H + R*H + H`` (``R`` the recurrent input's
    width: ``H``, or ``P`` with a projection), a learned gate ``+ H`` with peepholes, ``+ 2H``
    per normalised term; FGR adds ``(G*H)**2`` for the ``G`` learned gates, cell norm ``2H``,
    the projection ``H*P``."""
    d, h = input_size, features
    r = spec.projection or h
    norms = 2 * h * sum(term in spec.layer_norm for term in ("input", "recurrent"))
    block = d * h + r * h + h + norms
    parts = {gate: block + (h if spec.peepholes else 0) for gate in spec.learned_gates}
    parts["candidate"] = block
    if spec.gate_recurrence and spec.learned_gates:
        parts["gate_recurrence"] = (len(spec.learned_gates) * h) ** 2
    if "cell" in spec.layer_norm:
        parts["cell_norm"] = 2 * h
    if spec.projection:
        parts["projection"] = h * spec.projection
    return parts


def zero_carry(spec: LSTMSpec, batch: tuple[int, ...], features: int, dtype):
    """``(c, h)`` zeros, ``h`` of the projection's width with LSTMP; FGR adds ``a``."""
    c = jnp.zeros((*batch, features), dtype)
    h = jnp.zeros((*batch, spec.projection), dtype) if spec.projection else c
    if spec.gate_recurrence:
        return c, h, jnp.zeros((*batch, len(spec.learned_gates) * features), dtype)
    return c, h


# --------------------------------------------------------------------------------------------------
# Pre-activations: per part (GatedCell) or fused (GatedRNN).
# --------------------------------------------------------------------------------------------------


def _peepholes(spec: LSTMSpec, params: dict) -> dict[str, Array]:
    return {g: params[g]["peephole"] for g in spec.learned_gates if spec.peepholes}


def _late(spec: LSTMSpec, params: dict) -> dict[str, Array]:
    """What the step applies after the cell: layer norm of ``c``, the projection."""
    consts = {}
    if "cell_norm" in params:
        consts["cell_norm_scale"] = params["cell_norm"]["scale"]
        consts["cell_norm_shift"] = params["cell_norm"]["shift"]
    if spec.projection:
        consts["projection"] = params["projection"]["kernel"]
    return consts


def inputs(spec: LSTMSpec, params: dict, x: Array, carry) -> tuple[dict, dict]:
    """``s_k = x W_k + h U_k + b_k [+ a R_k]`` for every learned gate and the candidate."""
    h = carry[1]
    learned = spec.learned_gates
    size = params["candidate"]["bias"].shape[-1]
    pre = {}
    for part in [*learned, "candidate"]:
        p = params[part]
        s = x @ p["kernel_x"] + h @ p["kernel_h"] + p["bias"]
        if len(carry) == 3 and part != "candidate" and "gate_recurrence" in params:
            k = learned.index(part)
            s = s + carry[2] @ params["gate_recurrence"]["kernel"][:, k * size : (k + 1) * size]
        pre[part] = s
    return pre, {**_peepholes(spec, params), **_late(spec, params)}


def fused(spec: LSTMSpec, params: dict) -> Fused:
    """All blocks in one input and one recurrent matmul. FGR: the previous gate activations
    ``a`` are a second recurrent input; their kernel R feeds only the gate columns, so the
    recurrent term is ``h @ U + [a @ R, 0]`` (``recur``), not ``[h, a] @ [[U], [R, 0]]``, which
    multiplies a block of zeros."""
    blocks = [*spec.learned_gates, "candidate"]
    size = params["candidate"]["bias"].shape[-1]
    wx, bias = fuse(params, blocks, "kernel_x"), fuse(params, blocks, "bias")[None, :]
    w = fuse(params, blocks, "kernel_h")
    fgr = spec.gate_recurrence and bool(spec.learned_gates)
    if fgr:
        w = (w, params["gate_recurrence"]["kernel"])

    def read(carry):
        return (carry[1], carry[2]) if fgr else carry[1]

    def split(proj, rec, x):
        return split_blocks(proj + rec, blocks, size)

    consts = {g: p[None, :] for g, p in _peepholes(spec, params).items()}  # (1, H) each
    late = {k: v[None, :] if v.ndim == 1 else v for k, v in _late(spec, params).items()}
    norms = {
        f"{term}_{name}": fuse(params, blocks, f"ln_{term}_{name}")[None, :]
        for term in ("input", "recurrent")
        if term in spec.layer_norm
        for name in ("scale", "shift")
    }
    blocks = tuple(blocks)
    return Fused(wx, bias, split, w, read, {**consts, **late}, size, blocks, blocks, norms)


# --------------------------------------------------------------------------------------------------
# The step.
# --------------------------------------------------------------------------------------------------


def step(spec: LSTMSpec, pre: dict, carry, peepholes: dict, probe: Array | None = None):
    """One step from the pre-activations ``pre`` (the learned gates' and the candidate's, without
    peepholes); ``peepholes`` maps gates to their ``p`` (the step adds ``p * c``), and holds the
    cell norm's ``cell_norm_scale``, ``cell_norm_shift`` and LSTMP's ``projection`` where on."""
    c = carry[0]
    names = ("cell_norm_scale", "cell_norm_shift", "projection")
    after = {k: peepholes[k] for k in names if k in peepholes}
    peepholes = {k: v for k, v in peepholes.items() if k not in after}
    learned = spec.learned_gates
    # Input and forget gates see c_{t-1}; with peepholes the output gate waits for c_t.
    late = ("output",) if spec.peepholes else ()
    gates = {g: pre[g] for g in learned}
    for g in peepholes:
        if g not in late:
            gates[g] = gates[g] + peepholes[g] * c
    z = activation(spec.candidate_activation)(pre["candidate"])
    early = {g: v for g, v in gates.items() if g not in late}
    i = gate_value(spec, "input", early)
    f = gate_value(spec, "forget", early)
    new_c = gated(f, c) + gated(i, z)
    if "output" in peepholes:
        gates["output"] = gates["output"] + peepholes["output"] * new_c
    o = gate_value(spec, "output", gates)
    shown = new_c
    if "cell_norm_scale" in after:
        shown = layer_norm(new_c, after["cell_norm_scale"], after["cell_norm_shift"])
    new_h = gated(o, activation(spec.cell_activation)(shown))
    if "projection" in after:
        new_h = new_h @ after["projection"]
    if probe is not None:
        new_h = new_h + probe
    new_carry = (new_c, new_h)
    if len(carry) == 3:  # FGR: the learned gates' activations, for the next step
        values = [jax.nn.sigmoid(gates[g]) for g in learned]
        new_carry += (jnp.concatenate(values, -1) if values else carry[2],)
    return new_carry, new_h, live({"input": i, "forget": f, "output": o})


def zoneout(spec: LSTMSpec, new, old, keep: dict):
    """Zoneout of ``c`` and ``h`` (``regularise.mix``); FGR's ``a`` is not zoned."""
    return (mix(new[0], old[0], keep["cell"]), mix(new[1], old[1], keep["hidden"]), *new[2:])


FAMILY = Family(
    spec=LSTMSpec,
    declare=declare,
    breakdown=breakdown,
    zero_carry=zero_carry,
    hidden=lambda carry: carry[1],
    inputs=inputs,
    fused=fused,
    step=step,
    observe=lambda carry: {"cell": carry[0]},
    check=_check,
    zoneout=zoneout,
    joint_candidate=True,
    norm_rebias=True,
)
