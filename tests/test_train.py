"""The compiled runner: every config trains, learning is real; groups, resume, divergence."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import pytest
import wandb_reader

from gatelab import cli, records, restore, train
from gatelab import config as config_lib
from gatelab.checkpoint import Checkpoints
from gatelab.config import ConfigError

ROOT = Path(__file__).parents[1]
CONFIGS = sorted(p.stem for p in (ROOT / "configs").glob("*.py"))


def load(name: str, *overrides: str) -> config_lib.Config:
    return config_lib.load(str(ROOT / "configs" / f"{name}.py:quick"), list(overrides))


def without_timing(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("time/")}


_QUICK: dict[str, tuple] = {}


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """``quick_run(name)``: the config's quick form, trained once per process, W&B offline.

    The tests of one config live in one class, which ``--dist loadscope`` keeps on one worker.
    """

    def get(name: str):
        if name not in _QUICK:
            config = load(name, "wandb.mode=offline")
            workdir = tmp_path_factory.mktemp(name)
            _QUICK[name] = (config, workdir, train.train_and_evaluate(config, workdir, quiet=True))
        return _QUICK[name]

    return get


def test_every_config_has_a_documented_default_and_quick_form():
    assert set(CONFIGS) >= {"adding", "copy", "mnist1d", "digits", "chorales", "shakespeare"}
    for name in CONFIGS:
        module = config_lib.load_module(ROOT / "configs" / f"{name}.py")
        config_lib.validate(module.get_config())
        assert "gatelab train configs/" in module.__doc__, name
    tested = {cls.name for cls in QuickConfig.__subclasses__()}
    assert tested == set(CONFIGS), "every config needs its Test class below"


class QuickConfig:
    """Every config: its quick form trains, records, and mirrors to W&B."""

    name: str

    def test_trains_and_records(self, quick_run):
        config, workdir, (summary,) = quick_run(self.name)
        run_dir = workdir / "seed_0"
        assert summary["status"] == "completed"
        # A train workdir is a directory of runs like a sweep's: an index, the group's checkpoint.
        (entry,) = records.read_index(workdir)["runs"]
        assert entry["name"] == "seed_0" and entry["status"] == "completed" and entry["seed"] == 0
        assert (records.group_dir(workdir, entry["group"]) / "checkpoints").is_dir()
        assert records.Summary.from_json(summary).to_json() == summary  # the schema round-trips
        stored = json.loads((run_dir / "config.json").read_text())
        assert stored["config"] == config_lib.to_dict(config)
        assert stored["code_version"].startswith("gatelab")
        # What computed it: this CPU with its vector instructions, and jaxlib's version.
        machine = stored["resolved"]["machine"]
        assert records.host_cpu() in machine and f"jaxlib {jaxlib.__version__}" in machine
        assert records.read_json(run_dir / "summary.json") == summary
        for key in ("step", "best_step", "params/total", "params/candidate", "time/steps_per_s"):
            assert key in summary, key
        metric = summary["primary_metric"]
        for key in (f"eval/{metric}", f"test/{metric}", f"final/test/{metric}"):
            assert np.isfinite(summary[key]), key
        rows = records.read_metrics(run_dir / "metrics.jsonl")
        assert [r["step"] for r in rows] == list(
            range(config.run.log_every, config.run.steps + 1, config.run.log_every)
        )
        assert any(k.startswith("gates/layer0/") for k in rows[-1])
        # The offline W&B run holds the same train/loss history, read back from its .wandb file.
        logged = {
            row["step"]: row["train/loss"]
            for row in wandb_reader.history(wandb_reader.run_file(run_dir))
            if "train/loss" in row
        }
        assert logged == {row["step"]: row["train/loss"] for row in rows}


class TestAdding(QuickConfig):
    name = "adding"

    def test_learns(self, quick_run):
        assert quick_run("adding")[2][0]["test/mse"] < 0.05  # chance 1/6


class TestMnist1d(QuickConfig):
    name = "mnist1d"

    def test_learns(self, quick_run):
        assert quick_run("mnist1d")[2][0]["test/accuracy"] >= 0.40  # chance 0.1

    def test_saved_best_parameters_reproduce_the_test_metric(self, quick_run):
        _, workdir, (summary,) = quick_run("mnist1d")
        run = restore.restore_run(workdir / "seed_0")
        test = run.task.eval_set("test")
        apply = jax.jit(run.model.apply)
        outputs = apply({"params": run.best_params}, jnp.asarray(test["inputs"]))
        batch = {k: jnp.asarray(v) for k, v in test.items()}
        total, weight = run.task.metrics(outputs, batch)["accuracy"]
        assert float(total / weight) == pytest.approx(summary["test/accuracy"], abs=1e-6)


class TestDigits(QuickConfig):
    name = "digits"

    def test_a_finished_workdir_is_not_trained_again(self, quick_run, monkeypatch):
        config, workdir, summaries = quick_run("digits")
        monkeypatch.setattr(train, "Checkpoints", None)  # would fail if training started
        assert train.train_and_evaluate(config, workdir, quiet=True) == summaries

    def test_a_workdir_with_another_config_is_refused(self, quick_run):
        config, workdir, _ = quick_run("digits")
        with pytest.raises(ValueError) as error:
            train.train_and_evaluate(config.replace(model={"hidden": 16}), workdir, quiet=True)
        assert "model.hidden: 32 -> 16" in str(error.value)


class TestCopy(QuickConfig):
    name = "copy"


class TestChorales(QuickConfig):
    name = "chorales"


class TestShakespeare(QuickConfig):
    name = "shakespeare"


# --------------------------------------------------------------------------------------------------
# The runner's parts, without any group machinery (as Flax's examples test theirs).
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["vanilla", "FGR", "gru", "mingru"])
def test_one_train_step_changes_every_parameter(variant):
    config = load("digits", f"model.variant={variant}", "model.hidden=8", "run.batch_size=4")
    program = train.build_program(config)
    values = {k: jnp.float32(v) for k, v in config_lib.run_values(config).items()}
    example = jnp.asarray(program.task.eval_set("validation")["inputs"][:1])
    state = jax.jit(lambda seed: train.init_state(program, seed, values, example))(0)
    step = jax.jit(functools.partial(train.train_step, program))
    new, metrics = step(state, jnp.int32(0), program.task.train_data())
    assert np.isfinite(metrics["loss"]) and not new.diverged
    flat = jax.tree_util.tree_flatten_with_path(state.params)[0]
    for (path, before), after in zip(flat, jax.tree_util.tree_leaves(new.params), strict=True):
        # Every parameter moves (a kernel's rows for inputs that are 0 in the batch do not).
        assert np.any(np.asarray(before) != np.asarray(after)), jax.tree_util.keystr(path)
    # The step is a function of the step number: the next one draws another batch.
    again, _ = step(state, jnp.int32(0), program.task.train_data())
    other, _ = step(state, jnp.int32(1), program.task.train_data())
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, new.params, again.params))
    assert not np.array_equal(new.params["head"]["kernel"], other.params["head"]["kernel"])


# --------------------------------------------------------------------------------------------------
# Groups: seeds trained together equal seeds trained one at a time.
# --------------------------------------------------------------------------------------------------


def _losses(run_dir: Path) -> np.ndarray:
    return np.array([r["train/loss"] for r in records.read_metrics(run_dir / "metrics.jsonl")])


def test_seeds_together_equal_seeds_one_at_a_time(tmp_path):
    settings = ["wandb.mode=disabled", "run.steps=20", "run.log_every=1", "run.eval_every=20"]
    settings += ["run.checkpoint_every=20"]
    together = load("digits", "run.seeds=0,1", *settings)
    train.train_and_evaluate(together, tmp_path / "together", quiet=True)
    for seed in (0, 1):
        alone = load("digits", f"run.seeds={seed}", *settings)
        train.train_and_evaluate(alone, tmp_path / f"alone{seed}", quiet=True)
        a = _losses(tmp_path / "together" / f"seed_{seed}")
        b = _losses(tmp_path / f"alone{seed}" / f"seed_{seed}")
        assert len(a) == 20
        np.testing.assert_allclose(a, b, rtol=1e-4)
    assert not np.allclose(
        _losses(tmp_path / "together" / "seed_0"), _losses(tmp_path / "together" / "seed_1")
    )


def test_fresh_states_one_run_at_a_time_are_the_batched_ones_bit_for_bit():
    """The runs' fresh states come from lax.map over the seeds (vmap's batched QR of the
    orthogonal initialiser deadlocked XLA's CPU pool); they are exactly vmap's."""
    from gatelab import runtime

    config = load("adding", "model.variant=vanilla", "run.seeds=0,1,2")
    program = train.build_program(config)
    runs = [config.replace(run={"seeds": (s,)}) for s in config.run.seeds]
    values = {
        n: jnp.array([config_lib.run_values(r)[n] for r in runs], jnp.float32)
        for n in config_lib.PER_RUN_VALUES
    }
    init = functools.partial(train.init_state, program, example=train._Inputs.of(program).example)
    seeds = jnp.array(config.run.seeds)
    batched = runtime.compile_cheap(jax.vmap(init), seeds, values)(seeds, values)
    one_by_one = runtime.compile_cheap(train._fresh_states(init), seeds, values)(seeds, values)
    leaves = jax.tree_util.tree_leaves
    for a, b in zip(leaves(batched), leaves(one_by_one), strict=True):
        np.testing.assert_array_equal(a, b)
    params = one_by_one.params["layer0"]
    assert not np.array_equal(params["forget"]["kernel_h"][0], params["forget"]["kernel_h"][1])


def test_host_device_flags():
    """One XLA CPU device per core for a process that trains a group: the user's own count is
    left alone, gatelab's own is replaced (a worker pinned to one core gets one device)."""
    from gatelab.runtime import host_device_flags

    flag = "--xla_force_host_platform_device_count"
    assert host_device_flags("", 2, ours=False) == f"{flag}=2"
    assert host_device_flags("--xla_cpu_enable_fast_math=false", 2, ours=False) == (
        f"--xla_cpu_enable_fast_math=false {flag}=2"
    )
    assert host_device_flags(f"{flag}=8", 2, ours=False) is None  # the user's choice
    assert host_device_flags(f"{flag}=2 --x=1", 1, ours=True) == "--x=1"  # a pinned worker
    assert host_device_flags("", 1, ours=False) == ""


