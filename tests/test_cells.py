"""Cells and layers: every named variant against independent references.

Sizes are tiny (b=3, t=6, d=5, H=4) so the whole matrix compiles in seconds; the full
variant x option matrix of the fast-path tests is marked ``slow``.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import REFERENCES

import gatelab as gl
from gatelab.families import check_sizes, param_breakdown
from gatelab.runtime import CHEAP_COMPILE

jit = functools.partial(jax.jit, compiler_options=CHEAP_COMPILE)

B, T, D, H = 3, 6, 5, 4
NAMES = list(gl.VARIANTS)


def randomize(params, seed=0, scale=0.5):
    """Every parameter drawn afresh (zero-initialised peepholes would hide peephole bugs)."""
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree_util.tree_unflatten(
        tree,
        [scale * jax.random.normal(k, leaf.shape) for k, leaf in zip(keys, leaves, strict=True)],
    )


def inputs(seed=1, shape=(B, T, D)):
    return jax.random.normal(jax.random.key(seed), shape)


def init_params(spec, x=None, features=H):
    x = inputs() if x is None else x
    return jit(gl.GatedRNN(features, spec).init)(jax.random.key(0), x)["params"]


def run(module, params, x, **kwargs):
    """``module.apply`` compiled (op-by-op dispatch would dominate the suite's time)."""
    return jit(lambda p, x: module.apply({"params": p}, x, **kwargs))(params, x)


# --------------------------------------------------------------------------------------------------
# Shapes, parameters, FLOPs.
# --------------------------------------------------------------------------------------------------


def test_parameter_counts_closed_form():
    """The closed forms of the literature (docs/reference.md, sections 2-5)."""
    block = D * H + H * H + H
    expected = {
        "lstm": 4 * block,
        "vanilla": 4 * block + 3 * H,
        "NIG": 3 * block + 2 * H,
        "NFG": 3 * block + 2 * H,
        "NOG": 3 * block + 2 * H,
        "CIFG": 3 * block + 2 * H,
        "NP": 4 * block,
        "FGR": 4 * block + 3 * H + 9 * H * H,  # Greff: 9 extra recurrent H x H matrices
        "gru": 3 * block + H,  # PyTorch's two candidate biases
        "gru_reset_before": 3 * block,
        "mgu": 2 * block,
        "janet": 2 * block,
        "ugrnn": 2 * block,
        "mingru": 2 * (D * H + H),
        "minlstm": 3 * (D * H + H),
    }
    for name, count in expected.items():
        assert gl.param_count(gl.variant(name), D, H) == count, name


@pytest.mark.parametrize(
    "name, absent",
    [
        ("NIG", {"input"}),
        ("NFG", {"forget"}),
        ("NOG", {"output"}),
        ("CIFG", {"forget"}),
        ("janet", {"input", "output"}),
        ("mgu", {"reset"}),
        ("ugrnn", {"reset"}),
        ("lstm", {"gate_recurrence"}),
    ],
)
def test_removed_and_tied_gates_own_no_parameters(name, absent):
    params = init_params(gl.variant(name))
    assert not absent & set(params), f"{name} owns {absent & set(params)}"
    if name == "ugrnn":  # no reset gate, so no separate recurrent candidate bias either
        assert "bias_h" not in params["candidate"]
    if name in ("NIG", "NFG", "NOG", "CIFG"):
        assert all("peephole" in params[g] for g in gl.variant(name).learned_gates)


def _step_flops(spec, features=64, batch=8):
    cell = gl.GatedCell(features, spec)
    x = jnp.ones((batch, features))
    carry = cell.initialize_carry(jax.random.key(0), x.shape)
    params = cell.init(jax.random.key(0), carry, x)
    compiled = jit(cell.apply).lower(params, carry, x).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return cost["flops"]


def test_removed_gate_costs_no_flops():
    vanilla = _step_flops(gl.variant("vanilla"))
    for name in ("NFG", "NIG", "NOG", "CIFG"):
        ratio = _step_flops(gl.variant(name)) / vanilla
        assert 0.72 < ratio < 0.78, (name, ratio)  # 3 of 4 matmul blocks
    ratio = _step_flops(gl.variant("mgu")) / _step_flops(gl.variant("gru_reset_before"))
    assert 0.62 < ratio < 0.70, ratio  # 2 of 3 blocks


# --------------------------------------------------------------------------------------------------
# Gate semantics through the captured gates.
# --------------------------------------------------------------------------------------------------


def _captured(name, seed=0):
    spec = gl.variant(name)
    x = inputs()
    params = randomize(init_params(spec, x), seed)
    (carry, y), state = run(gl.GatedRNN(H, spec), params, x, mutable=["gates", "state"])
    gates = state["gates"]["activations"][0]
    cell = state["state"]["cell"][0] if "cell" in state.get("state", {}) else None
    return spec, params, x, y, gates, cell


def test_open_gates_are_exactly_one():
    # NOG: h = tanh(c) * 1, bit for bit; janet: output open and identity activation, h = c.
    _, _, _, y, gates, cell = _captured("NOG")
    assert "output" not in gates
    np.testing.assert_array_equal(y, jnp.tanh(cell))
    _, _, _, y, gates, cell = _captured("janet")
    np.testing.assert_array_equal(y, cell)
    # NFG: c_t = c_{t-1} + i_t z_t, so c_t - c_{t-1} has the sign of i_t z_t with |.| <= 1.
    _, _, _, _, gates, cell = _captured("NFG")
    step = np.diff(np.asarray(cell), axis=1, prepend=0.0)
    assert np.all(np.abs(step) <= 1.0 + 1e-6)
    assert "forget" not in gates


def test_ties_equal_their_definitions():
    _, _, _, _, gates, _ = _captured("CIFG")
    np.testing.assert_array_equal(gates["forget"], 1.0 - gates["input"])
    _, _, _, _, gates, _ = _captured("mgu")
    np.testing.assert_array_equal(gates["reset"], gates["update"])
    spec, params, x, _, gates, _ = _captured("janet")
    # input = 1 - sigma(s_f - 1): recompute s_f from the forget gate itself.
    s_f = np.log(gates["forget"]) - np.log1p(-np.asarray(gates["forget"], np.float64))
    np.testing.assert_allclose(gates["input"], 1.0 - 1.0 / (1.0 + np.exp(-(s_f - 1.0))), atol=1e-5)


def test_noaf_and_niaf_follow_their_equations():
    _, _, _, y, gates, cell = _captured("NOAF")
    np.testing.assert_allclose(y, gates["output"] * cell, atol=1e-6)  # h = o * c, no tanh
    _, params, x, y, gates, cell = _captured("NIAF")
    # c_t = f_t c_{t-1} + i_t z_t with z_t = W_z x_t + U_z h_{t-1} + b_z (no tanh).
    p = params["candidate"]
    h_prev = np.concatenate([np.zeros((B, 1, H)), np.asarray(y)[:, :-1]], axis=1)
    z = np.asarray(x) @ np.asarray(p["kernel_x"]) + h_prev @ np.asarray(p["kernel_h"])
    z = z + np.asarray(p["bias"])
    c_prev = np.concatenate([np.zeros((B, 1, H)), np.asarray(cell)[:, :-1]], axis=1)
    np.testing.assert_allclose(
        cell, gates["forget"] * c_prev + gates["input"] * z, atol=1e-5, rtol=1e-5
    )


# --------------------------------------------------------------------------------------------------
# Initialisation.
# --------------------------------------------------------------------------------------------------


def test_forget_bias_and_chrono_initialisation():
    params = init_params(gl.variant("lstm"))
    np.testing.assert_array_equal(params["forget"]["bias"], 1.0)
    np.testing.assert_array_equal(params["input"]["bias"], 0.0)
    params = init_params(gl.LSTMSpec(chrono_tmax=50.0), features=64)
    b_f = np.asarray(params["forget"]["bias"])
    assert np.all((b_f >= 0.0) & (b_f <= np.log(49.0) + 1e-6)) and b_f.std() > 0.3
    np.testing.assert_array_equal(params["input"]["bias"], -b_f)
    # CIFG: f = 1 - sigma(b_i) starts at sigma(forget_bias), or at chrono with T_max.
    params = init_params(gl.variant("CIFG"))
    np.testing.assert_allclose(1.0 - jax.nn.sigmoid(params["input"]["bias"]), jax.nn.sigmoid(1.0))
    params = init_params(gl.variant("janet"), features=64)
    assert "input" not in params and np.all(np.asarray(params["forget"]["bias"]) >= 0.0)
    params = init_params(gl.variant("ugrnn"))
    np.testing.assert_array_equal(params["update"]["bias"], -1.0)


# --------------------------------------------------------------------------------------------------
# Cross-framework: PyTorch and Flax with copied weights.
# --------------------------------------------------------------------------------------------------


def test_lstm_equals_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    ref = torch.nn.LSTM(D, H, batch_first=True)
    x = np.array(inputs(), np.float32)  # writable, as torch.from_numpy wants
    with torch.no_grad():
        y_ref, (h_ref, c_ref) = ref(torch.from_numpy(x))
    w_ih, w_hh = ref.weight_ih_l0.detach().numpy(), ref.weight_hh_l0.detach().numpy()
    bias = (ref.bias_ih_l0 + ref.bias_hh_l0).detach().numpy()
    rows = lambda k: slice(k * H, (k + 1) * H)  # PyTorch's order: i, f, g, o
    params = {
        name: {"kernel_x": w_ih[rows(k)].T, "kernel_h": w_hh[rows(k)].T, "bias": bias[rows(k)]}
        for k, name in enumerate(["input", "forget", "candidate", "output"])
    }
    (c, h), y = run(gl.GatedRNN(H, gl.variant("lstm")), params, x)
    np.testing.assert_allclose(y, y_ref.numpy(), atol=1e-5)
    np.testing.assert_allclose(h, h_ref[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(c, c_ref[0].numpy(), atol=1e-5)


def test_gru_equals_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    ref = torch.nn.GRU(D, H, batch_first=True)
    x = np.array(inputs(), np.float32)  # writable, as torch.from_numpy wants
    with torch.no_grad():
        y_ref, h_ref = ref(torch.from_numpy(x))
    w_ih, w_hh = ref.weight_ih_l0.detach().numpy(), ref.weight_hh_l0.detach().numpy()
    b_ih, b_hh = ref.bias_ih_l0.detach().numpy(), ref.bias_hh_l0.detach().numpy()
    r, z, n = (slice(k * H, (k + 1) * H) for k in range(3))  # PyTorch's order: r, z, n
    params = {
        "reset": {"kernel_x": w_ih[r].T, "kernel_h": w_hh[r].T, "bias": b_ih[r] + b_hh[r]},
        # PyTorch's z is the fraction kept, 1 - update: sigma(-s) = 1 - sigma(s).
        "update": {"kernel_x": -w_ih[z].T, "kernel_h": -w_hh[z].T, "bias": -(b_ih[z] + b_hh[z])},
        "candidate": {
            "kernel_x": w_ih[n].T,
            "kernel_h": w_hh[n].T,
            "bias": b_ih[n],
            "bias_h": b_hh[n],
        },
    }
    h, y = run(gl.GatedRNN(H, gl.variant("gru")), params, x)
    np.testing.assert_allclose(y, y_ref.numpy(), atol=1e-5)
    np.testing.assert_allclose(h, h_ref[0].numpy(), atol=1e-5)


def test_gru_equals_flax_grucell():
    x = inputs()
    ref = nn.RNN(nn.GRUCell(H), return_carry=True)
    p = jit(ref.init)(jax.random.key(3), x)["params"]["cell"]
    p = jax.tree_util.tree_map(lambda v: v + 0.1, p)  # non-zero biases
    h_ref, y_ref = run(ref, {"cell": p}, x)
    params = {
        "reset": {
            "kernel_x": p["ir"]["kernel"],
            "kernel_h": p["hr"]["kernel"],
            "bias": p["ir"]["bias"],
        },
        "update": {
            "kernel_x": -p["iz"]["kernel"],
            "kernel_h": -p["hz"]["kernel"],
            "bias": -p["iz"]["bias"],
        },
        "candidate": {
            "kernel_x": p["in"]["kernel"],
            "kernel_h": p["hn"]["kernel"],
            "bias": p["in"]["bias"],
            "bias_h": p["hn"]["bias"],
        },
    }
    h, y = run(gl.GatedRNN(H, gl.variant("gru")), params, x)
    np.testing.assert_allclose(y, y_ref, atol=1e-5)
    np.testing.assert_allclose(h, h_ref, atol=1e-5)


def test_lstm_equals_flax_lstmcell():
    x = inputs()
    ref = nn.RNN(nn.LSTMCell(H), return_carry=True)
    p = jit(ref.init)(jax.random.key(3), x)["params"]["cell"]
    p = jax.tree_util.tree_map(lambda v: v + 0.1, p)
    (c_ref, h_ref), y_ref = run(ref, {"cell": p}, x)
    params = {
        name: {
            "kernel_x": p["i" + k]["kernel"],
            "kernel_h": p["h" + k]["kernel"],
            "bias": p["h" + k]["bias"],
        }
        for name, k in [("input", "i"), ("forget", "f"), ("candidate", "g"), ("output", "o")]
    }
    (c, h), y = run(gl.GatedRNN(H, gl.variant("lstm")), params, x)
    np.testing.assert_allclose(y, y_ref, atol=1e-5)
    np.testing.assert_allclose(c, c_ref, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# Every variant: the fast path equals nn.RNN(GatedCell) (values and gradients) and NumPy.
# --------------------------------------------------------------------------------------------------

LENGTHS = jnp.array([6, 3, 1])


def _numpy_reference(name, params, x, lengths, reverse):
    """The NumPy reference run on each sequence's valid prefix (flipped when reversed)."""
    x = np.asarray(x)
    outputs = np.zeros(x.shape[:2] + (H,))
    finals = []
    for b in range(x.shape[0]):
        steps = x.shape[1] if lengths is None else int(lengths[b])
        prefix = x[b : b + 1, :steps]
        y, state = REFERENCES[name](prefix[:, ::-1] if reverse else prefix, params)
        outputs[b, :steps] = y[0, ::-1] if reverse else y[0]
        finals.append(state)
    return outputs, jax.tree_util.tree_map(lambda *v: np.concatenate(v), *finals)


def width(spec) -> int:
    """The test's input width for ``spec``: D, or H for the parts that take x as it is."""
    try:
        check_sizes(spec, D, H)
    except ValueError:
        return H
    return D


def _check_variant(name, lengths, reverse):
    """GatedRNN against nn.RNN(GatedCell) (values and gradients) and the NumPy reference."""
    spec = gl.variant(name)
    x = inputs(shape=(B, T, width(spec)))
    params = init_params(spec, x)
    counted = {
        part: sum(v.size for v in jax.tree_util.tree_leaves(p)) for part, p in params.items()
    }
    assert counted == param_breakdown(spec, width(spec), H)
    params = randomize(params, seed=2)
    weights = jax.random.normal(jax.random.key(7), (B, T, H))
    valid = jnp.ones((B, T, 1))
    if lengths is not None:
        valid = (jnp.arange(T)[None, :, None] < lengths[:, None, None]).astype(jnp.float32)

    def objective(y, carry):
        h = carry[1] if isinstance(carry, tuple) else carry
        return jnp.sum(weights * y * valid) + jnp.sum(h * h), (y, carry)

    def fast(p):
        rnn = gl.GatedRNN(H, spec, reverse=reverse)
        carry, y = rnn.apply({"params": p}, x, seq_lengths=lengths)
        return objective(y, carry)

    def loop(p):
        rnn = nn.RNN(gl.GatedCell(H, spec), return_carry=True, reverse=reverse, keep_order=True)
        carry, y = rnn.apply({"params": {"cell": p}}, x, seq_lengths=lengths)
        return objective(y, carry)

    (loss, (y, carry)), grads = jit(jax.value_and_grad(fast, has_aux=True))(params)
    (loss_r, (y_r, carry_r)), grads_r = jit(jax.value_and_grad(loop, has_aux=True))(params)

    assert y.shape == (B, T, H)
    close = lambda a, b, tol=1e-5: np.testing.assert_allclose(a, b, atol=tol, rtol=tol)  # noqa: E731
    close(y * valid, y_r * valid)
    np.testing.assert_array_equal(y * (1.0 - valid), 0.0)  # padding is zero
    jax.tree_util.tree_map(close, carry, carry_r)
    close(loss, loss_r)
    jax.tree_util.tree_map(lambda a, b: close(a, b, 1e-4), grads, grads_r)

    expected_y, expected_state = _numpy_reference(name, params, x, lengths, reverse)
    close(y, expected_y)
    final = carry[:2] if isinstance(carry, tuple) else carry
    jax.tree_util.tree_map(close, final, expected_state)


@pytest.mark.parametrize("name", NAMES)
def test_variant_equals_references(name):
    """Default suite: every variant, with lengths and reversed (the hardest combination)."""
    _check_variant(name, LENGTHS, reverse=True)


@pytest.mark.parametrize(
    "name, lengths, reverse",
    [
        ("lstm", None, False),
        ("vanilla", LENGTHS, False),
        ("gru", None, True),
        ("mingru", LENGTHS, False),
    ],
)
def test_variant_equals_references_options(name, lengths, reverse):
    _check_variant(name, lengths, reverse)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_variant_equals_references_full_matrix(name, lengths, reverse):
    _check_variant(name, lengths, reverse)


@pytest.mark.parametrize(
    "name", ["lstm", "vanilla", "FGR", "gru", "mgu", "janet", "mut1", "mut2", "mut3", "indrnn"]
)
def test_hand_written_backward_equals_autodiff(name):
    """GatedRNN(backward="fused") gives autodiff's gradients, with lengths and reversed (MUT1's
    and MUT2's parts that read x without a kernel too)."""
    spec = gl.variant(name)
    x = inputs(shape=(B, T, width(spec)))
    params = randomize(init_params(spec, x), seed=3)
    weights = jax.random.normal(jax.random.key(8), (B, T, H))

    def grads(backward):
        def loss(p, x):
            rnn = gl.GatedRNN(H, spec, reverse=True, backward=backward)
            carry, y = rnn.apply({"params": p}, x, seq_lengths=LENGTHS)
            h = carry[1] if isinstance(carry, tuple) else carry
            return jnp.sum(weights * y) + jnp.sum(h * h)

        return jit(jax.grad(loss, argnums=(0, 1)))(params, x)  # and the inputs' gradient

    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5),
        grads("fused"),
        grads("autodiff"),
    )


@pytest.mark.parametrize("family", ["gru", "lstm"])
def test_min_associative_scan_equals_sequential(family):
    """The associative scan (log-space and linear) equals the step-by-step recurrence."""
    x = inputs(shape=(2, 16, D))
    h0 = jax.random.normal(jax.random.key(5), (2, H))  # a non-zero (even negative) start
    for spec in (
        gl.MinSpec(family=family),
        gl.MinSpec(family=family, log_space=False, candidate_activation="g"),
    ):
        params = randomize(init_params(spec, x), seed=4)
        _, y_loop = run(
            nn.RNN(gl.GatedCell(H, spec), return_carry=True), {"cell": params}, x, initial_carry=h0
        )
        for scan in ("associative", "sequential"):
            _, y = run(gl.GatedRNN(H, spec, min_scan=scan), params, x, initial_carry=h0)
            np.testing.assert_allclose(y, y_loop, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_min_family_long_sequences_stay_finite():
    x = inputs(shape=(2, 4096, D))
    for name in ("mingru", "minlstm"):
        spec = gl.variant(name)
        params = randomize(init_params(spec, x), scale=2.0)
        for scan in ("associative", "sequential"):
            rnn = gl.GatedRNN(H, spec, min_scan=scan)
            loss = lambda p: rnn.apply({"params": p}, x)[1].sum()  # noqa: B023
            grads = jit(jax.grad(loss))(params)
            assert all(np.isfinite(g).all() for g in jax.tree_util.tree_leaves(grads)), name


def test_cell_works_inside_flax_bidirectional():
    spec = gl.variant("CIFG")
    layer = nn.Bidirectional(nn.RNN(gl.GatedCell(H, spec)), nn.RNN(gl.GatedCell(H, spec)))
    variables = jit(layer.init)(jax.random.key(0), inputs())
    assert run(layer, variables["params"], inputs()).shape == (B, T, 2 * H)
