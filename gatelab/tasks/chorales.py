"""Bach chorales as piano rolls: a JSB-like next-frame prediction task (docs/reference.md 8).

Notation: ``b`` batch, ``t`` steps (frames - 1, padded to the longest chorale), ``k = 88`` keys.

Shapes::

    inputs   (b, t, 88) float32   frames 0 .. n-2 of each chorale, zeros past its length
    targets  (b, t, 88) float32   frames 1 .. n-1 (the next frame), zeros past its length
    lengths  (b,) int32           n - 1, the valid steps
    outputs  (b, t, 88)           logits of independent Bernoulli outputs (sigmoid)

This follows Greff et al.'s JSB Chorales task (piano roll over the 88 piano keys, MIDI 21-108,
one frame per quarter note, transposed to C major or C minor, next-step prediction with sigmoid
outputs), but the chorales are those that ship inside the ``music21`` package, not the JSB
files of Boulanger-Lewandowski et al. (2012). **It is a JSB-like set, not JSB itself: its numbers
are not directly comparable with Greff et al.'s**; say so wherever they are put side by side.

How the set is built, exactly:

- **Files**: every MusicXML score under ``music21/corpus/bach`` (sorted by file name), parsed
  with ``forceSource=True`` (so music21 writes no pickle cache of its own).
- **Voices**: a score with exactly four parts is used whole; otherwise its parts named
  Soprano, Alto, Tenor and Bass (first word of the part name) are used when there is exactly
  one of each, and instrumental parts are dropped. Other scores (five-voice chorales, a piano
  prelude) are skipped.
- **Key**: the score's first declared key (every file declares one, with its mode). The roll is
  shifted so its tonic becomes C, by the smallest shift (-6 to +5 semitones); the mode is kept,
  so chorales end up in C major or C minor.
- **Frames**: one per quarter note, at the quarter-note grid of the bar lines (a pickup of half
  a beat shifts the grid by half a beat). Key ``m`` is on in frame ``j`` when some note of pitch
  ``m`` sounds at the frame's start time ``s`` (``onset <= s < onset + duration``). Notes shorter
  than a beat that fall between two frame starts are therefore not seen, as in JSB's sampling
  at quarter-note positions. Ties need no care: a tied note sounds throughout.
- **Kept**: chorales with at least ``MIN_FRAMES`` frames; exact duplicates of an earlier roll
  (the same chorale in two arrangements) are dropped so they cannot straddle the split.
- **Split**: a fixed permutation (seed 0) of the kept chorales in file order; the first
  ``round(0.6 n)`` train, the next ``round(0.2 n)`` validation, the rest test (Greff et al.:
  229/76/77 of 382).

Measured with music21 10.5: 410 score files give 403 chorales (3 scores without a clean SATB
set and 4 exact duplicates dropped), 222 in major and 181 in minor, split 242 / 81 / 80. They
are 24 to 229 frames long (mean 56.5, median 48; JSB's mean is about 61), so batches are padded
to t = 228. Frames have 3.80 notes sounding on average (88% four, 9% three, 3% silent).
Parsing takes about 45 s on one core, once.

Metric: ``nll``, the Bernoulli cross-entropy summed over the 88 keys and averaged over the valid
frames of all sequences (negative log-likelihood per frame, in nats; lower is better). Its
``chance`` line is the NLL of the best constant predictor fitted on the training targets: each
key on with its training frequency (add-one smoothed, so unseen keys cost a finite amount),
scored on those same training frames, i.e. ``sum_k H(p_k)``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gatelab.tasks import cache
from gatelab.tasks.base import Batch, MetricInfo, masked_steps

__all__ = ["Chorales", "KEYS", "LOWEST_KEY", "MIN_FRAMES"]

KEYS = 88  # the piano's keys
LOWEST_KEY = 21  # MIDI number of A0, the lowest piano key
MIN_FRAMES = 8  # two bars of 4/4: anything shorter is not a chorale
_SPLIT_SEED = 0
_CACHE_VERSION = "1"  # bump when _build's output changes
_VOICES = ("soprano", "alto", "tenor", "bass")
_EPSILON = 1e-6  # slack for comparing music21's float offsets with the frame grid


def _voices(score) -> list | None:
    """The four vocal parts of a score, or ``None`` when it has no clean SATB set."""
    parts = list(score.parts)
    if len(parts) == 4:
        return parts
    named: dict[str, list] = {voice: [] for voice in _VOICES}
    for part in parts:
        words = (part.partName or "").split()
        if words and words[0].lower() in named:
            named[words[0].lower()].append(part)
    if all(len(found) == 1 for found in named.values()):
        return [named[voice][0] for voice in _VOICES]
    return None


def _piano_roll(score) -> tuple[np.ndarray, int, str] | None:
    """(frames, 88) uint8 roll in C, the original tonic's pitch class, and the mode; or None."""
    voices = _voices(score)
    if voices is None:
        return None
    declared = list(score.recurse().getElementsByClass("Key"))
    if not declared:
        return None
    key = declared[0]
    tonic = key.tonic.pitchClass
    shift = (-tonic + 6) % 12 - 6  # the nearest C: -6 .. +5 semitones
    # Frame grid: on the beat. A pickup measure of d quarters puts the bar lines at d + integers.
    measures = list(voices[0].getElementsByClass("Measure"))
    phase = 0.0
    if measures and measures[0].duration.quarterLength < measures[0].barDuration.quarterLength:
        phase = float(measures[0].duration.quarterLength) % 1.0
    notes = []  # (onset, end, midi)
    for voice in voices:
        for element in voice.flatten().notes:
            onset = float(element.offset)
            end = onset + float(element.quarterLength)
            notes.extend((onset, end, pitch.midi + shift) for pitch in element.pitches)
    if not notes:
        return None
    frames = math.ceil(max(end for _, end, _ in notes) - phase - _EPSILON)
    roll = np.zeros((max(frames, 0), KEYS), np.uint8)
    for onset, end, midi in notes:
        if not LOWEST_KEY <= midi < LOWEST_KEY + KEYS:
            return None  # off the keyboard after transposition: never happens for chorales
        # Frames j with onset <= phase + j < end.
        first = max(math.ceil(onset - phase - _EPSILON), 0)
        last = math.ceil(end - phase - _EPSILON)
        roll[first:last, midi - LOWEST_KEY] = 1
    return roll, tonic, key.mode


