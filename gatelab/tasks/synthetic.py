"""Synthetic long-range tasks: the adding problem and the copy task (docs/reference.md, section 8).

Notation: ``b`` batch, ``t`` steps (``T`` for the adding problem, ``T + 20`` for the copy task).

Both tasks generate every training batch inside the compiled program from a PRNG key, so there
is no data to hold: ``train_data()`` is empty. Their validation and test sets are drawn by the
same generator from fixed keys, once, and kept as NumPy arrays.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gatelab.tasks.base import Batch, MetricInfo

__all__ = ["Adding", "Copy"]

# Fixed keys of the evaluation sets: they never change with a run's seed.
_EVAL_SEEDS = {"validation": 1_000_001, "test": 1_000_002}


def _eval_split(split: str) -> int:
    if split not in _EVAL_SEEDS:
        raise ValueError(f"unknown split {split!r}; the splits are {sorted(_EVAL_SEEDS)}")
    return _EVAL_SEEDS[split]


def parse_lengths(task: str, value, least: int) -> tuple[int, ...]:
    """``eval_lengths`` as given (a tuple, ``"100,200,400"`` from the command line, or one int)
    as a sorted tuple of distinct ints of at least ``least``; a clear error otherwise."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace("(", "").replace(")", "").split(",")]
        value = tuple(p for p in parts if p)
    elif isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    try:
        lengths = tuple(sorted({int(v) for v in value}))
        if any(isinstance(v, bool) or float(v) != int(v) for v in value):
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(
            f"{task}: eval_lengths must be integers, e.g. eval_lengths=100,200,400; got {value!r}"
        ) from None
    if any(length < least for length in lengths):
        raise ValueError(f"{task}: every eval length must be at least {least}, got {lengths}")
    return lengths


