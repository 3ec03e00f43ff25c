"""Gate specifications: an ablation is a value, not a class.

A spec says, for every gate of a cell family, how that gate is computed (DESIGN.md, "Cells: gates
are data"):

  ==============  =====================================================================
  ``"learned"``   ``sigmoid(W x + U h [+ p * c] + b)``: the usual gate, with parameters
  ``"open"``      the constant 1: the gate is removed (Greff's NIG, NFG, NOG)
  ``"1-<gate>"``  ``1 - sigmoid(s_<gate> - tie_shift)``: the complement of a learned gate (CIFG)
  ``"<gate>"``    the activation of another learned gate, shared (MGU: ``reset="update"``)
  ==============  =====================================================================

A gate's value is always the fraction that *flows*: an open input gate writes the whole candidate,
an open forget gate keeps the whole cell, an open output gate shows the whole cell, and the GRU's
``update`` is the fraction of the candidate written, ``h_t = (1 - u) h_{t-1} + u h~_t``.

Specs are frozen and hashable (they are static arguments of compiled functions), validated on
construction (an invalid one raises ``ValueError`` naming the field, the value and what is
allowed), have ``.replace(**changes)``, and print as the one line a user would type.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, TypeAlias

__all__ = [
    "LSTMSpec",
    "GRUSpec",
    "MinSpec",
    "Spec",
    "GateMode",
    "parse_mode",
    "param_count",
    "param_breakdown",
]

GateMode: TypeAlias = str
ModeKind: TypeAlias = Literal["learned", "open", "complement", "shared"]

ACTIVATIONS = ("tanh", "identity")
MIN_ACTIVATIONS = ("g", "identity", "tanh")


def parse_mode(mode: GateMode) -> tuple[ModeKind, str | None]:
    """Splits a gate mode into its kind and, for ties, the gate it refers to.

    Returns:
        ``("learned", None)``, ``("open", None)``, ``("complement", source)`` for ``"1-<source>"``
        or ``("shared", source)`` for ``"<source>"``.
    """
    if mode == "learned":
        return "learned", None
    if mode == "open":
        return "open", None
    if mode.startswith("1-"):
        return "complement", mode[2:]
    return "shared", mode


# --------------------------------------------------------------------------------------------------
# Validation shared by the three families.
# --------------------------------------------------------------------------------------------------


def _allowed_modes(gate: str, gates: tuple[str, ...]) -> str:
    others = [g for g in gates if g != gate]
    ties = ", ".join([f"'1-{g}'" for g in others] + [f"'{g}'" for g in others])
    return "'learned', 'open'" + (f", {ties}" if ties else "")


def _validate_gates(spec: object, gates: tuple[str, ...]) -> None:
    """Checks every gate mode of ``spec``: known, not self-tied, tied only to learned gates."""
    name = type(spec).__name__
    modes = {gate: getattr(spec, gate) for gate in gates}
    for gate, mode in modes.items():
        allowed = _allowed_modes(gate, gates)
        if not isinstance(mode, str):
            raise ValueError(f"{name}.{gate}={mode!r} is not a gate mode; allowed: {allowed}")
        kind, source = parse_mode(mode)
        if kind in ("learned", "open"):
            continue
        if source == gate:
            raise ValueError(f"{name}.{gate}={mode!r} ties the gate to itself; allowed: {allowed}")
        if source not in gates:
            raise ValueError(f"{name}.{gate}={mode!r} is not a gate mode; allowed: {allowed}")
        if modes[source] != "learned":
            cycle = parse_mode(modes[source])[1] == gate
            why = "a cycle" if cycle else f"{name}.{source}={modes[source]!r} is not learned"
            raise ValueError(
                f"{name}.{gate}={mode!r} ties to '{source}', but {why}; a gate can only be tied "
                f"to a learned gate. Allowed for {gate}: {allowed}"
            )


def _validate_choice(spec: object, field: str, allowed: tuple[str, ...]) -> None:
    value = getattr(spec, field)
    if value not in allowed:
        raise ValueError(
            f"{type(spec).__name__}.{field}={value!r} is not allowed; allowed: "
            + ", ".join(repr(a) for a in allowed)
        )


def _validate_bool(spec: object, field: str) -> None:
    value = getattr(spec, field)
    if not isinstance(value, bool):
        raise ValueError(f"{type(spec).__name__}.{field}={value!r} must be True or False")


def _validate_float(spec: object, field: str) -> None:
    value = getattr(spec, field)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{type(spec).__name__}.{field}={value!r} must be a finite number")


def _one_line(spec: object) -> str:
    """``LSTMSpec(forget='1-input', output='open')``: only the fields that differ from defaults."""
    parts = []
    for field in dataclasses.fields(spec):  # type: ignore[arg-type]
        value = getattr(spec, field.name)
        if value != field.default:
            parts.append(f"{field.name}={value!r}")
    return f"{type(spec).__name__}({', '.join(parts)})"


class _SpecMethods:
    """Methods every spec shares; each spec class is final and frozen."""

    GATES: tuple[str, ...] = ()

    def replace(self, **changes):
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def __repr__(self) -> str:
        return _one_line(self)

    __str__ = __repr__

    def mode(self, gate: str) -> tuple[ModeKind, str | None]:
        """The parsed mode of ``gate`` (see ``parse_mode``)."""
        return parse_mode(getattr(self, gate))

    @property
    def gates(self) -> tuple[str, ...]:
        """Every gate of the family, in canonical order."""
        return self.GATES

    @property
    def learned_gates(self) -> tuple[str, ...]:
        """The gates that own parameters, in canonical order (also the fused block order)."""
        return tuple(g for g in self.gates if getattr(self, g) == "learned")

    @property
    def live_gates(self) -> tuple[str, ...]:
        """The gates that are not the constant 1 (learned or tied)."""
        return tuple(g for g in self.gates if getattr(self, g) != "open")


# --------------------------------------------------------------------------------------------------
# The three families.
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, repr=False)
class LSTMSpec(_SpecMethods):
    """An LSTM cell: Greff et al. (2017) section 1.1 of REFERENCE.md, with every part ablatable.

    Equations (``sigma`` the logistic sigmoid; ``[...]`` present only where switched on)::

        z_t = g(W_z x_t + U_z h_{t-1} + b_z)                          candidate ("block input")
        i_t = gate(input):  sigma(W_i x_t + U_i h_{t-1} [+ p_i * c_{t-1}] [+ R_i a_{t-1}] + b_i)
        f_t = gate(forget): sigma(W_f x_t + U_f h_{t-1} [+ p_f * c_{t-1}] [+ R_f a_{t-1}] + b_f)
        c_t = f_t * c_{t-1} + i_t * z_t
        o_t = gate(output): sigma(W_o x_t + U_o h_{t-1} [+ p_o * c_t] [+ R_o a_{t-1}] + b_o)
        h_t = o_t * act(c_t)

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
        _validate_gates(self, self.GATES)
        _validate_choice(self, "candidate_activation", ACTIVATIONS)
        _validate_choice(self, "cell_activation", ACTIVATIONS)
        _validate_bool(self, "peepholes")
        _validate_bool(self, "gate_recurrence")
        _validate_float(self, "forget_bias")
        _validate_float(self, "tie_shift")
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
            _validate_float(self, "chrono_tmax")
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