def _build(limit: int | None) -> dict[str, np.ndarray]:
    music21 = cache.require("music21")
    converter = cache.require("music21.converter", "music21")
    tqdm = cache.require("tqdm").tqdm
    root = Path(music21.__file__).parent / "corpus" / "bach"
    files = sorted(path for path in root.iterdir() if path.suffix in (".mxl", ".xml"))
    if limit is not None:
        files = files[:limit]
    rolls, names, tonics, modes, seen = [], [], [], [], set()
    for path in tqdm(files, desc="Parsing the music21 Bach chorales", unit="score"):
        score = converter.parse(path, forceSource=True)
        parsed = _piano_roll(score)
        if parsed is None:
            continue
        roll, tonic, mode = parsed
        fingerprint = roll.tobytes()
        if roll.shape[0] < MIN_FRAMES or fingerprint in seen:
            continue
        seen.add(fingerprint)
        rolls.append(roll)
        names.append(path.stem)
        tonics.append(tonic)
        modes.append(mode)
    lengths = np.asarray([roll.shape[0] for roll in rolls], np.int64)
    return {
        "frames": np.concatenate(rolls) if rolls else np.zeros((0, KEYS), np.uint8),
        "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        "names": np.asarray(names, dtype=str),
        "tonics": np.asarray(tonics, np.int8),
        "modes": np.asarray(modes, dtype=str),
    }


def _split(count: int) -> dict[str, np.ndarray]:
    order = np.random.default_rng(_SPLIT_SEED).permutation(count)
    train, validation = round(0.6 * count), round(0.2 * count)
    return {
        "train": np.sort(order[:train]),
        "validation": np.sort(order[train : train + validation]),
        "test": np.sort(order[train + validation :]),
    }


