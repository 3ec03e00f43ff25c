"""Looking inside trained runs: gate heatmaps against the NumPy reference, compare, sampling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from reference import greff_lstm

import gatelab
from gatelab import cli, inspect, restore, sweep, train
from gatelab import config as config_lib

ROOT = Path(__file__).parents[1]
FAST = ["wandb.mode=disabled", "run.steps=100", "run.log_every=50", "run.eval_every=50"]
FAST += ["run.checkpoint_every=50", "run.seeds=0"]


class TestInspect:
    """One tiny sweep (lstm and NFG on digits), inspected one run at a time and side by side."""

    @pytest.fixture(scope="class")
    def study(self, tmp_path_factory):
        root = tmp_path_factory.mktemp("inspect")
        config = root / "study.py"
        config.write_text(
            f"exec(open({str(ROOT / 'configs/digits.py')!r}).read())\n"
            "from gatelab.study import grid\n"
            "def sweep(arg=None):\n"
            "    return grid({'model.variant': ['vanilla', 'NFG']})\n"
        )
        assert sweep.run_sweep(f"{config}:quick", root / "sweep", FAST, quiet=True) == 0
        return root / "sweep"

    @pytest.mark.parametrize("variant", ["vanilla", "NFG"])
    def test_gates_equal_the_numpy_reference(self, study, variant):
        out = inspect.inspect_run(study / f"{variant}__s0", examples=3)
        for name in ("example0", "example2", "histograms", "gradient_flow"):
            for suffix in (".png", ".pdf"):
                assert (out / f"{name}{suffix}").stat().st_size > 1000, name
        assert "memory" in (out / "gates.md").read_text()
        captured = np.load(out / "gates.npz")
        run = restore.restore_run(study / f"{variant}__s0")
        x = run.task.eval_set("test")["inputs"][:3]
        trace: dict = {}
        greff_lstm(x, run.best_params["layer0"], variant, trace)
        for gate in ("input", "forget", "output", "cell"):
            np.testing.assert_allclose(
                captured[f"layer0/{gate}"], np.stack(trace[gate], axis=1), atol=1e-5
            )
        summary = json.loads((out / "gates.json").read_text())
        if variant == "NFG":  # removed: the constant 1, and said so
            assert summary["removed"] == ["forget"]
            np.testing.assert_array_equal(captured["layer0/forget"], 1.0)
            assert "forget | removed: constant 1" in (out / "gates.md").read_text()
        flow = np.array(summary["gradient_flow"]["layer0"])
        assert flow.shape == (8,) and np.all(np.isfinite(flow)) and flow[-1] > 0

    def test_compare_puts_every_variant_side_by_side(self, study, capsys):
        assert cli.main(["inspect", str(study), "--compare", "--gate", "forget"]) == 0
        out = study / "inspect"
        for name in ("compare_forget", "gradient_flow"):
            assert (out / f"{name}.png").exists() and (out / f"{name}.pdf").exists()
        table = (out / "compare_forget.md").read_text()
        assert "| NFG | removed: constant 1 |" in table and "| vanilla | learned |" in table
        assert set(json.loads((out / "gradient_flow.json").read_text())) == {"vanilla", "NFG"}

    def test_a_directory_of_runs_needs_compare(self, study, capsys):
        assert cli.main(["inspect", str(study)]) == 2
        assert "--compare" in capsys.readouterr().err


class TestSample:
    @pytest.fixture(scope="class")
    def shakespeare(self, tmp_path_factory):
        workdir = tmp_path_factory.mktemp("shakespeare")
        config = config_lib.load(str(ROOT / "configs/shakespeare.py:quick"), FAST)
        train.train_and_evaluate(config, workdir, quiet=True)
        return workdir

    def test_sampling_is_deterministic_and_uses_the_vocabulary(self, shakespeare):
        a = gatelab.sample(shakespeare, "ROMEO:", length=50, seed=3)
        assert a == gatelab.sample(shakespeare, "ROMEO:", length=50, seed=3)
        assert a != gatelab.sample(shakespeare, "ROMEO:", length=50, seed=4)
        assert a.startswith("ROMEO:") and len(a) == len("ROMEO:") + 50
        vocab = set(restore.restore_run(shakespeare / "seed_0").task.vocab)
        assert set(a) <= vocab
        greedy = gatelab.sample(shakespeare, "ROMEO:", length=20, temperature=0.0, seed=0)
        assert greedy == gatelab.sample(shakespeare, "ROMEO:", length=20, temperature=0.0, seed=9)

    def test_sample_errors_are_clear(self, shakespeare, tmp_path, capsys):
        assert cli.main(["sample", str(shakespeare), "--prompt", "ROMEO:\x07"]) == 2
        assert "unknown" in capsys.readouterr().err
        assert cli.main(["sample", str(tmp_path), "--prompt", "A"]) == 2
        assert "no run" in capsys.readouterr().err

    def test_a_run_of_another_task_cannot_sample(self, tmp_path, capsys):
        config = config_lib.load(str(ROOT / "configs/digits.py:quick"), FAST)
        train.train_and_evaluate(config, tmp_path, quiet=True)
        assert cli.main(["sample", str(tmp_path), "--prompt", "A"]) == 2
        assert "needs a shakespeare run" in capsys.readouterr().err
