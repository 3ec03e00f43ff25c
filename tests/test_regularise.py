"""Regularisers and normalisation as spec fields: against an independent NumPy reference with the
same masks, PyTorch's ``nn.LSTM(proj_size=P)`` with copied weights, GatedCell against GatedRNN,
the statistics of the masks, evaluation, and the runner (resume, configs).

Sizes are tiny (b=3, t=6, d=5, H=4) as in test_cells.py.
"""

from __future__ import annotations

import functools
import signal
import subprocess
import sys
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import regularised_gru, regularised_lstm

import gatelab as gl
from gatelab import cli, records
from gatelab.families import GRUSpec, LSTMSpec, MinSpec, param_count, regularise
from gatelab.runtime import CHEAP_COMPILE

jit = functools.partial(jax.jit, compiler_options=CHEAP_COMPILE)

B, T, D, H = 3, 6, 5, 4
X = jax.random.normal(jax.random.key(1), (B, T, D))

LSTM_CASES = {
    "dropout_input": dict(dropout_input=0.3),
    "dropout_recurrent": dict(dropout_recurrent=0.4),
    "dropout_tied": dict(dropout_input=0.3, dropout_recurrent=0.4, dropout_tied=True),
    "zoneout": dict(zoneout_cell=0.3, zoneout_hidden=0.2),
    "weight_drop": dict(weight_drop=0.5),
    "layer_norm": dict(layer_norm=("input", "recurrent", "cell")),
    "layer_norm_gate": dict(layer_norm=("input", "recurrent"), layer_norm_stats="gate"),
    "layer_norm_recurrent": dict(layer_norm=("recurrent",)),
    "projection": dict(projection=2),
    "everything": dict(
        dropout_input=0.2,
        dropout_recurrent=0.3,
        zoneout_cell=0.2,
        zoneout_hidden=0.1,
        weight_drop=0.3,
        layer_norm=("input", "recurrent", "cell"),
        projection=3,
    ),
}
GRU_CASES = {
    "dropout": dict(dropout_input=0.3, dropout_recurrent=0.4),
    "zoneout": dict(zoneout_hidden=0.3),
    "weight_drop": dict(weight_drop=0.5),
    "layer_norm": dict(layer_norm=("input", "recurrent")),
    "layer_norm_gate": dict(layer_norm=("input", "recurrent"), layer_norm_stats="gate"),
    "reset_before": dict(
        reset_after=False, dropout_recurrent=0.4, weight_drop=0.3, layer_norm=("recurrent",)
    ),
}


def randomize(params, seed=0, scale=0.5):
    """Every parameter drawn afresh (unit gains and zero shifts would hide layer-norm bugs)."""
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    new = [scale * jax.random.normal(k, leaf.shape) for k, leaf in zip(keys, leaves, strict=True)]
    return jax.tree_util.tree_unflatten(tree, new)


def setup(spec, seed=0):
    layer = gl.GatedRNN(H, spec)
    params = randomize(layer.init(jax.random.key(0), X)["params"], seed)
    masks = None
    if regularise.stochastic(spec):
        masks = regularise.draw(spec, params, jax.random.key(7 + seed), (B,), T)
    return layer, params, masks


def apply(layer, params, masks=None):
    return jit(lambda p, m: layer.apply({"params": p}, X, masks=m))(params, masks)


def reference(spec, params, masks, train=True):
    numpy_masks = jax.tree_util.tree_map(np.asarray, masks) if train else None
    if isinstance(spec, LSTMSpec):
        gates = spec.learned_gates
        return regularised_lstm(
            X,
            params,
            numpy_masks,
            (spec.zoneout_cell, spec.zoneout_hidden),
            spec.layer_norm,
            spec.layer_norm_stats,
            gates,
            spec.peepholes,
        )
    return regularised_gru(
        X,
        params,
        numpy_masks,
        spec.zoneout_hidden,
        spec.layer_norm,
        spec.layer_norm_stats,
        spec.reset_after,
    )


CASES = [(LSTMSpec(**kw), f"lstm-{name}") for name, kw in LSTM_CASES.items()] + [
    (GRUSpec(**kw), f"gru-{name}") for name, kw in GRU_CASES.items()
]


