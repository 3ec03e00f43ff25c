"""The study benchmark's ablation-capable PyTorch baseline computes gatelab's cells.

``experiments/bench/torch_grid.py``'s ``GreffLSTM`` and ``LoopedGRU`` are what the benchmark times
against (``python -m experiments.bench --study``); they are written independently of gatelab
(PyTorch, a Python loop over time), so equal outputs with copied weights check both sides, and
that the benchmark compares the same computation.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from processes import PROC, alive, children, cores

import gatelab as gl
from gatelab import families
from gatelab.variants import GREFF

torch = pytest.importorskip("torch")
from experiments.bench import torch_grid  # noqa: E402  (needs torch)

B, T, D, H = 3, 7, 2, 5
LSTM_VARIANTS = [name for name in torch_grid.VARIANTS]


def _gatelab(name: str, x: np.ndarray):
    module = gl.GatedRNN(H, gl.variant(name))
    params = module.init(jax.random.key(0), x)["params"]
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    # Every parameter drawn afresh: zero peepholes or FGR kernels would hide a wrong wiring.
    drawn = [0.5 * jax.random.normal(k, v.shape) for k, v in zip(keys, leaves, strict=True)]
    params = tree.unflatten(drawn)
    _, y = jax.jit(lambda p, x: module.apply({"params": p}, x))(params, x)
    return jax.tree_util.tree_map(np.asarray, params), np.asarray(y)


def _copy(target: torch.nn.Linear, weight: np.ndarray, bias: np.ndarray | None = None) -> None:
    with torch.no_grad():
        target.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight.T)))
        if bias is not None:
            target.bias.copy_(torch.from_numpy(bias))


@pytest.mark.parametrize("name", LSTM_VARIANTS)
def test_greff_lstm_equals_gatelab(name):
    x = np.array(jax.random.normal(jax.random.key(2), (B, T, D)), np.float32)  # writable
    params, y = _gatelab(name, x)
    cell = torch_grid.GreffLSTM(D, H, name)
    assert sum(p.numel() for p in cell.parameters()) == families.param_count(gl.variant(name), D, H)
    blocks = [*cell.learned, "candidate"]
    cat = lambda key: np.concatenate([params[b][key] for b in blocks], axis=-1)  # noqa: E731
    _copy(cell.x, cat("kernel_x"), cat("bias"))
    _copy(cell.h, cat("kernel_h"))
    with torch.no_grad():
        if cell.spec["peepholes"]:
            peepholes = np.stack([params[g]["peephole"] for g in cell.learned])
            cell.peep.copy_(torch.from_numpy(peepholes))
    if cell.recur is not None:
        _copy(cell.recur, params["gate_recurrence"]["kernel"])
    with torch.no_grad():
        h = cell(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(h, y[:, -1], atol=2e-5)


def test_looped_gru_equals_nn_gru():
    torch.manual_seed(0)
    ref = torch.nn.GRU(D, H, batch_first=True)
    cell = torch_grid.LoopedGRU(D, H)
    with torch.no_grad():
        cell.x.weight.copy_(ref.weight_ih_l0)
        cell.x.bias.copy_(ref.bias_ih_l0)
        cell.h.weight.copy_(ref.weight_hh_l0)
        cell.h.bias.copy_(ref.bias_hh_l0)
        x = torch.randn(B, T, D)
        # PyTorch's z is the fraction kept; LoopedGRU's u the fraction written: u = 1 - z, the
        # same formula with the update block read as PyTorch reads it.
        y_ref = ref(x)[0][:, -1]
        xr, xz, xn = cell.x(x).split(H, dim=-1)
        h = torch.zeros(B, H)
        for t in range(T):
            hr, hz, hn = cell.h(h).split(H, dim=1)
            r, z = torch.sigmoid(xr[:, t] + hr), torch.sigmoid(xz[:, t] + hz)
            h = (1 - z) * torch.tanh(xn[:, t] + r * hn) + z * h
        np.testing.assert_allclose(h.numpy(), y_ref.numpy(), atol=1e-5)
        # LoopedGRU itself: the same with u = sigma(s_z) as the fraction written.
        with torch.no_grad():
            cell.x.weight[H : 2 * H] *= -1
            cell.x.bias[H : 2 * H] *= -1
            cell.h.weight[H : 2 * H] *= -1
            cell.h.bias[H : 2 * H] *= -1
        np.testing.assert_allclose(cell(x).numpy(), y_ref.numpy(), atol=1e-5)


def _write_arrays(path: Path) -> None:
    """A small classification task in the .npz form the benchmark writes."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 64), ("validation", 32), ("test", 32)):
        arrays[f"{split}_inputs"] = rng.normal(size=(n, 6, 1)).astype(np.float32)
        arrays[f"{split}_targets"] = rng.integers(0, 3, n)
    np.savez(path, **arrays)


