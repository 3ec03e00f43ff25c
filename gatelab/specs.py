"""Gate specifications: an ablation is a value, not a class.

A spec says, for every gate of a cell family, how that gate is computed (docs/design.md, "Cells:
gates are data"; each family's spec class lives in its module under ``gatelab/families``):

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
    "SpecBase",
    "GateMode",
    "ModeKind",
    "ACTIVATIONS",
    "parse_mode",
    "validate_gates",
    "validate_choice",
    "validate_bool",
    "validate_float",
    "ordered_fields",
]

GateMode: TypeAlias = str
ModeKind: TypeAlias = Literal["learned", "open", "complement", "shared"]

ACTIVATIONS = ("tanh", "identity")


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
# Validation shared by every family.
# --------------------------------------------------------------------------------------------------


def _allowed_modes(gate: str, gates: tuple[str, ...]) -> str:
    others = [g for g in gates if g != gate]
    ties = ", ".join([f"'1-{g}'" for g in others] + [f"'{g}'" for g in others])
    return "'learned', 'open'" + (f", {ties}" if ties else "")


def validate_gates(spec: object, gates: tuple[str, ...]) -> None:
    """Checks every gate mode of ``spec``: known, not self-tied, tied only to learned gates."""
    name = type(spec).__name__
    modes = {gate: getattr(spec, gate) for gate in gates}
    for gate, mode in modes.items():  # every mode a string first: a tie reads its source's
        if not isinstance(mode, str):
            allowed = _allowed_modes(gate, gates)
            raise ValueError(f"{name}.{gate}={mode!r} is not a gate mode; allowed: {allowed}")
    for gate, mode in modes.items():
        allowed = _allowed_modes(gate, gates)
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


def validate_choice(spec: object, field: str, allowed: tuple[str, ...]) -> None:
    value = getattr(spec, field)
    if value not in allowed:
        raise ValueError(
            f"{type(spec).__name__}.{field}={value!r} is not allowed; allowed: "
            + ", ".join(repr(a) for a in allowed)
        )


def validate_bool(spec: object, field: str) -> None:
    value = getattr(spec, field)
    if not isinstance(value, bool):
        raise ValueError(f"{type(spec).__name__}.{field}={value!r} must be True or False")


def validate_float(spec: object, field: str) -> None:
    value = getattr(spec, field)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{type(spec).__name__}.{field}={value!r} must be a finite number")


def ordered_fields(spec: object) -> list[dataclasses.Field]:
    """A spec's fields, the family's own first and the shared keyword-only ones (the
    regularisers) after."""
    return sorted(dataclasses.fields(spec), key=lambda f: bool(f.kw_only))  # type: ignore[arg-type]


def _one_line(spec: object) -> str:
    """``LSTMSpec(forget='1-input', output='open')``: only the fields that differ from defaults."""
    parts = []
    for field in ordered_fields(spec):
        value = getattr(spec, field.name)
        if value != field.default:
            parts.append(f"{field.name}={value!r}")
    return f"{type(spec).__name__}({', '.join(parts)})"


class SpecBase:
    """What every spec shares. A family's spec is a frozen dataclass deriving from it (and final:
    a variant is a value of the spec, never a subclass)."""

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

    def describe_gate(self, gate: str) -> str:
        """What ``gate`` is, in words: ``learned``, ``removed (constant 1)``, ``1 - input``,
        ``shares update`` (families with other gate vocabularies say their own)."""
        kind, source = self.mode(gate)
        return {
            "learned": "learned",
            "open": "removed (constant 1)",
            "complement": f"1 - {source}",
            "shared": f"shares {source}",
        }[kind]

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