@pytest.mark.parametrize("spec", [c[0] for c in CASES], ids=[c[1] for c in CASES])
def test_equals_numpy_reference_in_training_and_evaluation(spec):
    """Given the same masks, GatedRNN is the NumPy reference; at evaluation (no masks) too,
    with zoneout in expectation."""
    layer, params, masks = setup(spec)
    _, y = apply(layer, params, masks)
    y_ref, _ = reference(spec, params, masks)
    np.testing.assert_allclose(y, y_ref, atol=2e-5)
    _, y_eval = apply(layer, params)
    y_ref_eval, _ = reference(spec, params, masks, train=False)
    np.testing.assert_allclose(y_eval, y_ref_eval, atol=2e-5)
    if masks is not None:
        assert not np.allclose(y, y_eval)  # the masks did something


@pytest.mark.parametrize(
    "spec",
    [
        LSTMSpec(peepholes=True, forget="open", zoneout_cell=0.3, layer_norm=("input", "cell")),
        LSTMSpec(peepholes=True, output="open", dropout_input=0.3, zoneout_hidden=0.2),
    ],
    ids=["NFG-zoneout-layer_norm", "NOG-dropout-zoneout"],
)
def test_removed_gates_with_regularisers_equal_reference(spec):
    layer, params, masks = setup(spec, seed=2)
    assert set(spec.gates) - set(spec.learned_gates) <= {"forget", "output"}
    _, y = apply(layer, params, masks)
    np.testing.assert_allclose(y, reference(spec, params, masks)[0], atol=2e-5)


def _cell_loop(spec, params, masks, x):
    """nn.RNN's job done by hand: GatedCell one step at a time with that step's masks."""
    cell = gl.GatedCell(H, spec)
    carry = cell.initialize_carry(jax.random.key(0), x[:, 0].shape)
    ys = []
    for t in range(x.shape[1]):
        step_masks = None if masks is None else regularise.at_step(masks, t)
        carry, y = cell.apply({"params": params}, carry, x[:, t], step_masks)
        ys.append(y)
    return jnp.stack(ys, 1)


@pytest.mark.parametrize(
    "spec",
    [
        LSTMSpec(**LSTM_CASES["everything"]),
        GRUSpec(**GRU_CASES["dropout"], zoneout_hidden=0.2),
        GRUSpec(**GRU_CASES["reset_before"]),
    ],
    ids=["lstm-everything", "gru-dropout-zoneout", "gru-reset_before"],
)
def test_gated_cell_equals_gated_rnn_values_and_gradients(spec):
    layer, params, masks = setup(spec, seed=3)
    loss_rnn = lambda p: jnp.sum(jnp.sin(layer.apply({"params": p}, X, masks=masks)[1]))  # noqa: E731
    loss_cell = lambda p: jnp.sum(jnp.sin(_cell_loop(spec, p, masks, X)))  # noqa: E731
    value, grads = jit(jax.value_and_grad(loss_rnn))(params)
    value_cell, grads_cell = jit(jax.value_and_grad(loss_cell))(params)
    np.testing.assert_allclose(value, value_cell, rtol=1e-5)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), grads, grads_cell
    )


def test_gated_cell_under_flax_rnn_draws_its_own_masks():
    """nn.RNN(GatedCell(deterministic=False)) with the documented rng splits: reproducible,
    different from evaluation, and the dropout masks are the same at every step (a cell whose
    only regulariser is input dropout, on a constant input, gives what GatedRNN gives with one
    mask for the whole sequence)."""
    spec = LSTMSpec(dropout_input=0.5, zoneout_hidden=0.3)
    cell = gl.GatedCell(H, spec, deterministic=False)
    rnn = nn.RNN(cell, split_rngs={"params": False, "dropout": False, "zoneout": True})
    params = gl.GatedRNN(H, spec).init(jax.random.key(0), X)["params"]
    rngs = {"dropout": jax.random.key(1), "zoneout": jax.random.key(2)}
    y1 = rnn.apply({"params": {"cell": params}}, X, rngs=rngs)
    y2 = rnn.apply({"params": {"cell": params}}, X, rngs=rngs)
    np.testing.assert_array_equal(y1, y2)
    eval_rnn = nn.RNN(gl.GatedCell(H, spec))
    assert not np.allclose(y1, eval_rnn.apply({"params": {"cell": params}}, X))
    captured = nn.RNN(
        gl.GatedCell(H, LSTMSpec(dropout_input=0.5), deterministic=False),
        split_rngs={"params": False, "dropout": False},
        variable_axes={"masks": 0},
    )
    # The masks the cell drew at each step (sown per step, stacked over time by the scan).
    _, state = captured.apply(
        {"params": {"cell": params}}, X, rngs={"dropout": jax.random.key(1)}, mutable=["masks"]
    )
    drawn = state["masks"]["cell"]["drawn"][0]["input"]
    for part, mask in drawn.items():
        assert mask.shape == (T, B, D)
        np.testing.assert_array_equal(mask, np.broadcast_to(mask[0], mask.shape), err_msg=part)