def test_worker_processes_train_every_run_pinned_and_single_threaded(tmp_path):
    _write_arrays(tmp_path / "data.npz")
    out = tmp_path / "out.json"
    runs = "FGR/0,CIFG/1,gru/0,NOAF/2"
    args = ["--data", str(tmp_path / "data.npz"), "--runs", runs, "--hidden", "4"]
    args += ["--steps", "6", "--batch", "8", "--lr", "0.01", "--clip", "1", "--eval-every", "3"]
    args += ["--cells", "greff", "--workers", "2", "--json", str(out)]
    assert torch_grid.main(args) == 0
    results = json.loads(out.read_text())["runs"]
    assert sorted(r["run"] for r in results) == sorted(runs.split(","))
    assert all(0.0 <= r["test/accuracy"] <= 1.0 and np.isfinite(r["final_loss"]) for r in results)
    assert len({r["pid"] for r in results}) <= 2 and os.getpid() not in {r["pid"] for r in results}


@pytest.mark.skipif(not PROC or len(cores(os.getpid())) < 2, reason="/proc, 2 cores to pin to")
def test_workers_end_with_a_benchmark_killed_outright(tmp_path):
    """A PyTorch leg killed outright (SIGKILL) leaves no worker training on beside the rerun."""
    _write_arrays(tmp_path / "data.npz")
    args = ["--data", str(tmp_path / "data.npz"), "--runs", "gru/0,gru/1", "--hidden", "4"]
    args += ["--steps", "1000000", "--batch", "8", "--lr", "0.01", "--clip", "1"]  # hours
    args += ["--workers", "2", "--json", str(tmp_path / "out.json")]
    command = [sys.executable, "-m", "experiments.bench.torch_grid", *args]
    parent = subprocess.Popen(command, cwd=Path(__file__).parents[1])
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2:  # both workers set up: each pinned to its core, so training
            assert parent.poll() is None and time.monotonic() < deadline, "no workers"
            time.sleep(0.2)
            workers = {pid for pid in children(parent.pid) if len(cores(pid)) == 1}
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 15
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(alive(pid) for pid in workers), "a worker outlived its benchmark"
    finally:
        for pid in [parent.pid, *workers]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        parent.wait()


def test_study_forms():
    from experiments.bench import grid_config

    for form, runs, steps in (("study", 55, 4000), ("study-small", 8, 1000)):
        config = grid_config.get_config(form)
        assert (config.run.steps, config.run.batch_size, config.model.hidden) == (steps, 64, 64)
        assert config.wandb.mode == "disabled"
        trials = grid_config.sweep(form).runs
        assert sum(len(t["run.seeds"]) for t in trials) == runs
    variants = grid_config.STUDY["study"]["variants"]
    assert sorted(variants) == sorted([*GREFF, "lstm", "gru"])


def test_the_study_report_follows_from_its_record():
    """The committed small-form record renders to its committed report, and the verdicts are
    the figures' (a contender whose wall time is under the target's multiple misses it)."""
    from experiments.bench import study

    results = Path(study.__file__).parent / "results"
    record = json.loads((results / "study-small.json").read_text())
    assert study.summarise(record) == record["summary"]
    assert study.render(record) == (results / "study-small.md").read_text()
    sweep_s = record["contenders"]["sweep"]["wall_s"]
    for name, speed in record["summary"]["speedups"].items():
        ratio = record["contenders"][name]["wall_s"] / sweep_s
        assert speed["ratio"] == pytest.approx(ratio)
        assert speed["met"] == (ratio >= study.TARGETS[name])