@dataclasses.dataclass(frozen=True, repr=False)
class GRUSpec(_SpecMethods):
    """A GRU cell (Cho et al. 2014) in the convention where ``update`` is the fraction written.

    Equations (REFERENCE.md section 3; Chung et al.'s interpolation)::

        u_t = gate(update): sigma(W_u x_t + U_u h_{t-1} + b_u)
        r_t = gate(reset):  sigma(W_r x_t + U_r h_{t-1} + b_r)
        reset_after=True  (PyTorch, cuDNN, Flax):
            h~_t = g(W_c x_t + b_c + r_t * (U_c h_{t-1} + b_ch))
        reset_after=False (Keras v3 form, TF GRUBlockCell, MGU):
            h~_t = g(W_c x_t + U_c (r_t * h_{t-1}) + b_c)
        h_t = (1 - u_t) * h_{t-1} + u_t * h~_t

    PyTorch's and Flax's ``z`` is ``1 - u``. MGU is ``GRUSpec(reset="update", reset_after=False)``;
    ``update="open"`` replaces the state by the candidate at every step.

    Attributes:
        update: mode of the update gate (fraction of the candidate written).
        reset: mode of the reset gate (fraction of ``h_{t-1}`` the candidate sees).
        reset_after: where the reset gate acts (above). The separate recurrent candidate bias
            ``b_ch`` exists only with ``reset_after=True`` and a reset gate that is not open.
        candidate_activation: ``g``: ``"tanh"`` or ``"identity"``.
        update_bias: initial value of the update gate's bias (UGRNN: -1, i.e. keep
            ``sigma(1)`` of the state at the start).
        reset_bias: initial value of the reset gate's bias.
        tie_shift: ``beta`` of a complement tie, ``1 - sigma(s - beta)``.
    """

    update: GateMode = "learned"
    reset: GateMode = "learned"
    reset_after: bool = True
    candidate_activation: str = "tanh"
    update_bias: float = 0.0
    reset_bias: float = 0.0
    tie_shift: float = 0.0

    GATES = ("update", "reset")

    def __post_init__(self):
        _validate_gates(self, self.GATES)
        _validate_choice(self, "candidate_activation", ACTIVATIONS)
        _validate_bool(self, "reset_after")
        _validate_float(self, "update_bias")
        _validate_float(self, "reset_bias")
        _validate_float(self, "tie_shift")

    @property
    def recurrent_candidate_bias(self) -> bool:
        """Whether the candidate owns ``bias_h`` (``b_ch``): reset after the matmul, not open."""
        return self.reset_after and self.reset != "open"


