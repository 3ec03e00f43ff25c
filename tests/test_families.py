"""The families of today's papers: sLSTM, RG-LRU, Jozefowicz's MUT1-3 and IndRNN.

Every named variant also runs through tests/test_cells.py (the fast path equals the reference cell
in values and gradients, and the NumPy reference with lengths and reversed). Here: gradients
against finite differences of the NumPy reference in float64; the sLSTM authors' own cell with
copied weights; the stabilised sLSTM against the unstabilised one; long sequences; heads; the
RG-LRU's scans and its ring initialisation; IndRNN's constraint; the FLOPs of removed parts;
sizes a spec cannot take.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from reference import REFERENCES, rglru, slstm
from test_cells import B, D, H, T, randomize, width

import gatelab as gl
from gatelab import config as config_lib
from gatelab import train, variants
from gatelab.runtime import CHEAP_COMPILE

jit = functools.partial(jax.jit, compiler_options=CHEAP_COMPILE)

NEW = [
    name
    for name, v in gl.VARIANTS.items()
    if isinstance(v.spec, (gl.SLSTMSpec, gl.RGLRUSpec, gl.IndRNNSpec)) or name.startswith("mut")
]


def setup(spec, seed=2, scale=0.5, steps=T, dtype=jnp.float32):
    x = jax.random.normal(jax.random.key(1), (B, steps, width(spec)), dtype)
    rnn = gl.GatedRNN(H, spec, param_dtype=dtype)
    params = randomize(jit(rnn.init)(jax.random.key(0), x)["params"], seed, scale)
    return rnn, jax.tree_util.tree_map(lambda v: v.astype(dtype), params), x


def test_the_new_variants_are_named():
    assert {"slstm", "rglru", "mut1", "mut2", "mut3", "indrnn"} <= set(NEW)
    for name in ("slstm_sigmoid_input", "slstm_no_normaliser", "slstm_exp_forget"):
        assert name in NEW
    assert {"rglru_no_recurrence_gate", "rglru_no_input_gate", "slstm_no_mixing"} <= set(NEW)


# --------------------------------------------------------------------------------------------------
# Gradients: the JAX gradient equals finite differences of the NumPy reference (float64).
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NEW)
def test_gradients_equal_finite_differences_of_the_numpy_reference(name):
    spec = gl.variant(name)
    with jax.enable_x64(True):
        rnn, params, x = setup(spec, dtype=jnp.float64)
        weights = np.asarray(jax.random.normal(jax.random.key(7), (B, T, H), jnp.float64))

        def loss(p):
            return jnp.sum(jnp.asarray(weights) * rnn.apply({"params": p}, x)[1])

        grads = jax.tree_util.tree_map(np.asarray, jax.jit(jax.grad(loss))(params))
    numpy_params = jax.tree_util.tree_map(np.asarray, params)
    reference = REFERENCES[name]
    x = np.asarray(x)

    def numpy_loss(p):
        return float(np.sum(weights * reference(x, p)[0]))

    rng = np.random.default_rng(0)
    eps = 1e-6
    for part, named in numpy_params.items():
        for key, value in named.items():
            for index in rng.choice(value.size, size=min(4, value.size), replace=False):
                plus = jax.tree_util.tree_map(np.copy, numpy_params)
                minus = jax.tree_util.tree_map(np.copy, numpy_params)
                plus[part][key].flat[index] += eps
                minus[part][key].flat[index] -= eps
                numeric = (numpy_loss(plus) - numpy_loss(minus)) / (2 * eps)
                analytic = grads[part][key].flat[index]
                assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-6), (part, key, index)


# --------------------------------------------------------------------------------------------------
# sLSTM.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("heads", [1, 2])
@pytest.mark.parametrize("function", ["slstm", "lstm"])
def test_slstm_equals_the_authors_cell(heads, function):
    """xLSTM's own sLSTM cell (``xlstm``, its PyTorch "vanilla" backend) with copied weights:
    ``slstm`` with ``function="slstm"``, ``slstm_no_normaliser`` with their "lstm" cell."""
    torch = pytest.importorskip("torch")
    xlstm_cell = pytest.importorskip("xlstm.blocks.slstm.cell")
    hidden = 8
    spec = gl.variant("slstm" if function == "slstm" else "slstm_no_normaliser")
    spec = spec.replace(heads=heads, recurrent_init="uniform")
    x = jax.random.normal(jax.random.key(1), (B, 7, D))
    rnn = gl.GatedRNN(hidden, spec)
    params = randomize(rnn.init(jax.random.key(0), x)["params"], seed=3)
    _, y = rnn.apply({"params": params}, x)

    dtypes = {f"dtype{k}": "float32" for k in ("", "_b", "_r", "_w", "_g", "_s", "_a")}
    config = xlstm_cell.sLSTMCellConfig(
        hidden_size=hidden,
        num_heads=heads,
        backend="vanilla",
        function=function,
        num_states=4 if function == "slstm" else 2,
        **dtypes,
    )
    cell = xlstm_cell.sLSTMCell(config)
    gates = ["input", "forget", "candidate", "output"]  # their order: i, f, z, o
    size = hidden // heads
    # Theirs: R[head, in, gate, out] and b[head, gate, unit]; ours: one (heads, in, out) per gate.
    kernel = np.stack([np.asarray(params[g]["kernel_h"]) for g in gates], axis=2)
    bias = np.stack([np.asarray(params[g]["bias"]).reshape(heads, size) for g in gates], axis=1)
    with torch.no_grad():
        cell._recurrent_kernel_.copy_(cell._recurrent_kernel_ext2int(torch.tensor(kernel)))
        cell._bias_.copy_(cell._bias_ext2int(torch.tensor(bias)))
        wx = np.concatenate([np.asarray(x) @ np.asarray(params[g]["kernel_x"]) for g in gates], -1)
        out, _ = cell(torch.tensor(wx))
    out = out.permute(0, 2, 1, 3).reshape(B, 7, hidden).numpy()  # (B, NH, S, DH) -> (B, S, H)
    np.testing.assert_allclose(np.asarray(y), out, atol=1e-5, rtol=1e-5)


def test_slstm_forget_bias_initialisation_equals_the_authors():
    xlstm_cell = pytest.importorskip("xlstm.blocks.slstm.cell")
    hidden, heads = 16, 2
    config = xlstm_cell.sLSTMCellConfig(hidden_size=hidden, num_heads=heads, backend="vanilla")
    cell = xlstm_cell.sLSTMCell(config)
    theirs = cell._bias_int2ext(cell._bias_).detach().numpy()  # (heads, gates i f z o, DH)
    x = jnp.ones((1, 2, 3))
    ours = gl.GatedRNN(hidden, gl.SLSTMSpec(heads=heads)).init(jax.random.key(0), x)["params"]
    np.testing.assert_allclose(ours["forget"]["bias"], theirs[:, 1].reshape(-1), atol=1e-6)
    for gate, k in (("input", 0), ("candidate", 2), ("output", 3)):
        np.testing.assert_array_equal(ours[gate]["bias"], theirs[:, k].reshape(-1))
    np.testing.assert_array_equal(ours["forget"]["kernel_h"], 0.0)  # no mixing at the start
    # The power law runs from +5 down to -7 in every head; linspace from 3 to 6.
    assert ours["forget"]["bias"][0] == pytest.approx(5.0)
    assert ours["forget"]["bias"][7] == pytest.approx(-7.0)
    linear = gl.GatedRNN(hidden, gl.SLSTMSpec(heads=heads, forget_init="linspace"))
    bias = linear.init(jax.random.key(0), x)["params"]["forget"]["bias"]
    np.testing.assert_allclose(bias, np.tile(np.linspace(3.0, 6.0, 8), 2), atol=1e-6)


@pytest.mark.parametrize("forget", ["sigmoid", "exponential"])
def test_slstm_stabilised_equals_unstabilised(forget):
    spec = gl.SLSTMSpec(forget=forget, recurrent_init="uniform")
    rnn, params, x = setup(spec, scale=0.7)
    _, y = rnn.apply({"params": params}, x)
    expected, _ = slstm(np.asarray(x), params, forget=forget, stabilised=False)
    np.testing.assert_allclose(y, expected, atol=1e-5, rtol=1e-5)


def test_slstm_long_sequences_with_large_preactivations_stay_finite():
    """T = 2,000 and pre-activations of tens: the unstabilised form overflows, this does not."""
    rnn, params, x = setup(gl.variant("slstm"), scale=4.0, steps=2000)
    x = 10.0 * x

    def loss(p):
        return jnp.sum(rnn.apply({"params": p}, x)[1])

    # The premise: exp of the input gate's pre-activations overflows float32 (above 88.7).
    assert (np.asarray(x) @ np.asarray(params["input"]["kernel_x"]) > 89.0).any()
    value, grads = jit(jax.value_and_grad(loss))(params)
    assert np.isfinite(value)
    assert all(np.isfinite(g).all() for g in jax.tree_util.tree_leaves(grads))


def test_slstm_heads_must_divide_the_hidden_size():
    with pytest.raises(ValueError, match=r"SLSTMSpec.heads=3 must divide the hidden size 4"):
        gl.GatedRNN(H, gl.SLSTMSpec(heads=3)).init(jax.random.key(0), jnp.ones((1, 2, D)))
    with pytest.raises(ValueError, match="normaliser=False.*allowed.*input='sigmoid'"):
        gl.SLSTMSpec(normaliser=False)


def test_slstm_captures_its_stabilised_gates_and_normaliser():
    rnn, params, x = setup(gl.variant("slstm"))
    _, state = rnn.apply({"params": params}, x, mutable=["gates", "state"])
    gates = state["gates"]["activations"][0]
    assert set(gates) == {"input", "forget", "output"}
    for value in gates.values():
        assert 0.0 <= float(value.min()) and float(value.max()) <= 1.0
    assert {"cell", "normaliser", "hidden"} <= set(state["state"])


# --------------------------------------------------------------------------------------------------
# RG-LRU.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rglru", "rglru_no_recurrence_gate", "rglru_no_normalisation"])
def test_rglru_associative_scan_equals_sequential(name):
    spec = gl.variant(name)
    rnn, params, x = setup(spec, steps=16)
    h0 = jax.random.normal(jax.random.key(5), (B, H))
    runs = {
        scan: gl.GatedRNN(H, spec, min_scan=scan).apply(
            {"params": params}, x, initial_carry=h0, seq_lengths=jnp.array([16, 9, 1])
        )
        for scan in ("associative", "sequential")
    }
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5),
        runs["associative"],
        runs["sequential"],
    )


def test_rglru_initial_decay_lies_uniformly_on_the_ring():
    """``a = sigma(-Lambda)`` with ``a^2 ~ U[0.9^2, 0.999^2]`` (the authors' ring init)."""
    rnn = gl.GatedRNN(4096, gl.variant("rglru"))
    params = rnn.init(jax.random.key(0), jnp.ones((1, 2, 3)))["params"]
    a = np.asarray(jax.nn.sigmoid(-params["decay"]["lambda"]), np.float64)
    assert 0.9 - 1e-6 <= a.min() and a.max() <= 0.999 + 1e-6
    low, high = 0.9**2, 0.999**2
    assert scipy.stats.kstest(a**2, "uniform", args=(low, high - low)).pvalue > 0.01
    # At r = 1 the decay is a^8: between 0.43 and 0.992.
    assert 0.42 < (a**8).min() and (a**8).max() < 0.993


def test_rglru_without_projection_needs_as_many_inputs_as_units():
    spec = gl.RGLRUSpec(projection=False)
    with pytest.raises(ValueError, match="projection=False.*got 5 and 4"):
        gl.GatedRNN(H, spec).init(jax.random.key(0), jnp.ones((1, 2, D)))
    rnn, params, x = setup(spec)  # D = H: x itself is the recurrence's input
    assert "candidate" not in params
    expected, _ = rglru(np.asarray(x), params, projection=False)
    np.testing.assert_allclose(rnn.apply({"params": params}, x)[1], expected, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# MUT1-3 and IndRNN.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, field", [("mut1", "candidate_input"), ("mut2", "reset_input")])
def test_mutations_that_add_the_input_itself_need_d_equal_h(name, field):
    with pytest.raises(ValueError, match=f"GRUSpec.{field}.*got 5 and 4"):
        gl.GatedRNN(H, gl.variant(name)).init(jax.random.key(0), jnp.ones((1, 2, D)))
    config = config_lib.load("configs/mnist1d.py:quick", [f"model.variant={name}"])
    with pytest.raises(ValueError, match=f"model.spec .layer 0, input 1.: GRUSpec.{field}"):
        train.build_program(config)  # before a record is written or anything compiles


def test_mutations_own_only_their_kernels():
    params = setup(gl.variant("mut1"))[1]
    assert "kernel_h" not in params["update"] and "kernel_x" not in params["candidate"]
    assert "kernel_x" not in setup(gl.variant("mut2"))[1]["reset"]
    assert {"kernel_x", "kernel_h"} <= set(setup(gl.variant("mut3"))[1]["update"])


def test_indrnn_constraint_bounds_u_after_every_update():
    overrides = ["model.variant=indrnn", "model.spec.magnitude=2.0", "model.spec.tmax=10.0"]
    overrides += ["optim.lr=100.0"]
    config = config_lib.load("configs/adding.py:quick", overrides + ["optim.clip=0"])
    program = train.build_program(config)
    bound = 2.0 ** (1 / 10)
    values = {k: jnp.float32(v) for k, v in config_lib.run_values(config).items()}
    example = jnp.asarray(program.task.eval_set("validation")["inputs"][:1])
    state = jax.jit(lambda seed: train.init_state(program, seed, values, example))(0)
    u = np.asarray(state.params["layer0"]["recurrence"]["u"])
    assert 0.0 <= u.min() and u.max() <= bound  # initialised in [0, bound]
    step = jax.jit(functools.partial(train.train_step, program))
    for k in range(3):
        state, _ = step(state, jnp.int32(k), program.task.train_data())
    u = np.asarray(state.params["layer0"]["recurrence"]["u"])
    assert np.abs(u).max() == pytest.approx(bound)  # a huge step pushed it to the bound
    assert "recurrence" not in setup(gl.variant("indrnn_no_recurrence"))[1]


# --------------------------------------------------------------------------------------------------
# A removed part costs no FLOPs.
# --------------------------------------------------------------------------------------------------


def _step_flops(spec, features=64, batch=8):
    cell = gl.GatedCell(features, spec)
    x = jnp.ones((batch, features))
    carry = cell.initialize_carry(jax.random.key(0), x.shape)
    params = cell.init(jax.random.key(0), carry, x)
    cost = jit(cell.apply).lower(params, carry, x).compile().cost_analysis()
    return (cost[0] if isinstance(cost, list) else cost)["flops"]


@pytest.mark.parametrize(
    "name, base, low, high",
    [
        ("slstm_no_input_gate", "slstm", 0.70, 0.80),  # 3 of 4 blocks
        ("slstm_no_output_gate", "slstm", 0.70, 0.80),
        ("slstm_no_mixing", "slstm", 0.45, 0.55),  # no recurrent matmuls
        ("rglru_no_recurrence_gate", "rglru", 0.62, 0.72),  # 2 of 3 input matmuls
        ("mut1", "gru_reset_before", 0.62, 0.72),  # 4 of 6 matmuls
    ],
)
def test_removed_parts_cost_no_flops(name, base, low, high):
    ratio = _step_flops(gl.variant(name)) / _step_flops(gl.variant(base))
    assert low < ratio < high, ratio


def test_the_modern_gates_study_expands_to_every_ablation():
    from gatelab import sweep

    base, study = config_lib.load_study("experiments/modern_gates.py:small")
    runs = sweep.expand(base, study)
    assert {r.config.model.variant for r in runs} == set(variants.MODERN_STUDY)
    assert len(runs) == 3 * len(variants.MODERN_STUDY) and all(r.error is None for r in runs)
    assert {r.config.task.args["length"] for r in runs} == {100}