def bernoulli_nll(outputs: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
    """(b, t) Bernoulli cross-entropy summed over keys, zero at padded steps.

    Padded steps are replaced *before* the cross-entropy, so whatever the model outputs there
    (even NaN) reaches neither the value nor the gradient.
    """
    valid = mask[:, :, None] > 0
    logits = jnp.where(valid, outputs, 0.0)
    per_key = optax.sigmoid_binary_cross_entropy(logits, targets)
    return jnp.sum(jnp.where(valid, per_key, 0.0), axis=-1)


class Chorales:
    """Bach chorales from music21 as piano rolls, next-frame prediction (see the module doc).

    Args:
        limit: parse only the first ``limit`` score files (sorted by name) and split those; for
            fast tests. ``None`` parses the whole corpus (about a minute, once; then cached).
    """

    name = "chorales"
    input_kind: Literal["real"] = "real"
    input_size = KEYS
    output_size = KEYS
    target_kind: Literal["step_binary"] = "step_binary"
    primary_metric = "nll"
    direction: Literal["min"] = "min"
    metric_info = {"nll": MetricInfo("NLL", "nats/frame")}
    note = (
        "`chorales` is a JSB-like set built from music21's corpus of Bach chorales, not the JSB "
        "files of Boulanger-Lewandowski et al. (2012) that Greff et al. used, so its numbers are "
        "not directly comparable with theirs."
    )

    def __init__(self, limit: int | None = None):
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise ValueError(f"chorales: limit must be positive or None, got {limit}")
        self.limit = limit
        version = f"gatelab-{_CACHE_VERSION}/music21-{cache.package_version('music21')}"
        stem = "chorales" if limit is None else f"chorales-first{limit}"
        arrays = cache.load_or_build(stem, version, lambda: _build(limit))
        offsets = arrays["offsets"]
        self.frames = arrays["frames"]
        self.names = arrays["names"]
        self.modes = arrays["modes"]
        self.tonics = arrays["tonics"]
        self.rolls = [self.frames[offsets[i] : offsets[i + 1]] for i in range(len(self.names))]
        self.splits = _split(len(self.rolls))
        if min(len(index) for index in self.splits.values()) == 0:
            raise ValueError(
                f"chorales: limit={limit} leaves {len(self.rolls)} chorales, too few to split"
            )
        self.seq_len = max(roll.shape[0] for roll in self.rolls) - 1
        self._sets = {split: self._padded(index) for split, index in self.splits.items()}
        targets = self._sets["train"]["targets"]
        self.chance = _constant_predictor_nll(targets, self._sets["train"]["lengths"])

    def _padded(self, index: np.ndarray) -> dict[str, np.ndarray]:
        """The chorales ``index`` as a batch: next-frame pairs, padded with zeros."""
        rolls = np.zeros((len(index), self.seq_len + 1, KEYS), np.float32)
        lengths = np.zeros(len(index), np.int32)
        for row, i in enumerate(index):
            roll = self.rolls[i]
            rolls[row, : roll.shape[0]] = roll
            lengths[row] = roll.shape[0] - 1
        inputs = rolls[:, :-1].copy()
        # Inputs past the length are zero too: the last frame predicts nothing.
        inputs[np.arange(self.seq_len)[None, :] >= lengths[:, None]] = 0.0
        return {"inputs": inputs, "targets": rolls[:, 1:], "lengths": lengths}

    def train_data(self) -> dict[str, jax.Array]:
        # Stored once as uint8 frames (a quarter of float32's memory); cast per batch.
        train = self.splits["train"]
        rolls = np.zeros((len(train), self.seq_len + 1, KEYS), np.uint8)
        for row, i in enumerate(train):
            rolls[row, : self.rolls[i].shape[0]] = self.rolls[i]
        lengths = np.asarray([self.rolls[i].shape[0] - 1 for i in train], np.int32)
        return {"rolls": jnp.asarray(rolls), "lengths": jnp.asarray(lengths)}

    def train_batch(self, data: dict[str, jax.Array], key: jax.Array, batch_size: int) -> Batch:
        index = jax.random.randint(key, (batch_size,), 0, data["lengths"].shape[0])
        rolls, lengths = data["rolls"][index].astype(jnp.float32), data["lengths"][index]
        # Inputs past the length are zero too: the last frame predicts nothing.
        mask = masked_steps({"lengths": lengths}, self.seq_len)
        return {
            "inputs": rolls[:, :-1] * mask[:, :, None],
            "targets": rolls[:, 1:],
            "lengths": lengths,
        }

    def eval_set(self, split: Literal["validation", "test"]) -> dict[str, np.ndarray]:
        if split not in ("validation", "test"):
            raise ValueError(f"unknown split {split!r}; the splits are ['validation', 'test']")
        return self._sets[split]

    def loss(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        mask = masked_steps(batch, outputs.shape[1])
        return jnp.sum(bernoulli_nll(outputs, batch["targets"], mask)) / jnp.sum(mask)

    def metrics(self, outputs: jax.Array, batch: Batch) -> dict[str, tuple[jax.Array, jax.Array]]:
        mask = masked_steps(batch, outputs.shape[1])
        return {"nll": (jnp.sum(bernoulli_nll(outputs, batch["targets"], mask)), jnp.sum(mask))}


def _constant_predictor_nll(targets: np.ndarray, lengths: np.ndarray) -> float:
    """NLL per frame of predicting each key with its (add-one smoothed) training frequency."""
    valid = np.arange(targets.shape[1])[None, :] < lengths[:, None]
    frames = targets[valid]  # (valid frames, 88)
    probability = (frames.sum(0) + 1.0) / (frames.shape[0] + 2.0)
    nll = -(frames * np.log(probability) + (1 - frames) * np.log1p(-probability))
    return float(nll.sum(1).mean())
