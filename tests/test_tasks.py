"""The task layer: batches, evaluation sets, chance levels, masks, dataset statistics, the cache.

Dataset tasks are built once per session under ``$GATELAB_DATA`` (point it at an empty folder to
time a cold run); the chorales here are a 20-score subset, and the full-corpus statistics are
``slow``.
"""

import functools
import math
import random
import zipfile

import jax
import jax.extend
import numpy as np
import pytest

from gatelab import tasks
from gatelab.tasks import cache
from gatelab.tasks.chorales import KEYS
from gatelab.tasks.classification import _build_mnist1d

# Small but representative arguments: every task, a few seconds on an empty cache.
FAST = {
    "adding": {"length": 30, "eval_size": 200},
    "copy": {"delay": 12, "eval_size": 200},
    "mnist1d": {},
    "digits": {},
    "chorales": {"limit": 20},
    "shakespeare": {"seq_len": 64},
}


@functools.cache
def make(name: str, **args) -> tasks.Task:
    return tasks.get(name, **args)


def fast(name: str) -> tasks.Task:
    return make(name, **FAST[name])


@functools.cache
def compiled(task: tasks.Task, method: str):
    """``jax.jit`` of a task's method, once per task (eager JAX would compile op by op)."""
    return jax.jit(getattr(task, method), static_argnums=2 if method == "train_batch" else ())


def draw(task: tasks.Task, seed: int, batch_size: int = 6) -> dict[str, np.ndarray]:
    """A training batch drawn under jax.jit, the data passed in as an argument."""
    batch = compiled(task, "train_batch")(task.train_data(), jax.random.key(seed), batch_size)
    return {key: np.asarray(value) for key, value in batch.items()}


def random_outputs(task: tasks.Task, batch: dict, seed: int = 0) -> np.ndarray:
    """Standard normal logits or predictions of the right shape for ``batch``."""
    inputs = batch["inputs"]
    if task.target_kind in ("class", "value"):
        shape = (inputs.shape[0], task.output_size)
    else:
        shape = (inputs.shape[0], inputs.shape[1], task.output_size)
    return np.random.default_rng(seed).standard_normal(shape, np.float32)


def evaluate(task: tasks.Task, outputs, batch: dict) -> dict[str, float]:
    """Every metric of ``outputs`` on ``batch``: total / weight."""
    metrics = compiled(task, "metrics")(outputs, batch)
    return {name: float(total) / float(weight) for name, (total, weight) in metrics.items()}


# ------------------------------------------------------------------------------------------------
# The protocol, for every task


@pytest.mark.parametrize("name", tasks.NAMES)
def test_protocol_attributes(name):
    task = fast(name)
    assert isinstance(task, tasks.Task)
    assert task.name == name
    assert task.input_kind in ("real", "tokens")
    assert task.target_kind in ("class", "value", "step_class", "step_binary")
    assert task.direction in ("min", "max")
    assert task.input_size >= 1 and task.output_size >= 1 and task.seq_len >= 1
    assert math.isfinite(task.chance)
    batch = task.eval_set("validation")
    assert task.primary_metric in evaluate(task, random_outputs(task, batch), batch)


@pytest.mark.parametrize("name", tasks.NAMES)
@pytest.mark.parametrize("source", ["train", "validation", "test"])
def test_shapes_and_dtypes(name, source):
    task = fast(name)
    batch = draw(task, 0) if source == "train" else task.eval_set(source)
    if source != "train":
        assert all(isinstance(value, np.ndarray) for value in batch.values())
    inputs, targets = batch["inputs"], batch["targets"]
    size, steps = inputs.shape[:2]
    assert size >= 1 and steps == task.seq_len
    if task.input_kind == "real":
        assert inputs.shape == (size, steps, task.input_size) and inputs.dtype == np.float32
    else:
        assert inputs.shape == (size, steps) and inputs.dtype == np.int32
        assert 0 <= inputs.min() and inputs.max() < task.input_size
    expected = {
        "class": ((size,), np.int32),
        "value": ((size,), np.float32),
        "step_class": ((size, steps), np.int32),
        "step_binary": ((size, steps, task.output_size), np.float32),
    }[task.target_kind]
    assert (targets.shape, targets.dtype) == expected
    if task.target_kind in ("class", "step_class"):
        assert 0 <= targets.min() and targets.max() < task.output_size
    if task.target_kind == "step_binary":
        assert set(np.unique(targets)) <= {0.0, 1.0}
    if "lengths" in batch:
        assert batch["lengths"].shape == (size,) and batch["lengths"].dtype == np.int32
        assert 1 <= batch["lengths"].min() and batch["lengths"].max() <= steps
    if source == "train":
        assert size == 6
    # Training and evaluation batches carry the same arrays; lengths only where lengths vary.
    assert set(batch) == set(task.eval_set("test")) <= {"inputs", "targets", "lengths"}