def test_lstm_projection_equals_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    proj = 3
    ref = torch.nn.LSTM(D, H, batch_first=True, proj_size=proj)
    x = np.array(X, np.float32)
    with torch.no_grad():
        y_ref, (h_ref, c_ref) = ref(torch.from_numpy(x))
    w_ih, w_hh = ref.weight_ih_l0.detach().numpy(), ref.weight_hh_l0.detach().numpy()
    w_hr = ref.weight_hr_l0.detach().numpy()
    bias = (ref.bias_ih_l0 + ref.bias_hh_l0).detach().numpy()
    rows = lambda k: slice(k * H, (k + 1) * H)  # noqa: E731  (PyTorch's order: i, f, g, o)
    params = {
        name: {"kernel_x": w_ih[rows(k)].T, "kernel_h": w_hh[rows(k)].T, "bias": bias[rows(k)]}
        for k, name in enumerate(["input", "forget", "candidate", "output"])
    }
    params["projection"] = {"kernel": w_hr.T}
    spec = LSTMSpec(projection=proj)
    (c, h), y = jit(lambda p: gl.GatedRNN(H, spec).apply({"params": p}, jnp.asarray(x)))(params)
    np.testing.assert_allclose(y, y_ref.numpy(), atol=1e-5)
    np.testing.assert_allclose(h, h_ref[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(c, c_ref[0].numpy(), atol=1e-5)
    # The parameter count is PyTorch's (its two biases are one here).
    torch_count = sum(p.numel() for p in ref.parameters()) - 4 * H
    assert param_count(spec, D, H) == torch_count


def test_parameter_counts_closed_form():
    block = D * H + H * H + H
    ln = 2 * H
    assert param_count(LSTMSpec(dropout_input=0.5, zoneout_cell=0.1, weight_drop=0.2), D, H) == (
        4 * block
    )
    assert param_count(LSTMSpec(layer_norm=("input", "recurrent", "cell")), D, H) == (
        4 * (block + 2 * ln) + ln
    )
    assert param_count(LSTMSpec(projection=2), D, H) == 4 * (D * H + 2 * H + H) + H * 2
    assert param_count(GRUSpec(layer_norm=("input",)), D, H) == 3 * (block + ln) + H
    for spec in [LSTMSpec(**LSTM_CASES["everything"]), GRUSpec(**GRU_CASES["reset_before"])]:
        params = gl.GatedRNN(H, spec).init(jax.random.key(0), X)["params"]
        assert param_count(spec, D, H) == sum(p.size for p in jax.tree_util.tree_leaves(params))


# --------------------------------------------------------------------------------------------------
# The masks.
# --------------------------------------------------------------------------------------------------


def _big_params(spec, d=64, hidden=64):
    x = jnp.zeros((1, 2, d))
    return gl.GatedRNN(hidden, spec).init(jax.random.key(0), x)["params"]


def test_mask_statistics():
    """Dropout keeps 1 - p of its units, scaled by 1 / (1 - p); zoneout keeps the old value of
    z of them; the masks are per example, untied masks differ between parts, tied ones do not,
    and zoneout's are fresh at every step."""
    spec = LSTMSpec(
        dropout_input=0.3,
        dropout_recurrent=0.5,
        zoneout_cell=0.2,
        zoneout_hidden=0.1,
        weight_drop=0.4,
    )
    params = _big_params(spec)
    masks = jax.device_get(regularise.draw(spec, params, jax.random.key(0), (256,), 50))
    for entry, rate in (("input", 0.3), ("recurrent", 0.5), ("weight", 0.4)):
        for part, mask in masks[entry].items():
            values = np.unique(mask)
            np.testing.assert_allclose(values, [0.0, 1.0 / (1.0 - rate)], rtol=1e-6)
            kept = np.mean(mask > 0)
            assert abs(kept - (1.0 - rate)) < 0.02, (entry, part, kept)
        parts = list(masks[entry].values())
        assert not np.array_equal(parts[0], parts[1])  # untied: one mask per part
    assert masks["input"]["forget"].shape == (256, 64)  # per example, no time axis
    assert masks["weight"]["forget"].shape == (64, 64)  # one for the batch and every step
    for entry, rate in (("zone_cell", 0.2), ("zone_hidden", 0.1)):
        zone = masks[entry]
        assert zone.shape == (50, 256, 64) and zone.dtype == bool
        assert abs(zone.mean() - rate) < 0.01, (entry, zone.mean())
        assert not np.array_equal(zone[0], zone[1])  # fresh at every step
        # independent over steps: the fraction kept at two steps is z**2
        assert abs(np.mean(zone[0] & zone[1]) - rate**2) < 0.01
    tied = spec.replace(dropout_tied=True)
    masks = regularise.draw(tied, params, jax.random.key(0), (8,), 5)
    parts = list(masks["input"].values())
    assert all(p is parts[0] for p in parts)


def test_masks_shared_over_time_and_fresh_per_step_of_training():
    """The runner's masks: the masks GatedRNN drew (sown) are one per sequence, and a new
    optimisation step draws new ones (weight drop's included)."""
    spec = LSTMSpec(dropout_input=0.3, weight_drop=0.5)
    layer = gl.GatedRNN(H, spec)
    params = layer.init(jax.random.key(0), X)["params"]

    def drawn(key):
        _, state = layer.apply(
            {"params": params}, X, deterministic=False, rngs={"dropout": key}, mutable=["masks"]
        )
        return state["masks"]["drawn"][0]

    step_key = jax.random.key(3)
    a = drawn(jax.random.fold_in(jax.random.fold_in(step_key, 0), 2))
    b = drawn(jax.random.fold_in(jax.random.fold_in(step_key, 1), 2))
    assert a["input"]["forget"].shape == (B, D)
    assert not np.array_equal(a["weight"]["forget"], b["weight"]["forget"])
    np.testing.assert_array_equal(
        a["weight"]["forget"],
        drawn(jax.random.fold_in(jax.random.fold_in(step_key, 0), 2))["weight"]["forget"],
    )


def test_evaluation_is_deterministic_and_the_default():
    spec = LSTMSpec(dropout_input=0.5, dropout_recurrent=0.5, zoneout_cell=0.5, weight_drop=0.5)
    layer, params, _ = setup(spec)
    _, y1 = apply(layer, params)
    _, y2 = jit(lambda p: layer.apply({"params": p}, X, deterministic=True))(params)
    np.testing.assert_array_equal(y1, y2)
    _, y_train = jit(
        lambda p: layer.apply(
            {"params": p}, X, deterministic=False, rngs={"dropout": jax.random.key(0)}
        )
    )(params)
    assert not np.allclose(y1, y_train)


def test_off_is_todays_program():
    """Every regulariser at its default is today's spec (equal, same hash: the same compiled
    program), and removed gates still cost no FLOPs with regularisers on."""
    explicit = LSTMSpec(
        dropout_input=0.0,
        dropout_recurrent=0.0,
        zoneout_cell=0.0,
        zoneout_hidden=0.0,
        weight_drop=0.0,
        layer_norm=(),
        projection=0,
    )
    assert explicit == LSTMSpec() and hash(explicit) == hash(LSTMSpec())
    assert not regularise.regularised(explicit)

    def flops(spec):
        layer = gl.GatedRNN(64, spec)
        x = jnp.ones((8, 10, 64))
        params = layer.init(jax.random.key(0), x)["params"]
        masks = regularise.draw(spec, params, jax.random.key(1), (8,), 10)
        compiled = (
            jit(lambda p, m: layer.apply({"params": p}, x, masks=m)).lower(params, masks).compile()
        )
        cost = compiled.cost_analysis()
        return (cost[0] if isinstance(cost, list) else cost)["flops"]

    regularisers = dict(dropout_input=0.3, dropout_recurrent=0.3, zoneout_cell=0.2)
    full = flops(LSTMSpec(peepholes=True, **regularisers))
    ratio = flops(LSTMSpec(peepholes=True, forget="open", **regularisers)) / full
    assert 0.70 < ratio < 0.80, ratio  # 3 of 4 blocks


# --------------------------------------------------------------------------------------------------
# Validation.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: LSTMSpec(dropout_input=1.0), ["dropout_input", "[0, 1)"]),
        (lambda: LSTMSpec(zoneout_cell=-0.1), ["zoneout_cell", "[0, 1)"]),
        (lambda: LSTMSpec(weight_drop="x"), ["weight_drop"]),
        (lambda: LSTMSpec(layer_norm=("inputs",)), ["layer_norm", "'recurrent'"]),
        (lambda: LSTMSpec(layer_norm_stats="unit"), ["layer_norm_stats", "'gate'"]),
        (lambda: LSTMSpec(projection=-1), ["projection"]),
        (lambda: GRUSpec(zoneout_cell=0.1), ["zoneout_cell", "no cell state"]),
        (lambda: GRUSpec(layer_norm="cell"), ["layer_norm", "no cell state"]),
        (lambda: GRUSpec(projection=2), ["projection", "LSTM"]),
        (lambda: LSTMSpec(gate_recurrence=True, dropout_recurrent=0.1), ["dropout_recurrent"]),
        (lambda: GRUSpec(reset_input="identity", dropout_input=0.1), ["reset_input"]),
    ],
)
def test_invalid_fields_are_named(make, words):
    with pytest.raises(ValueError) as error:
        make()
    for word in words:
        assert word in str(error.value)