class Adding:
    """The adding problem (Le, Jaitly & Hinton 2015; docs/reference.md, section 8).

    Shapes::

        inputs   (b, T, 2) float32   channel 0: values ~ U[0, 1]; channel 1: two markers (1.0)
        targets  (b,) float32        the sum of the two marked values
        outputs  (b, 1)              the model's prediction

    One marker falls uniformly in the first half of the sequence (steps ``[0, T // 2)``) and one
    in the second half (``[T // 2, T)``), the common convention. The loss and the primary metric
    ``mse`` are the mean squared error. Always predicting 1 scores ``Var(U1 + U2) = 1/6``, the
    ``chance`` line; the papers quote 0.1767 for that strategy, which we report only as the
    literature's figure.

    Args:
        length: ``T``, the number of steps.
        eval_size: examples in each of the fixed validation and test sets.
        eval_lengths: other lengths to test at, once trained (length generalisation): the runner
            records ``test/mse@<T>`` for each.
    """

    name = "adding"
    input_kind: Literal["real"] = "real"
    input_size = 2
    output_size = 1
    target_kind: Literal["value"] = "value"
    primary_metric = "mse"
    direction: Literal["min"] = "min"
    chance = 1.0 / 6.0
    literature_chance = 0.1767  # docs/reference.md, section 8: quoted for "always predict 1"
    metric_info = {"mse": MetricInfo("MSE")}
    note = ""

    def __init__(self, length: int = 100, eval_size: int = 1000, eval_lengths: tuple = ()):
        if length < 2:
            raise ValueError(
                f"adding: length must be at least 2 (one marker per half), got {length}"
            )
        if eval_size < 1:
            raise ValueError(f"adding: eval_size must be positive, got {eval_size}")
        self.length = int(length)
        self.eval_size = int(eval_size)
        self.eval_lengths = parse_lengths("adding", eval_lengths, 2)
        self.seq_len = self.length
        self._eval: dict[str, dict[str, np.ndarray]] = {}

    def at_length(self, length: int) -> Adding:
        """The same task at another ``T`` (its evaluation sets drawn from the same keys)."""
        return Adding(length, self.eval_size)

    def train_data(self) -> dict[str, jax.Array]:
        return {}

    def train_batch(self, data: dict[str, jax.Array], key: jax.Array, batch_size: int) -> Batch:
        del data  # generated, not drawn from stored arrays
        return _adding_batch(key, batch_size, self.length)

    def eval_set(self, split: Literal["validation", "test"]) -> dict[str, np.ndarray]:
        if split not in self._eval:
            batch = _adding_jit(jax.random.key(_eval_split(split)), self.eval_size, self.length)
            self._eval[split] = {k: np.asarray(v) for k, v in batch.items()}
        return self._eval[split]

    def loss(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        return jnp.mean(jnp.square(outputs[:, 0] - batch["targets"]))

    def metrics(self, outputs: jax.Array, batch: Batch) -> dict[str, tuple[jax.Array, jax.Array]]:
        squared = jnp.square(outputs[:, 0] - batch["targets"])
        return {"mse": (jnp.sum(squared), jnp.asarray(squared.shape[0], jnp.float32))}


def _adding_batch(key: jax.Array, batch_size: int, length: int) -> Batch:
    values_key, first_key, second_key = jax.random.split(key, 3)
    values = jax.random.uniform(values_key, (batch_size, length), jnp.float32)
    half = length // 2
    first = jax.random.randint(first_key, (batch_size,), 0, half)
    second = jax.random.randint(second_key, (batch_size,), half, length)
    steps = jnp.arange(length)[None, :]
    markers = (steps == first[:, None]) | (steps == second[:, None])
    markers = markers.astype(jnp.float32)
    targets = jnp.sum(values * markers, axis=1)
    return {"inputs": jnp.stack([values, markers], axis=-1), "targets": targets}


_adding_jit = jax.jit(_adding_batch, static_argnums=(1, 2))


class Copy:
    """The copy task in Arjovsky, Shah & Bengio's format (docs/reference.md, section 8).

    Shapes (``t = T + 20``)::

        inputs   (b, t) int32   10 data symbols from 0-7, T - 1 blanks (8), the delimiter (9),
                                10 blanks
        targets  (b, t) int32   T + 10 blanks (8), then the 10 data symbols
        outputs  (b, t, 9)      logits over the 9 target symbols (0-7 and the blank)

    The delimiter is an input symbol only, so the model predicts 9 classes (as in the uRNN
    code); the input vocabulary has 10. The loss and the primary metric ``loss`` are the
    cross-entropy in nats per step, averaged over all ``T + 20`` steps. ``accuracy`` counts the
    10 recalled symbols only. The baseline that outputs blanks and then guesses uniformly among
    the 8 symbols scores ``10 log(8) / (T + 20)``, the ``chance`` line.

    Args:
        delay: ``T``; the delimiter comes ``T`` steps after the last data symbol.
        eval_size: examples in each of the fixed validation and test sets.
        eval_lengths: other delays to test at, once trained (length generalisation): the runner
            records ``test/loss@<T>`` and ``test/accuracy@<T>`` for each.
    """

    name = "copy"
    input_kind: Literal["tokens"] = "tokens"
    input_size = 10
    output_size = 9
    target_kind: Literal["step_class"] = "step_class"
    primary_metric = "loss"
    direction: Literal["min"] = "min"
    metric_info = {
        "loss": MetricInfo("cross-entropy", "nats/step"),
        "accuracy": MetricInfo("recall accuracy", "%", "max"),
    }
    note = ""
    symbols = 8  # data symbols 0-7
    blank = 8
    delimiter = 9
    recall = 10  # data symbols to copy

    def __init__(self, delay: int = 100, eval_size: int = 1000, eval_lengths: tuple = ()):
        if delay < 1:
            raise ValueError(f"copy: delay must be at least 1, got {delay}")
        if eval_size < 1:
            raise ValueError(f"copy: eval_size must be positive, got {eval_size}")
        self.delay = int(delay)
        self.eval_size = int(eval_size)
        self.eval_lengths = parse_lengths("copy", eval_lengths, 1)
        self.seq_len = self.delay + 2 * self.recall
        self.chance = self.recall * math.log(self.symbols) / self.seq_len
        self._eval: dict[str, dict[str, np.ndarray]] = {}

    def at_length(self, delay: int) -> Copy:
        """The same task at another delay ``T`` (its evaluation sets drawn from the same keys)."""
        return Copy(delay, self.eval_size)

    def train_data(self) -> dict[str, jax.Array]:
        return {}

    def train_batch(self, data: dict[str, jax.Array], key: jax.Array, batch_size: int) -> Batch:
        del data  # generated, not drawn from stored arrays
        return _copy_batch(key, batch_size, self.delay)

    def eval_set(self, split: Literal["validation", "test"]) -> dict[str, np.ndarray]:
        if split not in self._eval:
            batch = _copy_jit(jax.random.key(_eval_split(split)), self.eval_size, self.delay)
            self._eval[split] = {k: np.asarray(v) for k, v in batch.items()}
        return self._eval[split]

    def _cross_entropy(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        return optax.softmax_cross_entropy_with_integer_labels(outputs, batch["targets"])

    def loss(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        return jnp.mean(self._cross_entropy(outputs, batch))

    def metrics(self, outputs: jax.Array, batch: Batch) -> dict[str, tuple[jax.Array, jax.Array]]:
        cross_entropy = self._cross_entropy(outputs, batch)
        recalled = outputs[:, -self.recall :]
        correct = jnp.argmax(recalled, axis=-1) == batch["targets"][:, -self.recall :]
        return {
            "loss": (jnp.sum(cross_entropy), jnp.asarray(cross_entropy.size, jnp.float32)),
            "accuracy": (
                jnp.sum(correct.astype(jnp.float32)),
                jnp.asarray(correct.size, jnp.float32),
            ),
        }


def _copy_batch(key: jax.Array, batch_size: int, delay: int) -> Batch:
    recall = Copy.recall
    data = jax.random.randint(key, (batch_size, recall), 0, Copy.symbols, jnp.int32)
    blanks = functools.partial(jnp.full, dtype=jnp.int32, fill_value=Copy.blank)
    delimiter = jnp.full((batch_size, 1), Copy.delimiter, jnp.int32)
    inputs = jnp.concatenate(
        [data, blanks((batch_size, delay - 1)), delimiter, blanks((batch_size, recall))], axis=1
    )
    targets = jnp.concatenate([blanks((batch_size, delay + recall)), data], axis=1)
    return {"inputs": inputs, "targets": targets}


_copy_jit = jax.jit(_copy_batch, static_argnums=(1, 2))