@pytest.mark.parametrize("name", tasks.NAMES)
def test_same_key_same_batch_other_key_other_batch(name):
    task = fast(name)
    first, again, other = draw(task, 3), draw(task, 3), draw(task, 4)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["inputs"], other["inputs"])


@pytest.mark.parametrize("name", ["copy", "mnist1d", "chorales", "shakespeare"])  # one per kind
def test_batches_under_vmap_match_single_draws(name):
    # A group of runs draws its batches under jax.vmap over the runs' keys (docs/design.md).
    task = fast(name)
    data, keys = task.train_data(), jax.random.split(jax.random.key(9), 2)
    stacked = jax.jit(jax.vmap(lambda key: task.train_batch(data, key, 6)))(keys)
    for run in range(2):
        single = compiled(task, "train_batch")(data, keys[run], 6)
        for key, value in single.items():
            np.testing.assert_array_equal(stacked[key][run], value)


def _primitives(jaxpr) -> set[str]:
    names = set()
    for equation in jaxpr.eqns:
        names.add(equation.primitive.name)
        for value in equation.params.values():
            for inner in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(inner, jax.extend.core.ClosedJaxpr):
                    names |= _primitives(inner.jaxpr)
                elif isinstance(inner, jax.extend.core.Jaxpr):
                    names |= _primitives(inner)
    return names


@pytest.mark.parametrize("name", tasks.NAMES)
def test_batches_compile_without_host_callbacks_or_baked_data(name):
    task = fast(name)
    closed = jax.make_jaxpr(task.train_batch, static_argnums=2)(
        task.train_data(), jax.random.key(0), 5
    )
    primitives = _primitives(closed.jaxpr)
    assert not {p for p in primitives if "callback" in p}, primitives
    # The dataset is an argument of the program, never a constant folded into it.
    assert all(np.size(constant) < 1000 for constant in closed.consts)


@pytest.mark.parametrize("name", tasks.NAMES)
def test_eval_sets_are_fixed(name):
    task = fast(name)
    again = tasks.get(name, **FAST[name])
    for split in ("validation", "test"):
        for key, value in task.eval_set(split).items():
            np.testing.assert_array_equal(value, again.eval_set(split)[key])
    assert not np.array_equal(
        task.eval_set("validation")["inputs"][:3], task.eval_set("test")["inputs"][:3]
    )
    with pytest.raises(ValueError, match="validation"):
        task.eval_set("train")


