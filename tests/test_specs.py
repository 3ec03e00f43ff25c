"""Specs and the variant registry: validation, value semantics, property-based checks."""

from __future__ import annotations

import dataclasses
import functools

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

import gatelab as gl
from gatelab.runtime import CHEAP_COMPILE

jit = functools.partial(jax.jit, compiler_options=CHEAP_COMPILE)

# --------------------------------------------------------------------------------------------------
# Validation names the field, the value and what is allowed.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, words",
    [
        (
            lambda: gl.LSTMSpec(forget="closed"),
            ["LSTMSpec.forget", "'closed'", "'open'", "'1-input'"],
        ),
        (lambda: gl.LSTMSpec(forget="forget"), ["LSTMSpec.forget", "itself"]),
        (lambda: gl.LSTMSpec(forget="1-forget"), ["LSTMSpec.forget", "itself"]),
        (lambda: gl.LSTMSpec(input="open", forget="1-input"), ["LSTMSpec.forget", "not learned"]),
        (lambda: gl.LSTMSpec(input="forget", forget="input"), ["cycle"]),
        (lambda: gl.LSTMSpec(input="output", peepholes=True), ["LSTMSpec.input", "peephole"]),
        (lambda: gl.LSTMSpec(cell_activation="relu"), ["cell_activation", "'tanh'", "'identity'"]),
        (lambda: gl.LSTMSpec(chrono_tmax=50.0, forget="open"), ["chrono_tmax", "forget"]),
        (lambda: gl.LSTMSpec(chrono_tmax=1.0), ["chrono_tmax", "> 2"]),
        (lambda: gl.LSTMSpec(peepholes="yes"), ["peepholes", "True or False"]),
        (lambda: gl.LSTMSpec(forget_bias=float("nan")), ["forget_bias", "finite"]),
        (lambda: gl.GRUSpec(reset="1-reset"), ["GRUSpec.reset", "itself"]),
        (lambda: gl.GRUSpec(update="forget"), ["GRUSpec.update", "'1-reset'"]),
        (lambda: gl.MinSpec(family="rnn"), ["MinSpec.family", "'gru'", "'lstm'"]),
        (lambda: gl.MinSpec(forget="open"), ["MinSpec.forget", "family='lstm'"]),
        (lambda: gl.MinSpec(candidate_activation="tanh"), ["log_space", "'g'"]),
    ],
)
def test_invalid_specs_name_the_field_and_the_choices(build, words):
    with pytest.raises(ValueError) as error:
        build()
    for word in words:
        assert word in str(error.value), (word, str(error.value))


def test_specs_are_frozen_hashable_values():
    spec = gl.LSTMSpec(forget="1-input", output="open")
    assert spec == gl.LSTMSpec(output="open", forget="1-input")
    assert hash(spec) == hash(gl.LSTMSpec(output="open", forget="1-input"))
    assert len({spec, gl.variant("CIFG"), spec}) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.forget = "learned"  # type: ignore[misc]
    assert spec.replace(output="learned") == gl.LSTMSpec(forget="1-input")
    with pytest.raises(ValueError, match="LSTMSpec.output"):
        spec.replace(output="nope")
    # Usable as a static argument of a compiled function.
    f = jit(lambda x, s: x * len(s.learned_gates), static_argnums=1)
    assert f(jnp.ones(()), spec) == 1


def test_specs_print_as_the_line_a_user_types():
    assert repr(gl.LSTMSpec(forget="1-input", output="open")) == (
        "LSTMSpec(forget='1-input', output='open')"
    )
    assert str(gl.variant("mgu")) == "GRUSpec(reset='update', reset_after=False)"
    names = {name: getattr(gl, name) for name in gl.__all__}  # what `from gatelab import *` gives
    for variant in gl.VARIANTS.values():
        assert eval(repr(variant.spec), names) == variant.spec  # round trip


def test_variant_lookup_ignores_case_and_lists_names():
    assert gl.variant("cifg") == gl.variant("CIFG") == gl.LSTMSpec(peepholes=True, forget="1-input")
    assert gl.variant("GRU") == gl.GRUSpec()
    with pytest.raises(ValueError) as error:
        gl.variant("cifgg")
    assert "CIFG" in str(error.value) and "vanilla" in str(error.value)


def test_greff_variants_change_one_thing_of_vanilla():
    vanilla = gl.variant("vanilla")
    fields = [f.name for f in dataclasses.fields(vanilla)]
    for name in ("NIG", "NFG", "NOG", "NIAF", "NOAF", "NP", "CIFG", "FGR"):
        spec = gl.variant(name)
        changed = [f for f in fields if getattr(spec, f) != getattr(vanilla, f)]
        assert len(changed) == 1, (name, changed)


def test_every_required_variant_is_named():
    required = "lstm vanilla NIG NFG NOG NIAF NOAF NP CIFG FGR gru gru_reset_before mgu janet"
    required += " ugrnn mingru minlstm"
    assert set(required.split()) <= set(gl.VARIANTS)
    for variant in gl.VARIANTS.values():
        assert variant.description and variant.citation


