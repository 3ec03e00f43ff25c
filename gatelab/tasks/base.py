"""The Task protocol: a task owns its data and its loss (docs/design.md, "Tasks").

A batch is a dict of arrays:

  ``inputs``   (b, t, d) float32 for real-valued inputs, or (b, t) int32 token ids
  ``targets``  by ``target_kind``:
               ``"class"``       (b,) int32, one label per sequence
               ``"value"``       (b,) float32, one number per sequence (regression)
               ``"step_class"``  (b, t) int32, a label per step
               ``"step_binary"`` (b, t, o) float32 in {0, 1}, independent labels per step
  ``lengths``  (b,) int32, only for tasks whose sequences vary in length; steps at or past a
               sequence's length are padding and count nowhere.

The model's ``outputs`` are (b, o) for ``class``/``value`` (logits, or the prediction with
``o = 1``) and (b, t, o) for the per-step kinds.

Training batches are drawn inside compiled code: ``train_batch(data, key, batch_size)`` is a pure
JAX function of ``data = task.train_data()`` (arrays on the device, passed into the compiled
program as an argument rather than baked in as constants) and a PRNG key. Validation and test sets
are fixed NumPy arrays. ``metrics`` returns ``{name: (total, weight)}`` so that evaluation in
batches averages exactly: the metric is ``sum(total) / sum(weight)`` over all batches.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Protocol, runtime_checkable

import jax
import numpy as np

__all__ = ["Task", "Batch", "MetricInfo", "TargetKind", "masked_steps", "pad_examples"]

Batch = dict[str, jax.Array]
TargetKind = Literal["class", "value", "step_class", "step_binary"]


@dataclasses.dataclass(frozen=True)
class MetricInfo:
    """What a report must say about one of a task's metrics (written into every run's record,
    so that the report never needs to know the task).

    Attributes:
        label: its name in words, e.g. ``"cross-entropy"``, ``"recall accuracy"``.
        unit: e.g. ``"nats/step"``; ``"%"`` for a fraction that a reader sees as a percentage.
        direction: ``"max"`` when higher is better, else ``"min"``.
    """

    label: str
    unit: str = ""
    direction: Literal["min", "max"] = "min"


@runtime_checkable
class Task(Protocol):
    """What every task provides. Attributes are plain values, fixed at construction."""

    name: str
    input_kind: Literal["real", "tokens"]  # real: (b, t, d) floats; tokens: (b, t) ids
    input_size: int  # d for real inputs; the vocabulary size for tokens
    output_size: int  # o: classes, 1 for a regression, keys per step, vocabulary size
    target_kind: TargetKind
    seq_len: int  # t: steps of every batch (padded where lengths vary)
    primary_metric: str  # a key of ``metrics``, e.g. "accuracy"
    direction: Literal["min", "max"]  # whether lower or higher ``primary_metric`` is better
    chance: float  # ``primary_metric`` of the trivial predictor (plots draw it)
    metric_info: dict[str, MetricInfo]  # every key of ``metrics``: label, unit, direction
    # Optional (the synthetic tasks): ``eval_lengths``, other lengths to test at once trained,
    # and ``at_length(T)``, the task at length T; the runner records ``test/<m>@<T>``.
    note: str  # what every report of the task must say ("" for none)

    def train_data(self) -> dict[str, jax.Array]:
        """Arrays the training batches are drawn from (empty for synthetic tasks)."""
        ...

    def train_batch(self, data: dict[str, jax.Array], key: jax.Array, batch_size: int) -> Batch:
        """A training batch, drawn inside ``jax.jit`` from ``key`` (no host callbacks)."""
        ...

    def eval_set(self, split: Literal["validation", "test"]) -> dict[str, np.ndarray]:
        """The fixed validation or test set, a batch dict of NumPy arrays."""
        ...

    def loss(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        """The scalar training loss (mean over examples, or over valid steps)."""
        ...

    def metrics(self, outputs: jax.Array, batch: Batch) -> dict[str, tuple[jax.Array, jax.Array]]:
        """``{name: (total, weight)}``; the metric is ``total / weight`` summed over batches."""
        ...


def masked_steps(batch: Batch, steps: int) -> jax.Array | None:
    """(b, t) float32 mask of valid steps from ``batch["lengths"]``, or ``None`` without lengths."""
    lengths = batch.get("lengths")
    if lengths is None:
        return None
    return (jax.numpy.arange(steps)[None, :] < lengths[:, None]).astype(jax.numpy.float32)


def pad_examples(values: np.ndarray, size: int) -> np.ndarray:
    """``values`` with its last example repeated up to ``size`` examples (a padded eval batch)."""
    missing = size - len(values)
    if not missing:
        return values
    return np.concatenate([values, np.repeat(values[-1:], missing, axis=0)])