@pytest.mark.parametrize(
    "fields, isa",
    [
        ({"model name": "AMD EPYC", "flags": "fpu sse2 avx avx2 fma avx512f avx512bw"}, "avx512"),
        ({"model name": "AMD EPYC", "flags": "fpu sse2 avx avx2 fma"}, "avx2"),
        ({"Features": "fp asimd evtstrm sve"}, "sve"),  # Arm names them Features, has no model
    ],
)
def test_the_record_names_the_widest_vector_instructions(monkeypatch, fields, isa):
    monkeypatch.setattr(records, "cpu_info", lambda: fields)
    records.host_cpu.cache_clear()
    try:
        cpu = records.host_cpu()
    finally:
        records.host_cpu.cache_clear()
    assert cpu.endswith(f", {isa})") and cpu.startswith(fields.get("model name", ""))


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores")
def test_gatelab_train_puts_a_group_on_every_core(tmp_path):
    """`gatelab train` of 2 seeds on a 2-core machine: 2 CPU devices, the run axis sharded,
    recorded in config.json, and the records of one device (losses exact, gates to 1e-6)."""
    command = [sys.executable, "-m", "gatelab.cli", "train", str(ROOT / "configs/adding.py:quick")]
    command += ["--quiet", "--set=run.seeds=0,1", "--set=wandb.mode=disabled"]
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "GATELAB_HOST_DEVICES")}
    for name, extra in (("cores", []), ("one", ["--set=run.devices=1"])):
        done = subprocess.run(
            [*command, "--workdir", str(tmp_path / name), *extra], env=env, capture_output=True
        )
        assert done.returncode == 0, done.stderr.decode()[-3000:]
    devices = {
        name: records.read_json(tmp_path / name / "seed_0" / "config.json")["resolved"]["devices"]
        for name in ("cores", "one")
    }
    assert devices == {"cores": 2, "one": 1}
    for seed in ("seed_0", "seed_1"):
        rows = records.read_metrics(tmp_path / "cores" / seed / "metrics.jsonl")
        expected = records.read_metrics(tmp_path / "one" / seed / "metrics.jsonl")
        assert len(rows) == len(expected)
        for row, reference in zip(rows, expected, strict=True):
            exact = lambda r: {k: v for k, v in r.items() if "time/" not in k and "gates/" not in k}  # noqa: E731
            gates = lambda r: {k: v for k, v in r.items() if "gates/" in k}  # noqa: E731
            assert exact(row) == exact(reference)
            assert gates(row) == pytest.approx(gates(reference), rel=1e-6, abs=1e-9)