def test_layer_norm_from_the_command_line():
    assert LSTMSpec(layer_norm="input, cell").layer_norm == ("input", "cell")
    assert LSTMSpec(layer_norm=["recurrent"]).layer_norm == ("recurrent",)
    assert repr(LSTMSpec(forget="open", zoneout_cell=0.5)) == (
        "LSTMSpec(forget='open', zoneout_cell=0.5)"
    )


def test_projection_must_be_smaller_than_hidden():
    with pytest.raises(ValueError, match="projection=4 must be smaller"):
        gl.GatedRNN(H, LSTMSpec(projection=4)).init(jax.random.key(0), X)
    assert not hasattr(MinSpec(), "zoneout_cell")


# --------------------------------------------------------------------------------------------------
# The runner: training draws masks from the run's key, evaluation does not, resume is exact.
# --------------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
REGULARISED = [
    "model.spec.dropout_input=0.2",
    "model.spec.dropout_recurrent=0.2",
    "model.spec.zoneout_cell=0.3",
    "model.spec.weight_drop=0.3",
    "model.spec.layer_norm=input,recurrent,cell",
]
RUN = ["wandb.mode=disabled", "run.steps=100", "run.log_every=25", "run.eval_every=50"]
RUN += ["run.checkpoint_every=50", "run.seeds=0,1", *REGULARISED]


