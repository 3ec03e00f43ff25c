"""The accelerator form of the benchmark (``--device``) runs end to end here, on the CPU."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # about 25 s: the benchmark's own smoke form, not the library's behaviour
def test_device_smoke_has_every_contender_for_every_group_size(tmp_path):
    # A subprocess, as a user runs it (~30 s on 2 cores: three children that each import JAX).
    done = subprocess.run(
        [sys.executable, "-m", "experiments.bench", "--device-smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    markdown = (tmp_path / "device-smoke.md").read_text()
    results = json.loads((tmp_path / "device-smoke.json").read_text())
    assert markdown in done.stdout
    assert not results["errors"]

    # No GPU here: the header says so before anything else.
    assert results["on_cpu"] and results["device"]["jax"]["backend"] == "cpu"
    assert "Ran on the CPU" in markdown.split("\n## ")[0]
    assert "NOT the GPU measurement" in markdown

    groups, contenders = results["plan"]["groups"], results["contenders"]
    assert groups == [1, 2]
    assert set(contenders) == {"lstm", "gru", "jax-rnn-lstm", "torch-lstm", "torch-gru"}
    rows = {(row["runs"], row["name"]): row for row in results["rows"]}
    assert set(rows) == {(r, name) for r in groups for name in contenders}
    for (runs, name), row in rows.items():
        rate = row["run_steps_per_s"]
        if rate is None:
            assert row["status"] == "unavailable" and row["reason"].strip(), (runs, name)
        else:
            assert rate["median"] > 0 and rate["p10"] <= rate["median"] <= rate["p90"]

    # gatelab's groups are measured as one vmapped program at every size, compile time apart.
    for runs in groups:
        for name in ("lstm", "gru"):
            row = rows[(runs, name)]
            assert row["status"] == "measured" and row["compile_s"] > 0, (runs, name)
    # The one-after-another baselines: one run measured, R runs that time R times, said so.
    one, two = rows[(1, "jax-rnn-lstm")], rows[(2, "jax-rnn-lstm")]
    assert one["status"] == "measured" and one["implementation"]
    assert two["status"] == "2 x one run" and two["run_steps_per_s"] == one["run_steps_per_s"]
    if "cudnn_error" in one:  # no cuDNN lowering on the CPU: the reference, named
        assert "lstm_ref" in one["implementation"] and "NOT cuDNN" in markdown
    # torch: CUDA or an explicit reason, never a CPU figure passed off as the GPU's.
    torch_info = results["device"]["torch"]
    for runs in groups:
        for name in ("torch-lstm", "torch-gru"):
            row = rows[(runs, name)]
            if not torch_info.get("device_name"):
                assert row["status"] == "unavailable" and "cuda" in row["reason"], row