@pytest.mark.parametrize("name", tasks.NAMES)
def test_metrics_add_up_over_batches_and_match_the_loss(name):
    task = fast(name)
    batch = {key: value[:8] for key, value in task.eval_set("validation").items()}
    size = batch["inputs"].shape[0]
    outputs = random_outputs(task, batch, seed=1)
    metrics = compiled(task, "metrics")
    whole = metrics(outputs, batch)
    halves = [
        metrics(outputs[part], {key: value[part] for key, value in batch.items()})
        for part in (slice(0, size // 2), slice(size // 2, size))
    ]
    for metric, (total, weight) in whole.items():
        np.testing.assert_allclose(sum(h[metric][0] for h in halves), total, rtol=1e-5)
        np.testing.assert_allclose(sum(h[metric][1] for h in halves), weight, rtol=1e-6)
    # The training loss is the metric the task trains on (bpc is the loss in bits).
    metric, scale = {
        "adding": ("mse", 1),
        "chorales": ("nll", 1),
        "shakespeare": ("bpc", 1 / math.log(2)),
    }.get(name, ("loss", 1))
    loss = float(compiled(task, "loss")(outputs, batch))
    np.testing.assert_allclose(loss * scale, whole[metric][0] / whole[metric][1], rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# Chance levels


def test_adding_always_one_scores_one_sixth():
    task = make("adding")  # the default eval set: 1000 sequences of length 100
    batch = task.eval_set("test")
    assert task.chance == pytest.approx(1 / 6) and task.literature_chance == 0.1767
    mse = evaluate(task, np.ones((batch["targets"].shape[0], 1), np.float32), batch)["mse"]
    assert mse == pytest.approx(1 / 6, abs=0.02)  # 3 standard errors on 1000 examples
    # On many sequences the estimate is tight.
    big = draw(task, 7, batch_size=20_000)
    mse = evaluate(task, np.ones((20_000, 1), np.float32), big)["mse"]
    assert mse == pytest.approx(1 / 6, abs=0.005)  # 3.5 standard errors


def test_adding_format():
    task = fast("adding")
    batch = task.eval_set("validation")
    values, markers = batch["inputs"][..., 0], batch["inputs"][..., 1]
    assert 0 <= values.min() and values.max() <= 1
    half = task.length // 2
    np.testing.assert_array_equal(markers[:, :half].sum(1), 1)
    np.testing.assert_array_equal(markers[:, half:].sum(1), 1)
    np.testing.assert_allclose(batch["targets"], (values * markers).sum(1), rtol=1e-6)


@pytest.mark.parametrize("delay", [12, 100])
def test_copy_baseline_scores_the_closed_form(delay):
    task = make("copy", delay=delay, eval_size=200)
    assert task.seq_len == delay + 20
    assert task.chance == pytest.approx(10 * math.log(8) / (delay + 20))
    batch = task.eval_set("test")
    size = batch["targets"].shape[0]
    # Blanks for T + 10 steps, then a uniform guess among the 8 symbols.
    outputs = np.zeros((size, delay + 20, task.output_size), np.float32)
    outputs[:, : delay + 10, :] = -1e9
    outputs[:, : delay + 10, task.blank] = 0.0
    outputs[:, delay + 10 :, task.blank] = -1e9
    metrics = evaluate(task, outputs, batch)
    assert metrics["loss"] == pytest.approx(task.chance, rel=1e-5)
    # Ties go to symbol 0: right whenever the symbol is 0, about 1 time in 8.
    assert metrics["accuracy"] == pytest.approx(np.mean(batch["targets"][:, -10:] == 0))


def test_copy_format():
    task = fast("copy")
    batch = draw(task, 0)
    inputs, targets, delay = batch["inputs"], batch["targets"], task.delay
    data = inputs[:, :10]
    assert data.max() < 8
    assert (inputs[:, 10 : 10 + delay - 1] == 8).all()
    assert (inputs[:, 9 + delay] == 9).all()
    assert (inputs[:, 10 + delay :] == 8).all()
    assert (targets[:, : delay + 10] == 8).all()
    np.testing.assert_array_equal(targets[:, -10:], data)


@pytest.mark.parametrize("name", ["mnist1d", "digits"])
def test_uniform_classifier_scores_ten_percent(name):
    task = fast(name)
    batch = task.eval_set("test")
    size = batch["targets"].shape[0]
    uniform = evaluate(task, np.zeros((size, 10), np.float32), batch)
    assert uniform["loss"] == pytest.approx(math.log(10), rel=1e-6)
    # A random guess: 10% in expectation (3 standard errors of the sample).
    guess = evaluate(task, random_outputs(task, batch, seed=5), batch)["accuracy"]
    assert guess == pytest.approx(task.chance, abs=3 * math.sqrt(0.09 / size))


def test_shakespeare_uniform_predictor_scores_log2_vocab():
    task = fast("shakespeare")
    batch = {key: value[:4] for key, value in task.eval_set("validation").items()}
    outputs = np.zeros((4, task.seq_len, task.output_size), np.float32)
    assert evaluate(task, outputs, batch)["bpc"] == pytest.approx(
        math.log2(len(task.vocab)), rel=1e-6
    )
    assert task.chance == math.log2(len(task.vocab))


def test_chorales_chance_is_the_constant_predictor_on_training_frames():
    task = fast("chorales")
    data = task.train_data()
    rolls = np.asarray(data["rolls"], np.float32)
    train = {
        "inputs": rolls[:, :-1],
        "targets": rolls[:, 1:],
        "lengths": np.asarray(data["lengths"]),
    }
    valid = np.arange(task.seq_len)[None, :] < train["lengths"][:, None]
    frames = train["targets"][valid]
    probability = (frames.sum(0) + 1) / (frames.shape[0] + 2)
    logits = np.broadcast_to(np.log(probability / (1 - probability)), train["targets"].shape)
    nll = evaluate(task, logits, train)["nll"]
    assert nll == pytest.approx(task.chance, rel=1e-4)
    # A fair coin on every key costs 88 log 2 per frame, far above the chance line.
    coin = evaluate(task, np.zeros(train["targets"].shape, np.float32), train)["nll"]
    assert coin == pytest.approx(KEYS * math.log(2), rel=1e-6) and coin > task.chance


# ------------------------------------------------------------------------------------------------
# Masks


def test_padded_frames_contribute_nothing_to_the_chorales_loss():
    task = fast("chorales")
    batch = task.eval_set("validation")
    lengths = batch["lengths"]
    assert lengths.min() < task.seq_len  # some padding to test
    padding = np.arange(task.seq_len)[None, :] >= lengths[:, None]
    for padded in (batch, draw(task, 0, batch_size=32)):  # padding is zero everywhere
        past = np.arange(task.seq_len)[None, :] >= padded["lengths"][:, None]
        assert not padded["inputs"][past].any() and not padded["targets"][past].any()
    outputs = random_outputs(task, batch, seed=2)
    garbage = np.where(padding[:, :, None], np.nan, outputs)  # NaN wherever it is padding
    noisy = dict(batch, targets=np.where(padding[:, :, None], 1.0, batch["targets"]))
    loss, metrics = compiled(task, "loss"), compiled(task, "metrics")
    expected_loss, (expected_total, weight) = loss(outputs, batch), metrics(outputs, batch)["nll"]
    assert float(weight) == lengths.sum()  # the weight counts valid frames only
    for padded_batch in (batch, noisy):
        np.testing.assert_allclose(loss(garbage, padded_batch), expected_loss, rtol=1e-6)
        np.testing.assert_allclose(
            metrics(garbage, padded_batch)["nll"][0], expected_total, rtol=1e-6
        )
    gradient = np.asarray(jax.jit(jax.grad(task.loss))(garbage, batch))
    assert np.isfinite(gradient).all() and not gradient[padding].any()


# ------------------------------------------------------------------------------------------------
# Dataset statistics


def test_mnist1d_statistics():
    task = make("mnist1d")  # the default validation split of 500
    train = np.asarray(task.train_data()["targets"])
    validation, test = (task.eval_set(split)["targets"] for split in ("validation", "test"))
    assert (len(train), len(validation), len(test)) == (3500, 500, 1000)
    labels = np.concatenate([train, validation, test])
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), 500)  # 500 per class
    for split in (np.concatenate([train, validation]), test):  # balanced, as generated
        counts = np.bincount(split, minlength=10)
        assert counts.min() >= 0.85 * len(split) / 10 and counts.max() <= 1.15 * len(split) / 10
    inputs = np.concatenate([task.train_data()["inputs"], task.eval_set("test")["inputs"]])
    assert abs(inputs.mean()) < 0.05 and abs(inputs.std() - 1) < 0.05  # globally standardised


def test_mnist1d_generation_leaves_global_random_state_alone():
    np.random.seed(123)
    random.seed(123)
    expected = np.random.rand(), random.random()
    np.random.seed(123)
    random.seed(123)
    _build_mnist1d()  # seeds both generators with 42 inside
    assert (np.random.rand(), random.random()) == expected


def test_digits_statistics():
    task = fast("digits")
    sizes = [len(task.train_data()["targets"])] + [
        len(task.eval_set(split)["targets"]) for split in ("validation", "test")
    ]
    assert sum(sizes) == 1797 and sizes == [1078, 360, 359]
    inputs = task.eval_set("test")["inputs"]
    assert inputs.min() == 0 and inputs.max() == 1
    for split in ("validation", "test"):  # stratified
        counts = np.bincount(task.eval_set(split)["targets"], minlength=10)
        assert counts.min() >= 34 and counts.max() <= 38


def test_shakespeare_statistics_and_codec():
    task = fast("shakespeare")
    assert 50 <= len(task.vocab) <= 120 and task.input_size == len(task.vocab)
    assert len(task.ids["train"]) > 3_000_000
    total = sum(len(ids) for ids in task.ids.values())
    assert len(task.ids["validation"]) == pytest.approx(0.05 * total, abs=1)
    text = task.decode(task.ids["train"][:2000])
    assert "#" not in task.vocab and "*" not in task.vocab and "_" not in task.vocab
    assert "\n\n" in text and ":\n" in text  # speakers as "NAME:" lines
    sample = "ROMEO:\nBut, soft! what light through yonder window breaks?"
    ids = task.encode(sample)
    assert ids.dtype == np.int32 and task.decode(ids) == sample
    with pytest.raises(ValueError, match="vocabulary"):
        task.encode("~")
    # Eval windows are consecutive: each target is the next input character.
    batch = task.eval_set("test")
    np.testing.assert_array_equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])
    np.testing.assert_array_equal(batch["inputs"][1:, 0], batch["targets"][:-1, -1])


