"""Sequence classification: MNIST-1D and scikit-learn's 8x8 digits read row by row.

Notation: ``b`` batch, ``t`` steps, ``d`` features per step, ``o = 10`` classes.

Shapes::

    inputs   (b, t, d) float32   MNIST-1D: t = 40, d = 1; digits: t = 8 rows, d = 8 pixels
    targets  (b,) int32          the class, 0-9
    outputs  (b, 10)             logits

Both datasets are small enough to live on the device whole: ``train_data()`` holds the training
inputs and labels, and ``train_batch`` draws ``batch_size`` indices uniformly *with replacement*
inside the compiled program (a permutation per epoch would need host state between steps).
Metrics: ``accuracy`` (primary, higher is better, chance 0.1 for ten balanced classes) and
``loss``, the softmax cross-entropy in nats.
"""

from __future__ import annotations

import random
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gatelab.tasks import cache
from gatelab.tasks.base import Batch, MetricInfo

__all__ = ["MNIST1D", "Digits"]

_SPLITS = ("validation", "test")


class _Classification:
    """Loss, metrics and batches shared by the two classification tasks (final subclasses)."""

    input_kind: Literal["real"] = "real"
    output_size = 10
    target_kind: Literal["class"] = "class"
    primary_metric = "accuracy"
    direction: Literal["max"] = "max"
    chance = 0.1  # a uniform guess over ten (near-)balanced classes
    metric_info = {
        "accuracy": MetricInfo("accuracy", "%", "max"),
        "loss": MetricInfo("cross-entropy", "nats/example"),
    }
    note = ""

    name: str
    input_size: int
    seq_len: int
    _train: dict[str, np.ndarray]
    _eval: dict[str, dict[str, np.ndarray]]

    def train_data(self) -> dict[str, jax.Array]:
        return {key: jnp.asarray(value) for key, value in self._train.items()}

    def train_batch(self, data: dict[str, jax.Array], key: jax.Array, batch_size: int) -> Batch:
        index = jax.random.randint(key, (batch_size,), 0, data["targets"].shape[0])
        return {"inputs": data["inputs"][index], "targets": data["targets"][index]}

    def eval_set(self, split: Literal["validation", "test"]) -> dict[str, np.ndarray]:
        if split not in self._eval:
            raise ValueError(f"unknown split {split!r}; the splits are {list(_SPLITS)}")
        return self._eval[split]

    def loss(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(outputs, batch["targets"]))

    def metrics(self, outputs: jax.Array, batch: Batch) -> dict[str, tuple[jax.Array, jax.Array]]:
        cross_entropy = optax.softmax_cross_entropy_with_integer_labels(outputs, batch["targets"])
        correct = (jnp.argmax(outputs, axis=-1) == batch["targets"]).astype(jnp.float32)
        count = jnp.asarray(correct.shape[0], jnp.float32)
        return {"accuracy": (jnp.sum(correct), count), "loss": (jnp.sum(cross_entropy), count)}


def _batch(inputs: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    return {"inputs": inputs.astype(np.float32), "targets": targets.astype(np.int32)}


# ----------------------------------------------------------------------------------------------
# MNIST-1D


def _build_mnist1d() -> dict[str, np.ndarray]:
    data_module = cache.require("mnist1d.data", "mnist1d")
    # make_dataset seeds NumPy's and Python's global generators (seed 42); put them back after.
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        # The package's own generator with its default arguments; never get_dataset, which
        # downloads a pickle.
        dataset = data_module.make_dataset(data_module.get_dataset_args())
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    return {
        "x": np.asarray(dataset["x"], np.float32),
        "y": np.asarray(dataset["y"], np.int32),
        "x_test": np.asarray(dataset["x_test"], np.float32),
        "y_test": np.asarray(dataset["y_test"], np.int32),
    }


class MNIST1D(_Classification):
    """MNIST-1D (Greydanus 2020; docs/reference.md, section 8), generated, never downloaded.

    The data come from the ``mnist1d`` package's ``make_dataset`` with its default arguments
    (5000 examples, seed 42, 4000 train / 1000 test, length 40, globally standardised). The
    validation set is the *last* ``validation`` examples of the generator's (already shuffled)
    training split, so models here train on ``4000 - validation`` examples; the published
    numbers (GRU 91%, CNN 94%, MLP 68% test accuracy) train on all 4000.

    Args:
        validation: training examples held out for validation (1 to 3999).
    """

    name = "mnist1d"
    input_size = 1
    seq_len = 40
    cache_version = "1"  # bump when _build_mnist1d's output changes

    def __init__(self, validation: int = 500):
        if not 1 <= validation < 4000:
            raise ValueError(f"mnist1d: validation must be in [1, 4000), got {validation}")
        self.validation = int(validation)
        version = f"gatelab-{self.cache_version}/mnist1d-{cache.package_version('mnist1d')}"
        arrays = cache.load_or_build("mnist1d", version, _build_mnist1d)
        inputs, labels = arrays["x"][:, :, None], arrays["y"]
        cut = inputs.shape[0] - self.validation
        self._train = _batch(inputs[:cut], labels[:cut])
        self._eval = {
            "validation": _batch(inputs[cut:], labels[cut:]),
            "test": _batch(arrays["x_test"][:, :, None], arrays["y_test"]),
        }


# ----------------------------------------------------------------------------------------------
# Digits

_DIGITS_SEED = 0  # the split's permutation; fixed so every run sees the same split


def _build_digits() -> dict[str, np.ndarray]:
    datasets = cache.require("sklearn.datasets", "scikit-learn")
    digits = datasets.load_digits()  # bundled with scikit-learn: no download
    return {"images": np.asarray(digits.images, np.uint8), "labels": digits.target.astype(np.int32)}


def _stratified_split(labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Indices of a 60/20/20 split that keeps every class's share (rounded) in each part."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "validation": [], "test": []}
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        first, second = round(0.6 * len(members)), round(0.8 * len(members))
        parts["train"].append(members[:first])
        parts["validation"].append(members[first:second])
        parts["test"].append(members[second:])
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}


class Digits(_Classification):
    """scikit-learn's 8x8 digits read row by row: the classic "image rows as a sequence" task.

    1797 images of 8x8 pixels with values 0-16, scaled to [0, 1]; each of the 8 steps is one row
    of 8 pixels. The split is stratified by class, 60/20/20 from a fixed permutation: 1078 /
    360 / 359 images for train / validation / test.
    """

    name = "digits"
    input_size = 8
    seq_len = 8
    cache_version = "1"  # bump when _build_digits's output changes

    def __init__(self) -> None:
        version = (
            f"gatelab-{self.cache_version}/scikit-learn-{cache.package_version('scikit-learn')}"
        )
        arrays = cache.load_or_build("digits", version, _build_digits)
        images = arrays["images"].astype(np.float32) / 16.0
        labels = arrays["labels"]
        index = _stratified_split(labels, _DIGITS_SEED)
        self._train = _batch(images[index["train"]], labels[index["train"]])
        self._eval = {
            split: _batch(images[index[split]], labels[index[split]]) for split in _SPLITS
        }
