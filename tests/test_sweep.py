"""Sweeps: grouping into compiled programs, resume, failures, shards, stages, W&B sweep YAML."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import jax
import numpy as np
import pytest
import yaml

from gatelab import cli, records, study, sweep, wandb_sweep, workers
from gatelab import config as config_lib

ROOT = Path(__file__).parents[1]
QUICK = str(ROOT / "configs/mnist1d.py:quick")
FAST = ["wandb.mode=disabled", "run.steps=100", "run.eval_every=50", "run.checkpoint_every=50"]


@pytest.fixture
def compilations(caplog):
    """Counts the training programs JAX compiles (its own log, cache hits included)."""
    jax.config.update("jax_log_compiles", True)
    caplog.set_level(logging.WARNING, logger="jax._src.interpreters.pxla")
    yield lambda: sum("Compiling jit(train_chunk)" in r.getMessage() for r in caplog.records)
    jax.config.update("jax_log_compiles", False)


def statuses(directory: Path) -> dict[str, str]:
    return {r["name"]: r["status"] for r in records.read_json(directory / "sweep.json")["runs"]}


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny")
    assert sweep.run_sweep(QUICK, directory, FAST, quiet=True) == 0
    return directory


def test_workers_give_the_records_of_one_process(tmp_path, tiny_sweep):
    """Losses, evaluations and summaries equal bit for bit. Gate statistics agree to 1e-6: XLA
    computes the gate activations of a worker pinned to one core with other thread splits,
    which moves their last bits (the training itself is unaffected)."""
    assert sweep.run_sweep(QUICK, tmp_path, FAST, workers=2, quiet=True) == 0

    def split(row):
        exact = {k: v for k, v in row.items() if "time/" not in k and "gates/" not in k}
        return exact, {k: v for k, v in row.items() if "gates/" in k}

    for run in statuses(tiny_sweep):
        rows = records.read_metrics(tmp_path / run / "metrics.jsonl")
        rows.append(records.read_json(tmp_path / run / "summary.json"))
        expected = records.read_metrics(tiny_sweep / run / "metrics.jsonl")
        expected.append(records.read_json(tiny_sweep / run / "summary.json"))
        assert len(rows) == len(expected)
        for row, reference in zip(rows, expected, strict=True):
            (exact, gates), (exact_ref, gates_ref) = split(row), split(reference)
            assert exact == exact_ref, run
            assert gates == pytest.approx(gates_ref, rel=1e-6, abs=1e-9), run


def test_a_tiny_sweep_compiles_one_program_per_variant_and_resumes(tmp_path, compilations):
    # 2 variants x 2 seeds: 2 programs, not 4.
    assert sweep.run_sweep(QUICK, tmp_path, FAST, quiet=True) == 0
    assert compilations() == 2
    names = ["vanilla__s0", "vanilla__s1", "NFG__s0", "NFG__s1"]
    assert statuses(tmp_path) == dict.fromkeys(names, "completed")
    for name in names:
        for file in ("config.json", "metrics.jsonl", "summary.json"):
            assert (tmp_path / name / file).exists(), (name, file)
    groups = {r["group"] for r in records.read_json(tmp_path / "sweep.json")["runs"]}
    assert len(groups) == 2 and all(
        (tmp_path / "groups" / g / "checkpoints").is_dir() for g in groups
    )
    summaries = {n: records.read_json(tmp_path / n / "summary.json") for n in names}

    # Re-running skips everything: no training program is even compiled.
    assert sweep.run_sweep(QUICK, tmp_path, FAST, quiet=True) == 0
    assert compilations() == 2

    # Deleting one run's summary re-runs that run only, and it comes out the same.
    (tmp_path / "NFG__s1" / "summary.json").unlink()
    assert sweep.run_sweep(QUICK, tmp_path, FAST, quiet=True) == 0
    assert compilations() == 3
    again = records.read_json(tmp_path / "NFG__s1" / "summary.json")
    assert again["test/accuracy"] == pytest.approx(summaries["NFG__s1"]["test/accuracy"], abs=0.01)
    for name in names[:3]:
        assert records.read_json(tmp_path / name / "summary.json") == summaries[name]


def test_a_failing_run_is_recorded_with_its_traceback_and_the_sweep_goes_on(tmp_path):
    config = tmp_path / "study.py"
    config.write_text(
        "from gatelab.config import Config, ModelConfig, RunConfig, TaskConfig\n"
        "from gatelab.study import Sweep\n"
        "def get_config(arg=None):\n"
        "    return Config(model=ModelConfig(hidden=8),\n"
        "                  task=TaskConfig('adding', {'length': 10}),\n"
        "                  run=RunConfig(steps=40, log_every=20, eval_every=20,\n"
        "                                checkpoint_every=20))\n"
        "def sweep(arg=None):\n"
        "    # length 1 passes validation (a known argument of the right type) but the task\n"
        "    # raises when it is built: a run that fails at run time.\n"
        "    return Sweep(({'task.args.length': 10}, {'task.args.length': 1},\n"
        "                  {'model.variant': 'nope'}))\n"
    )
    code = sweep.run_sweep(str(config), tmp_path / "out", ["wandb.mode=disabled"], quiet=True)
    assert code == 1
    state = statuses(tmp_path / "out")
    assert state == {"length=10__s0": "completed", "length=1__s0": "failed", "nope__s0": "failed"}
    failed = records.read_json(tmp_path / "out" / "length=1__s0" / "summary.json")
    assert "Traceback" in failed["traceback"] and "length" in failed["error"]
    invalid = records.read_json(tmp_path / "out" / "nope__s0" / "summary.json")
    assert "unknown variant" in invalid["error"]


def test_shards_partition_the_runs_exactly():
    base = config_lib.load(QUICK)
    plan = study.grid({"model.variant": ["vanilla", "NFG", "CIFG"], "run.seeds": [(0, 1, 2)]})
    everything = [run.name for run in sweep.expand(base, plan)]
    parts = [[r.name for r in sweep.shard_runs(sweep.expand(base, plan), (i, 2))] for i in range(2)]
    assert sorted(parts[0] + parts[1]) == sorted(everything)
    assert not set(parts[0]) & set(parts[1])
    # Whole groups are dealt out (a group is never split over shards), costliest first to the
    # least loaded share: vanilla (peepholes) is the costliest group, NFG and CIFG go together.
    assert sorted(parts, key=len) == [
        [f"vanilla__s{s}" for s in range(3)],
        [f"{v}__s{s}" for v in ("NFG", "CIFG") for s in range(3)],
    ]
    # 3 shares of 3 groups: one group each.
    thirds = [
        [r.name for r in sweep.shard_runs(sweep.expand(base, plan), (i, 3))] for i in range(3)
    ]
    assert sorted(len(t) for t in thirds) == [3, 3, 3]
    assert sweep.parse_shard("1/2") == (1, 2)
    for bad in ("2/2", "x", "1/0"):
        with pytest.raises(config_lib.ConfigError):
            sweep.parse_shard(bad)


def test_groups_hold_runs_that_differ_only_in_values():
    base = config_lib.load(QUICK)
    plan = study.grid(
        {"model.variant": ["vanilla", "NFG"], "optim.lr": [1e-3, 1e-2], "run.seeds": [(0, 1)]}
    )
    groups = sweep.plan_groups(sweep.expand(base, plan), max_group=64)
    assert [len(g) for g in groups] == [4, 4]  # learning rates and seeds share a program
    assert [len(g) for g in sweep.plan_groups(sweep.expand(base, plan), max_group=3)] == [
        3,
        1,
        3,
        1,
    ]
    assert len({g[0].group for g in groups}) == 2


def test_workers_take_the_costliest_groups_first():
    base = config_lib.load(QUICK)
    plan = study.grid({"model.variant": ["NFG", "FGR", "vanilla"], "run.seeds": [(0, 1)]})
    plan = plan + study.grid({"model.variant": ["NFG"], "run.seeds": [(2, 3, 4, 5)]})
    groups = sweep.plan_groups(sweep.expand(base, plan), max_group=3)
    names = [(g[0].config.model.variant, len(g)) for g in groups]
    assert names == [("NFG", 3), ("NFG", 3), ("FGR", 2), ("vanilla", 2)]
    ordered = [names[k] for k in workers.schedule([[r.config for r in g] for g in groups])]
    # FGR's gate recurrence makes it the costliest; a full group of NFG outweighs 2 vanilla runs.
    assert ordered == [("FGR", 2), ("NFG", 3), ("NFG", 3), ("vanilla", 2)]


def test_random_search_is_seeded_and_bucketed():
    space = {
        "optim.lr": study.log_uniform(1e-6, 1e-2),
        "model.hidden": study.log_buckets(20, 200, 4),
        "model.input_noise": study.uniform(0.0, 1.0),
    }
    a, b = study.random(50, 0, space), study.random(50, 0, space)
    assert a == b and a != study.random(50, 1, space)
    lrs = np.array([run["optim.lr"] for run in a.runs])
    assert lrs.min() >= 1e-6 and lrs.max() <= 1e-2
    assert len({run["model.hidden"] for run in a.runs}) <= 4  # few programs, not 50
    assert [run["run.seeds"] for run in a.runs[:3]] == [(0,), (1,), (2,)]
    assert a.kind == "random"


def test_best_learning_rates_pick_the_best_validation_mean(tmp_path):
    runs = []
    for variant, lr, seed, value in [
        ("vanilla", 1e-3, 0, 0.80), ("vanilla", 1e-3, 1, 0.82),
        ("vanilla", 1e-2, 0, 0.90), ("vanilla", 1e-2, 1, 0.70),  # mean 0.80 < 0.81
        ("NFG", 1e-3, 0, 0.60), ("NFG", 1e-2, 0, 0.65),
    ]:  # fmt: skip
        name = f"{variant}__lr={lr}__s{seed}"
        runs.append({"name": name, "overrides": {"model.variant": variant, "optim.lr": lr}})
        (tmp_path / name).mkdir()
        summary = records.Summary(
            "completed", variant=variant, direction="max", primary_metric="accuracy",
            metrics={"eval/accuracy": value}, hparams={"lr": lr},
        )  # fmt: skip
        records.write_json_atomic(tmp_path / name / "summary.json", summary.to_json())
    records.write_index(tmp_path, {"runs": runs})
    chosen = records.best_learning_rates(tmp_path)
    assert {t.setting["model.variant"]: t.lr for t in chosen} == {"vanilla": 1e-3, "NFG": 1e-2}
    vanilla = chosen[0]
    assert vanilla.variant == "vanilla" and vanilla.tried == (1e-3, 1e-2)
    assert vanilla.means[1e-3] == pytest.approx((0.81, 2)) and vanilla.means[1e-2][1] == 2


def test_wandb_sweep_yaml(tmp_path, capsys):
    assert cli.main(["sweep", QUICK, "--workdir", str(tmp_path), "--wandb-sweep"]) == 0
    spec = yaml.safe_load((tmp_path / "wandb_sweep.yaml").read_text())
    assert spec["method"] == "grid"
    assert spec["metric"] == {"name": "eval/accuracy", "goal": "maximize"}
    assert spec["parameters"]["model.variant"] == {"values": ["vanilla", "NFG"]}
    assert spec["parameters"]["run.seeds"] == {"values": [0, 1]}
    assert spec["command"][:4] == ["${env}", "gatelab", "train", QUICK]
    assert spec["command"][-1] == "${args_no_hyphens}"
    # What an agent would run parses: positional KEY=VALUE overrides, one seed.
    config = config_lib.load(QUICK, ["model.variant=NFG", "run.seeds=1", "wandb.mode=online"])
    assert config.run.seeds == (1,) and config.model.variant == "NFG"
    assert "wandb agent" in capsys.readouterr().out


def test_greff_search_stays_a_random_search_over_every_variant_for_wandb():
    target = str(ROOT / "experiments/greff_odyssey.py:quick")
    spec = wandb_sweep.wandb_sweep_config(target)
    assert spec["method"] == "random" and spec["run_cap"] == 9 * 2
    variants = ["vanilla", "NIG", "NFG", "NOG", "NIAF", "NOAF", "NP", "CIFG", "FGR"]
    assert spec["parameters"]["model.variant"] == {"values": variants}
    assert spec["parameters"]["optim.lr"] == {
        "distribution": "log_uniform_values",
        "min": 1e-6,
        "max": 1e-2,
    }
    # A random search plus a grid is no random search.
    mixed = study.random(2, 0, {"optim.lr": study.log_uniform(1e-3, 1e-2)}) + study.grid(
        {"optim.lr": [1e-3]}
    )
    assert mixed.kind == "list" and len(mixed) == 3


def test_sweep_cli_errors_exit_2(tmp_path, capsys):
    assert cli.main(["sweep", QUICK, "--workdir", str(tmp_path / "x"), "--set", "run.stpes=3"]) == 2
    assert "did you mean run.steps" in capsys.readouterr().err
    assert cli.main(["sweep", QUICK, "--shard", "3/2"]) == 2
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_tune_then_test_stage(tmp_path):
    overrides = FAST + ["run.seeds=0"]
    config = tmp_path / "study.py"
    config.write_text(
        f"exec(open({str(ROOT / 'configs/mnist1d.py')!r}).read())\n"
        "def sweep(arg=None):\n"
        "    return grid({'model.variant': ['vanilla', 'NFG'], 'optim.lr': [1e-4, 1e-2]})\n"
    )
    target = f"{config}:quick"
    assert sweep.run_sweep(target, tmp_path / "s", overrides, stage="tune", quiet=True) == 0
    assert len(statuses(tmp_path / "s" / "tune")) == 4
    code = sweep.run_sweep(
        target, tmp_path / "s", overrides, stage="test", test_seeds=2, quiet=True
    )
    assert code == 0
    test = records.read_json(tmp_path / "s" / "test" / "sweep.json")["runs"]
    assert {r["seed"] for r in test} == {1, 2}  # fresh seeds
    assert {r["overrides"]["optim.lr"] for r in test} == {1e-2}  # 1e-4 learns nothing in 100 steps
    assert json.loads((tmp_path / "s" / "test" / "sweep.json").read_text())["stage"] == "test"


def test_a_study_with_the_same_run_twice_is_refused():
    base = config_lib.load(QUICK)
    with pytest.raises(ValueError, match="duplicate runs: NFG__s0"):
        sweep.expand(base, study.grid({"model.variant": ["NFG", "NFG"], "run.seeds": [(0,)]}))