def test_shakespeare_training_windows_are_text():
    task = fast("shakespeare")
    batch = draw(task, 0)
    np.testing.assert_array_equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])
    train = task.ids["train"].tobytes()
    for row in range(batch["inputs"].shape[0]):
        assert batch["inputs"][row].astype(np.uint8).tobytes() in train


def test_chorales_subset():
    task = fast("chorales")
    assert task.output_size == KEYS == 88
    assert sum(len(index) for index in task.splits.values()) == len(task.rolls) >= 15
    assert task.seq_len == max(roll.shape[0] for roll in task.rolls) - 1
    notes = task.frames.sum(1)
    assert 3 <= notes.mean() <= 4.2


@pytest.mark.slow
def test_chorales_full_corpus_statistics():
    task = make("chorales")
    count = len(task.rolls)
    assert count >= 300
    sizes = {split: len(index) for split, index in task.splits.items()}
    assert sizes["train"] == round(0.6 * count) and sizes["validation"] == round(0.2 * count)
    notes = task.frames.sum(1)
    assert np.mean((notes == 3) | (notes == 4)) > 0.8  # mostly 3-4 notes sounding per frame
    assert set(task.modes.tolist()) == {"major", "minor"}
    assert min(np.mean(task.modes == "major"), np.mean(task.modes == "minor")) > 0.3
    lengths = np.asarray([roll.shape[0] for roll in task.rolls])
    assert 40 <= lengths.mean() <= 80  # JSB: about 61 frames
    # In C: the tonic triad's pitch classes are the most played ones.
    pitch_classes = np.bincount((np.flatnonzero(task.frames) % KEYS + 21) % 12, minlength=12)
    assert pitch_classes.argmax() in (0, 7)  # C or G