# --------------------------------------------------------------------------------------------------
# Property-based: any spec is either valid (and then finite) or a ValueError.
# --------------------------------------------------------------------------------------------------

LSTM_MODES = ["learned", "open", "1-input", "1-forget", "1-output", "input", "forget", "output"]
GRU_MODES = ["learned", "open", "1-update", "1-reset", "update", "reset"]
JUNK = st.one_of(st.text(max_size=8), st.integers(), st.none(), st.floats(), st.booleans())


def lstm_fields(modes):
    return st.fixed_dictionaries(
        {
            "forget": modes,
            "input": modes,
            "output": modes,
            "candidate_activation": st.sampled_from(["tanh", "identity"]),
            "cell_activation": st.sampled_from(["tanh", "identity"]),
            "peepholes": st.booleans(),
            "gate_recurrence": st.booleans(),
            "forget_bias": st.floats(-3, 3),
            "chrono_tmax": st.one_of(st.none(), st.floats(3, 1000)),
            "tie_shift": st.floats(-2, 2),
        }
    )


def gru_fields(modes):
    return st.fixed_dictionaries(
        {
            "update": modes,
            "reset": modes,
            "reset_after": st.booleans(),
            "candidate_activation": st.sampled_from(["tanh", "identity"]),
            "update_bias": st.floats(-3, 3),
            "tie_shift": st.floats(-2, 2),
        }
    )


def min_fields(modes):
    return st.fixed_dictionaries(
        {
            "family": st.sampled_from(["gru", "lstm"]),
            "forget": modes,
            "input": modes,
            "normalize": st.booleans(),
            "log_space": st.booleans(),
            "candidate_activation": st.sampled_from(["g", "identity", "tanh"]),
        }
    )


ANY_SPEC = st.one_of(
    st.tuples(st.just(gl.LSTMSpec), lstm_fields(st.sampled_from(LSTM_MODES))),
    st.tuples(st.just(gl.GRUSpec), gru_fields(st.sampled_from(GRU_MODES))),
    st.tuples(st.just(gl.MinSpec), min_fields(st.sampled_from(["learned", "open", "1-input"]))),
)


@settings(max_examples=12)
@given(ANY_SPEC)
def test_random_specs_are_valid_and_finite_or_a_value_error(case):
    cls, fields = case
    try:
        spec = cls(**fields)
    except ValueError:
        return
    x = jax.random.normal(jax.random.key(0), (2, 5, 3))
    rnn = gl.GatedRNN(4, spec)
    params = jit(rnn.init)(jax.random.key(1), x)["params"]

    def loss(p):
        carry, y = rnn.apply({"params": p}, x, seq_lengths=jnp.array([5, 2]))
        return jnp.sum(y**2) + sum(jnp.sum(c**2) for c in jax.tree_util.tree_leaves(carry))

    value, grads = jit(jax.value_and_grad(loss))(params)
    assert np.isfinite(value)
    assert all(np.isfinite(g).all() for g in jax.tree_util.tree_leaves(grads))


@settings(max_examples=100)
@given(
    st.one_of(
        st.tuples(st.just(gl.LSTMSpec), lstm_fields(JUNK)),
        st.tuples(st.just(gl.GRUSpec), gru_fields(JUNK)),
        st.tuples(st.just(gl.MinSpec), min_fields(JUNK)),
    ),
    st.data(),
)
def test_random_invalid_specs_raise_value_error(case, data):
    cls, fields = case
    # Make sure at least one gate is junk (hypothesis may still draw a valid mode string).
    gate = data.draw(st.sampled_from([k for k in ("forget", "input", "update") if k in fields]))
    fields = {
        **fields,
        gate: data.draw(st.sampled_from([3, None, "", "sideways", gate, f"1-{gate}"])),
    }
    with pytest.raises(ValueError):
        cls(**fields)


def test_variants_command_lists_every_variant_with_its_parameter_count(capsys):
    from gatelab import cli

    assert cli.main(["variants", "--input", "32", "--hidden", "128"]) == 0
    out = capsys.readouterr().out
    for name, v in gl.VARIANTS.items():
        assert name in out and f"{gl.param_count(v.spec, 32, 128):,d}" in out
    assert cli.main(["variants", "cifg", "--input", "8", "--hidden", "16"]) == 0
    out = capsys.readouterr().out
    assert "forget: 1 - input" in out and "c_t = f_t * c_{t-1} + i_t * z_t" in out
    assert cli.main(["variants", "nope"]) == 2
    assert "unknown variant" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["trian", "configs/adding.py"], "unknown command 'trian' (did you mean train?)"),
        (["variants", "--hiden", "8"], "unknown flag --hiden (did you mean --hidden?)"),
        (["variants", "lstm", "gru"], "unrecognized arguments: gru"),
    ],
)
def test_a_mistyped_command_or_flag_is_an_error_with_a_suggestion(argv, expected, capsys):
    from gatelab import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert expected in capsys.readouterr().err