def test_group_runs_differ_only_in_values(tmp_path):
    config = load("digits", "wandb.mode=disabled")
    with pytest.raises(ValueError, match="differ only"):
        train.train_group(
            [config, config.replace(model={"hidden": 16})],
            tmp_path,
            [tmp_path / "a", tmp_path / "b"],
            quiet=True,
        )


# --------------------------------------------------------------------------------------------------
# Divergence: one run blows up, the others complete.
# --------------------------------------------------------------------------------------------------


def test_a_diverging_run_is_frozen_and_the_group_goes_on(tmp_path, capsys):
    base = load("adding", "wandb.mode=disabled", "optim.name=sgd", "optim.clip=0", "run.steps=200")
    runs = [base.replace(optim={"lr": lr}) for lr in (1e-2, 1e3)]
    summaries = train.train_group(runs, tmp_path, [tmp_path / "ok", tmp_path / "blows_up"])
    ok, bad = summaries
    assert ok["status"] == "completed" and np.isfinite(ok["test/mse"])
    assert bad["status"] == "diverged" and bad["diverged_step"] >= 0
    assert "blows_up diverged at step" in capsys.readouterr().out
    rows = records.read_metrics(tmp_path / "blows_up" / "metrics.jsonl")
    assert rows[-1]["train/loss"] is None  # non-finite is recorded as null, not as a number
    assert all(
        np.isfinite(r["train/loss"])
        for r in records.read_metrics(tmp_path / "ok" / "metrics.jsonl")
    )


