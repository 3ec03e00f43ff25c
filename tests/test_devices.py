"""A group's run axis sharded over several devices (``run.devices``), on forced CPU devices.

The devices are made in a child process (``--xla_force_host_platform_device_count=4`` must be
set before JAX starts; this process keeps its one device). The child trains one group of three
runs (one of them diverging) on 1, 2 and 4 devices, and one on 4 devices that is interrupted
after its first checkpoint and resumed on 1 and on 2; this test reads the records it wrote.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gatelab import records

ROOT = Path(__file__).parents[1]

CHILD = r"""
import json, os, shutil, sys
from pathlib import Path
import jax
jax.config.update("jax_numpy_rank_promotion", "raise")
if os.environ.get("GATELAB_JAX_CACHE", "x"):  # as conftest: one compilation per program
    cache = os.environ.get("GATELAB_JAX_CACHE") or str(Path.home() / ".cache/gatelab/jax")
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
from gatelab import config as config_lib, records, train
from gatelab.checkpoint import Checkpoints

root = Path(sys.argv[1])
base = config_lib.load(
    "configs/adding.py:quick",
    ["wandb.mode=disabled", "run.steps=100", "run.log_every=25", "run.eval_every=50",
     "run.checkpoint_every=50", "run.seeds=0,1,2"],
)

def runs(devices):
    config = base.replace(run={"devices": devices})
    out = [config.replace(run={"seeds": (s,)}) for s in config.run.seeds]
    out[1] = out[1].replace(optim={"lr": 1e30})  # diverges at once; the others go on
    return out

def group(name, devices, **kwargs):
    where = root / name
    return train.train_group(
        runs(devices), where / "groups" / "g", [where / f"s{s}" for s in (0, 1, 2)],
        quiet=True, **kwargs)

for devices in (1, 2, 4):
    group(f"d{devices}", devices)

class Stop(Exception):
    pass

write = records.RunWriter.write
def stop_after_first_checkpoint(self, summary):
    write(self, summary)
    raise Stop
records.RunWriter.write = stop_after_first_checkpoint
try:
    group("cut", 4)
except Stop:
    pass
records.RunWriter.write = write
for devices in (1, 2):
    shutil.copytree(root / "cut", root / f"cut_then_{devices}")
    group(f"cut_then_{devices}", devices)

saved = Checkpoints(root / "d4" / "groups" / "g" / "checkpoints")
state, note = saved.restore(saved.latest_step())
saved.close()
leaves = jax.tree_util.tree_leaves(state)
json.dump({
    "devices": len(jax.devices()),
    "checkpoint_rows": sorted({leaf.shape[0] for leaf in leaves}),
    "checkpoint_note": note,
    "cut_steps": sorted(
        int(p.name) for p in (root / "cut/groups/g/checkpoints").iterdir() if p.name.isdigit()
    ),
}, open(root / "child.json", "w"))
"""


def _rows(run_dir: Path) -> list[dict]:
    return [
        {k: v for k, v in row.items() if not k.startswith("time/")}
        for row in records.read_metrics(run_dir / "metrics.jsonl")
    ]


def _same(a: dict, b: dict, gate_tolerance: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for key, x in a.items():
        y = b[key]
        if key.startswith("gates/"):
            assert abs(x - y) <= gate_tolerance, (key, x, y)
        elif isinstance(x, float) and math.isnan(x):
            assert math.isnan(y), key
        else:
            assert x == y, (key, x, y)  # losses and evaluations: bit for bit


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    root = tmp_path_factory.mktemp("devices")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(root)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return root, json.loads((root / "child.json").read_text())


class TestDevices:
    def test_a_group_on_2_and_4_devices_equals_one_device(self, sharded):
        root, child = sharded
        assert child["devices"] == 4
        for devices in (2, 4):
            for seed in (0, 1, 2):
                one, many = root / "d1" / f"s{seed}", root / f"d{devices}" / f"s{seed}"
                a, b = _rows(one), _rows(many)
                assert [r["step"] for r in a] == [25, 50, 75, 100] == [r["step"] for r in b]
                for x, y in zip(a, b, strict=True):
                    _same(x, y)
                sa, sb = records.read_summary(one), records.read_summary(many)
                assert sa.status == sb.status
                _same(sa.metrics, sb.metrics)
                resolved = records.read_json(many / "config.json")["resolved"]
                # 3 runs on 4 devices: 3 are used (never more devices than runs).
                assert resolved["devices"] == min(devices, 3)

    def test_a_diverging_run_leaves_the_others_alone(self, sharded):
        root, _ = sharded
        for where in ("d1", "d2", "d4"):
            statuses = [records.read_summary(root / where / f"s{s}").status for s in (0, 1, 2)]
            assert statuses == ["completed", "diverged", "completed"], where
        assert records.read_summary(root / "d4" / "s0").metrics["test/mse"] < 0.2

    def test_padding_runs_leave_no_trace(self, sharded):
        root, child = sharded
        # d2: 3 runs padded to 4 over 2 devices. Nothing of the 4th run anywhere.
        for where in ("d2", "d4"):
            assert sorted(p.name for p in (root / where).iterdir()) == [
                "groups",
                "s0",
                "s1",
                "s2",
            ]
        assert child["checkpoint_rows"] == [3]  # every stacked array holds the 3 real runs
        assert child["checkpoint_note"]["seeds"] == [0, 1, 2]
        assert child["checkpoint_note"]["devices"] == 3

    def test_a_checkpoint_of_4_devices_resumes_on_1_and_2_bit_for_bit(self, sharded):
        root, child = sharded
        assert child["cut_steps"] == [50]  # the interrupted group stopped after its checkpoint
        assert [r["step"] for r in _rows(root / "cut" / "s0")] == [25, 50]
        for devices in (1, 2):
            for seed in (0, 1, 2):
                resumed = root / f"cut_then_{devices}" / f"s{seed}"
                for x, y in zip(_rows(root / "d1" / f"s{seed}"), _rows(resumed), strict=True):
                    _same(x, y)
                assert records.read_summary(resumed).status in records.FINISHED