def _command(workdir: Path) -> list[str]:
    command = [sys.executable, "-m", "gatelab.cli", "train", str(ROOT / "configs/digits.py:quick")]
    return command + ["--workdir", str(workdir), "--quiet"] + [f"--set={s}" for s in RUN]


def _rows(path: Path) -> list[dict]:
    rows = records.read_metrics(path / "metrics.jsonl")
    return [{k: v for k, v in r.items() if "time" not in k and "per_s" not in k} for r in rows]


def test_a_run_with_dropout_resumes_after_sigkill_bit_for_bit(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert subprocess.run(_command(whole), capture_output=True).returncode == 0
    process = subprocess.Popen(_command(killed), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    metrics = killed / "seed_0" / "metrics.jsonl"
    start = time.monotonic()
    while not (metrics.exists() and len(records.read_metrics(metrics)) >= 3):  # past step 50
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.monotonic() - start < 120, "timed out"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert records.read_metrics(metrics)[-1]["step"] < 100  # killed before the end
    done = subprocess.run(_command(killed), capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    for seed in ("seed_0", "seed_1"):
        assert _rows(killed / seed) == _rows(whole / seed)  # the floats equal, not close
    # Training drew masks: the same seeds without regularisers train differently, and the
    # seeds differ from each other.
    losses = [r["train/loss"] for r in _rows(whole / "seed_0") if "train/loss" in r]
    assert losses != [r["train/loss"] for r in _rows(whole / "seed_1") if "train/loss" in r]


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["model.spec.zoneout_cell=1.5"], ["zoneout_cell", "[0, 1)"]),
        (["model.variant=mingru", "model.spec.zoneout_cell=0.1"], ["zoneout_cell", "MinSpec"]),
        (["model.variant=gru", "model.spec.projection=8"], ["projection", "allowed: 0"]),
        (["model.spec.projection=32"], ["model.spec.projection=32", "model.hidden=32"]),
        (["model.spec.weight_drop=0.2", "model.backward=fused"], ["model.backward", "autodiff"]),
        (["model.spec.layer_norm=input,recurent"], ["layer_norm", "'recurrent'"]),
        (["model.spec.zonout_hidden=0.1"], ["did you mean model.spec.zoneout_hidden"]),
    ],
)
def test_bad_values_are_exit_2_naming_the_field_and_write_nothing(
    tmp_path, capsys, overrides, words
):
    workdir = tmp_path / "never"
    command = ["train", str(ROOT / "configs/adding.py:quick"), "--workdir", str(workdir)]
    assert cli.main(command + [f"--set={o}" for o in overrides]) == 2
    error = capsys.readouterr().err
    for word in words:
        assert word in error, error
    assert not workdir.exists()