# --------------------------------------------------------------------------------------------------
# Resume: exactly the uninterrupted run.
# --------------------------------------------------------------------------------------------------

RESUME = ["wandb.mode=disabled", "run.steps=200", "run.log_every=25", "run.eval_every=50"]
RESUME += ["run.checkpoint_every=50", "run.seeds=0,1"]


@pytest.fixture(scope="class")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    train.train_and_evaluate(load("digits", *RESUME), workdir, quiet=True)
    return workdir


def assert_same_record(workdir: Path, reference: Path):
    for seed in (0, 1):
        a, b = workdir / f"seed_{seed}", reference / f"seed_{seed}"
        rows = [without_timing(r) for r in records.read_metrics(a / "metrics.jsonl")]
        expected = [without_timing(r) for r in records.read_metrics(b / "metrics.jsonl")]
        assert rows == expected  # bit for bit: the floats are equal, not close
        assert without_timing(records.read_json(a / "summary.json")) == without_timing(
            records.read_json(b / "summary.json")
        )


def _train_process(workdir: Path, delay: float = 0.0) -> subprocess.Popen:
    env = dict(os.environ, GATELAB_TEST_SAVE_DELAY=str(delay))
    command = [sys.executable, "-m", "gatelab.cli", "train", str(ROOT / "configs/digits.py:quick")]
    command += ["--workdir", str(workdir), "--quiet"] + [f"--set={s}" for s in RESUME]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(condition, process, timeout=120.0):
    start = time.monotonic()
    while not condition():
        if process.poll() is not None:
            raise AssertionError(process.stderr.read().decode()[-3000:])
        assert time.monotonic() - start < timeout, "timed out"
        time.sleep(0.02)


