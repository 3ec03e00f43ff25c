"""Gate statistics: one definition for the runner's records and for ``gatelab inspect``.

For every live gate of every layer: the mean activation over valid entries, the fraction below
``LOW`` and above ``HIGH`` (saturation), and for the gate whose value is the fraction of the state
kept (the LSTM's forget gate, ``1 - update`` in the GRU family) the characteristic memory time
``1 / (1 - kept)`` in steps (Tallec & Ollivier 2018).

Totals are taken per example on the device and summed on the host in float64, so the statistics
do not depend on how XLA splits a reduction over threads (or batches).

Notation: ``b`` batch (examples), ``t`` time, ``H`` hidden features.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["LOW", "HIGH", "STATISTICS", "activations", "example_sums", "statistics", "memory"]

Array = jax.Array

LOW, HIGH = 0.1, 0.9  # a gate below LOW is nearly shut, above HIGH nearly open
STATISTICS = ("mean", "low", "high")

# The gate whose value is the fraction of the state kept, per family: its memory time is
# 1 / (1 - kept). For the GRU family the kept fraction is 1 - update.
_KEPT = {"forget": lambda v: v, "update": lambda v: 1.0 - v}


def activations(captured: dict) -> dict[str, dict[str, Array]]:
    """``{layer: {gate: (b, t, H)}}`` from a model's ``gates`` collection (applied with
    ``mutable=["gates"]``)."""
    return {layer: dict(collection["activations"][0]) for layer, collection in captured.items()}


def example_sums(values: dict[str, dict[str, Array]], valid: Array | None) -> dict[str, tuple]:
    """Per example, the totals the statistics are made of, for every layer's gates.

    Args:
        values: ``{layer: {gate: (b, t, H)}}`` activations (``activations``).
        valid: (b, t) weights of the valid steps, or ``None`` when every step counts.

    Returns:
        ``{"<layer>/<gate>": (sum, below LOW, above HIGH, count)}``, each (b,).
    """
    sums = {}
    for layer, gates in values.items():
        for gate, value in gates.items():
            steps = jnp.ones(value.shape[:2]) if valid is None else valid
            weight = steps[..., None] * jnp.ones_like(value)
            per_example = lambda v: jnp.sum(v * weight, axis=(1, 2))  # noqa: E731, B023
            sums[f"{layer}/{gate}"] = (
                per_example(value),
                per_example((value < LOW).astype(value.dtype)),
                per_example((value > HIGH).astype(value.dtype)),
                per_example(jnp.ones_like(value)),
            )
    return sums


def statistics(sums: dict[str, tuple]) -> dict[str, float]:
    """``{"<layer>/<gate>/<stat>": value}`` from ``example_sums`` of any number of examples
    (host arrays, each (b,)), summed in float64."""
    stats = {}
    for name, (value, low, high, count) in sums.items():
        total = np.sum(count, dtype=np.float64)
        stats[f"{name}/mean"] = float(np.sum(value, dtype=np.float64) / total)
        stats[f"{name}/low"] = float(np.sum(low, dtype=np.float64) / total)
        stats[f"{name}/high"] = float(np.sum(high, dtype=np.float64) / total)
    return stats


def memory(gate: str, entries: np.ndarray) -> dict[str, float]:
    """For the gate of the kept fraction, the memory time ``1 / (1 - kept)`` of its valid
    ``entries``: its median, and its value at the mean (empty for other gates)."""
    if gate not in _KEPT:
        return {}
    kept = np.clip(_KEPT[gate](entries.astype(np.float64)), 0.0, 1.0 - 1e-6)
    return {
        "memory_median": float(np.median(1.0 / (1.0 - kept))),
        "memory_of_mean": float(1.0 / (1.0 - min(kept.mean(), 1.0 - 1e-6))),
    }