# ------------------------------------------------------------------------------------------------
# The registry and its errors


def test_registry_lists_every_task_and_its_arguments():
    assert set(tasks.NAMES) == {"adding", "copy", "mnist1d", "digits", "chorales", "shakespeare"}
    assert tasks.arguments("copy") == {"delay": 100, "eval_size": 1000, "eval_lengths": ()}
    with pytest.raises(ValueError, match="adding, copy, mnist1d"):
        tasks.get("bogus")
    with pytest.raises(ValueError, match=r"delay=100, eval_size=1000"):
        tasks.get("copy", length=5)
    with pytest.raises(ValueError, match="none"):
        tasks.get("digits", seed=1)
    with pytest.raises(ValueError, match="delay"):
        tasks.get("copy", delay="100")
    with pytest.raises(ValueError, match="length"):
        tasks.get("adding", length=1)


def test_missing_package_names_it():
    with pytest.raises(ImportError, match="pip install not-a-package"):
        cache.require("gatelab_surely_missing_module", "not-a-package")
    with pytest.raises(ImportError, match="pip install gatelab-surely-missing"):
        cache.package_version("gatelab-surely-missing")
    with pytest.raises(ImportError, match="pip install not-a-package"):
        cache.package_folder("gatelab_surely_missing_module", "not-a-package")


# ------------------------------------------------------------------------------------------------
# The cache


def test_cache_builds_once_and_rebuilds_stale_or_corrupted_files(tmp_path, monkeypatch):
    monkeypatch.setenv("GATELAB_DATA", str(tmp_path / "data"))
    builds = []

    def build():
        builds.append(1)
        return {"x": np.arange(1000, dtype=np.int32), "names": np.asarray(["a", "bc"])}

    first = cache.load_or_build("toy", "v1", build)
    second = cache.load_or_build("toy", "v1", build)
    assert len(builds) == 1
    np.testing.assert_array_equal(first["x"], second["x"])
    assert second["names"].tolist() == ["a", "bc"]
    path = tmp_path / "data" / "toy.npz"
    assert [p.name for p in path.parent.iterdir()] == ["toy.npz"]  # no temporary left behind

    cache.load_or_build("toy", "v2", build)  # stale: another version key
    assert len(builds) == 2

    path.write_bytes(path.read_bytes()[:200])  # truncated
    np.testing.assert_array_equal(cache.load_or_build("toy", "v2", build)["x"], first["x"])
    assert len(builds) == 3

    data = bytearray(path.read_bytes())  # a flipped byte inside the array: CRC mismatch
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("x.npy")
    data[info.header_offset + 30 + len(info.filename) + 500] ^= 0xFF
    path.write_bytes(bytes(data))
    np.testing.assert_array_equal(cache.load_or_build("toy", "v2", build)["x"], first["x"])
    assert len(builds) == 4

    path.write_bytes(b"not a zip file")
    cache.load_or_build("toy", "v2", build)
    assert len(builds) == 5


def test_cache_refuses_object_arrays(tmp_path, monkeypatch):
    monkeypatch.setenv("GATELAB_DATA", str(tmp_path))
    with pytest.raises(TypeError, match="pickle"):
        cache.load_or_build("objects", "v1", lambda: {"x": np.asarray([{}, []], dtype=object)})
    assert not list(tmp_path.iterdir())