@dataclasses.dataclass(frozen=True, repr=False)
class MinSpec(_SpecMethods):
    """The minimal family, whose gates see only ``x_t`` (Feng et al. 2024, arXiv:2410.01201).

    Equations (REFERENCE.md section 3; ``Lin`` an affine map of ``x_t`` alone)::

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
        _validate_choice(self, "family", tuple(self.FAMILY_GATES))
        for gate in ("update", "forget", "input"):
            if gate not in self.gates and getattr(self, gate) != "learned":
                raise ValueError(
                    f"MinSpec.{gate} applies to family="
                    f"{'gru' if gate == 'update' else 'lstm'!r} only; with "
                    f"family={self.family!r} the gates are: {', '.join(self.gates)}"
                )
        _validate_gates(self, self.gates)
        _validate_bool(self, "normalize")
        _validate_bool(self, "log_space")
        _validate_choice(self, "candidate_activation", MIN_ACTIVATIONS)
        if self.log_space and self.candidate_activation != "g":
            raise ValueError(
                f"MinSpec.candidate_activation={self.candidate_activation!r} with log_space=True: "
                "the log-space scan needs a positive candidate; allowed: 'g' (or set "
                "log_space=False)"
            )

    @property
    def gates(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.FAMILY_GATES[self.family]


Spec: TypeAlias = LSTMSpec | GRUSpec | MinSpec


# --------------------------------------------------------------------------------------------------
# Parameter counts in closed form (tests check the built modules against these).
# --------------------------------------------------------------------------------------------------


def param_breakdown(spec: Spec, input_size: int, features: int) -> dict[str, int]:
    """Parameters of one cell, per part, in closed form.

    With ``D = input_size`` and ``H = features``:

    - LSTM: every learned gate and the candidate own ``D*H + H*H + H`` (``kernel_x``,
      ``kernel_h``, ``bias``), a learned gate ``+ H`` with peepholes, and FGR adds ``(G*H)**2``
      for the ``G`` learned gates.
    - GRU: the same per learned gate and for the candidate, ``+ H`` for the candidate's recurrent
      bias where ``reset_after`` and the reset gate is not open.
    - Min family: every learned gate and the candidate own ``D*H + H`` (no recurrent kernels).

    Returns:
        ``{part: count}`` for the parts that exist (removed and tied gates are absent).
    """
    d, h = input_size, features
    parts: dict[str, int] = {}
    if isinstance(spec, MinSpec):
        for gate in spec.learned_gates:
            parts[gate] = d * h + h
        parts["candidate"] = d * h + h
        return parts
    block = d * h + h * h + h
    for gate in spec.learned_gates:
        parts[gate] = block + (h if isinstance(spec, LSTMSpec) and spec.peepholes else 0)
    parts["candidate"] = block
    if isinstance(spec, GRUSpec) and spec.recurrent_candidate_bias:
        parts["candidate"] += h
    if isinstance(spec, LSTMSpec) and spec.gate_recurrence and spec.learned_gates:
        parts["gate_recurrence"] = (len(spec.learned_gates) * h) ** 2
    return parts


def param_count(spec: Spec, input_size: int, features: int) -> int:
    """Total parameters of one cell (see ``param_breakdown``)."""
    return sum(param_breakdown(spec, input_size, features).values())