class TestResume:
    """A run interrupted anywhere ends exactly as the uninterrupted one (one worker: one class)."""

    def test_after_a_crash(self, tmp_path, monkeypatch, uninterrupted):
        original = records.RunRecord.log

        def crash_at_125(record, row):
            original(record, row)
            if row["step"] == 125:  # logged, but the last checkpoint is at step 100
                raise RuntimeError("simulated crash")

        monkeypatch.setattr(records.RunRecord, "log", crash_at_125)
        with pytest.raises(RuntimeError, match="simulated crash"):
            train.train_and_evaluate(load("digits", *RESUME), tmp_path, quiet=True)
        assert records.read_metrics(tmp_path / "seed_0" / "metrics.jsonl")[-1]["step"] == 125
        monkeypatch.setattr(records.RunRecord, "log", original)
        train.train_and_evaluate(load("digits", *RESUME), tmp_path, quiet=True)
        assert_same_record(tmp_path, uninterrupted)

    def test_after_sigkill_anywhere(self, tmp_path, uninterrupted):
        steps = lambda: list(tmp_path.glob("groups/*/checkpoints/*"))  # noqa: E731
        lines = lambda: len(records.read_metrics(tmp_path / "seed_0" / "metrics.jsonl"))  # noqa: E731
        # 1. Killed while the first checkpoint is being written (saves slowed by the test hook).
        process = _train_process(tmp_path, delay=30.0)
        _wait_for(lambda: bool(steps()), process)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert Checkpoints(steps()[0].parent).latest_step() is None  # half-written: ignored
        # 2. Resumed, then killed at an arbitrary moment after the second checkpoint.
        process = _train_process(tmp_path)
        _wait_for(lambda: lines() >= 5, process)
        process.send_signal(signal.SIGKILL)
        process.wait()
        # 3. Resumed to the end.
        process = _train_process(tmp_path)
        assert process.wait(timeout=300) == 0, process.stderr.read().decode()[-3000:]
        assert_same_record(tmp_path, uninterrupted)


# --------------------------------------------------------------------------------------------------
# Bad input: clear errors, exit code 2, nothing written.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, words",
    [
        ("model.hiden=3", ["model.hiden", "did you mean model.hidden"]),
        ("optim.lr=fast", ["optim.lr", "number"]),
        ("model.variant=cifgg", ["model.variant", "CIFG", "vanilla"]),
        ("optim.name=rmsprop", ["optim.name", "adam, adamw, sgd"]),
        ("model.spec.forget=closed", ["model.spec", "forget", "'open'"]),
        ("task.args.lenght=5", ["task.args", "lenght", "length"]),
        ("run.seeds=0,x", ["run.seeds", "integer"]),
        ("run.steps=130", ["run.steps=130", "multiple of run.log_every=50"]),
    ],
)
def test_bad_overrides_exit_2_and_write_nothing(tmp_path, capsys, override, words):
    workdir = tmp_path / "never"
    code = cli.main(
        [
            "train",
            str(ROOT / "configs/adding.py:quick"),
            "--workdir",
            str(workdir),
            "--set",
            override,
        ]
    )
    assert code == 2
    error = capsys.readouterr().err
    for word in words:
        assert word in error, (word, error)
    assert not workdir.exists()


def test_typo_in_a_flag_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "configs/adding.py", "--wrokdir", "x"])
    assert exit_.value.code == 2


def test_config_round_trips_through_json():
    config = load("mnist1d", "model.spec.peepholes=true", "run.seeds=3,4")
    assert config_lib.from_dict(config_lib.to_dict(config)) == config
    assert config.spec == config.spec.replace(peepholes=True)
    with pytest.raises(ConfigError, match="multiple of"):
        config_lib.validate(config.replace(run={"eval_every": 7}))
