"""The PyTorch contenders of the grid and the study: runs trained with PyTorch, in this process
or in worker processes.

    python -m experiments.bench.torch_grid --data ARRAYS.npz --runs lstm/0,NFG/0 --json OUT.json
    python -m experiments.bench.torch_grid ... --cells greff --compile --workers 2

Each run trains a recurrent classifier (a linear head on the last hidden state) on the MNIST-1D
arrays that gatelab trains on (written by the benchmark to ``ARRAYS.npz``), with what the
gatelab config does: batches drawn with replacement, softmax cross-entropy, Adam with a cosine
schedule, gradient clipping at global norm 1, a validation evaluation every ``--eval-every``
steps (none by default) and at the end, then one test evaluation. Two kinds of cell:

``--cells fused`` (the default)
    ``nn.LSTM`` for every run, whatever variant it stands for, and ``nn.GRU`` for ``gru`` runs:
    PyTorch at its fastest (oneDNN's fused kernels), which cannot remove a gate, so its time is
    a lower bound on what a study costs in PyTorch.
``--cells greff``
    The variant's own cell, as a researcher who wants to remove a gate writes it: a module with
    one input and one recurrent ``nn.Linear`` over the learned gates' blocks, looped over time
    in Python (Greff et al.'s vanilla with every part switchable, ``VARIANTS`` below, and a GRU).
    With ``--compile`` the model is ``torch.compile``d (Inductor), as that researcher would do
    to make the loop fast; each worker compiles each variant once, on its first run (the 40
    steps of MNIST-1D unrolled into one graph: about a minute). Measured here (one thread, hidden
    64, batch 64, lstm): 37 steps/s compiled so, 18 eager, 14 with only ``step`` compiled (the
    loop in Python calling a compiled step, 19 s to compile), against 65 for ``nn.LSTM``.
    Evaluation runs uncompiled (another shape would compile the model again).

``--workers 0`` (the default) runs the runs one after another in this process with threads =
the usable cores; ``--workers N`` runs them in N worker processes (``multiprocessing``, spawn),
each pinned to one core with one thread, the runs handed out in the order given, the next to
whichever worker is free.

Imports NumPy, PyTorch and ``gatelab.runtime`` (for the gatelab contenders' allocator, which
loads no JAX), so its peak memory is PyTorch's own.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
import time

import numpy as np
import torch

from gatelab import runtime  # the process set-up only: it loads no JAX

# Greff et al.'s (2017) variants and the modern LSTM, as switches of their vanilla cell (peepholes
# on; input and forget gates peep at c_{t-1}, the output gate at c_t; FGR's a_0 = 0).
_VANILLA = {"input": "learned", "forget": "learned", "output": "learned", "peepholes": True}
_VANILLA |= {"candidate": torch.tanh, "cell": torch.tanh, "gate_recurrence": False}
VARIANTS = {
    "vanilla": _VANILLA,
    "lstm": _VANILLA | {"peepholes": False},
    "NP": _VANILLA | {"peepholes": False},
    "NIG": _VANILLA | {"input": "open"},
    "NFG": _VANILLA | {"forget": "open"},
    "NOG": _VANILLA | {"output": "open"},
    "NIAF": _VANILLA | {"candidate": torch.nn.Identity()},
    "NOAF": _VANILLA | {"cell": torch.nn.Identity()},
    "CIFG": _VANILLA | {"forget": "1-input"},
    "FGR": _VANILLA | {"gate_recurrence": True},
}


class GreffLSTM(torch.nn.Module):
    """Greff's vanilla LSTM with every part switchable; a removed gate has no weights and costs
    nothing. The gates' and the candidate's blocks are one matmul for ``x`` (ahead of the loop)
    and one for ``h`` per step; forget bias 1 (as gatelab's)."""

    def __init__(self, features: int, hidden: int, variant: str):
        super().__init__()
        spec = VARIANTS[variant]
        self.hidden, self.spec = hidden, spec
        self.learned = [g for g in ("input", "forget", "output") if spec[g] == "learned"]
        blocks = len(self.learned) + 1  # the candidate last
        self.x = torch.nn.Linear(features, blocks * hidden)
        self.h = torch.nn.Linear(hidden, blocks * hidden, bias=False)
        if "forget" in self.learned:
            with torch.no_grad():
                k = self.learned.index("forget")
                self.x.bias[k * hidden : (k + 1) * hidden] += 1.0
        gates = len(self.learned) * hidden
        if spec["peepholes"]:
            self.peep = torch.nn.Parameter(torch.zeros(len(self.learned), hidden))
        self.recur = torch.nn.Linear(gates, gates, bias=False) if spec["gate_recurrence"] else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps, _ = x.shape
        h = c = x.new_zeros(batch, self.hidden)
        a = x.new_zeros(batch, len(self.learned) * self.hidden)
        xs = self.x(x)
        for t in range(steps):
            h, c, a = self.step(xs[:, t], h, c, a)
        return h

    def step(self, xs: torch.Tensor, h: torch.Tensor, c: torch.Tensor, a: torch.Tensor):
        """One time step from the input's projection ``xs``: the new ``h``, ``c`` and ``a``."""
        spec, hidden, learned = self.spec, self.hidden, self.learned
        s = xs + self.h(h)
        if self.recur is not None:
            s = s + torch.nn.functional.pad(self.recur(a), (0, hidden))
        parts = s.split(hidden, dim=1)
        gate = {}

        def pre(g: str, cell: torch.Tensor) -> torch.Tensor:
            k = learned.index(g)
            return parts[k] + self.peep[k] * cell if spec["peepholes"] else parts[k]

        for g in ("input", "forget"):
            if g in learned:
                gate[g] = torch.sigmoid(pre(g, c))
        if spec["forget"] == "1-input":
            gate["forget"] = 1 - gate["input"]
        z = spec["candidate"](parts[-1])
        kept = gate["forget"] * c if "forget" in gate else c
        c = kept + (gate["input"] * z if "input" in gate else z)
        if "output" in learned:
            gate["output"] = torch.sigmoid(pre("output", c))
        h = spec["cell"](c)
        if "output" in gate:
            h = gate["output"] * h
        if self.recur is not None:
            a = torch.cat([gate[g] for g in learned], dim=1)
        return h, c, a


class LoopedGRU(torch.nn.Module):
    """The GRU (reset after the recurrent matmul, as ``nn.GRU``; ``update`` the fraction
    written), looped over time like ``GreffLSTM``."""

    def __init__(self, features: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.x = torch.nn.Linear(features, 3 * hidden)
        self.h = torch.nn.Linear(hidden, 3 * hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.shape[0], self.hidden)
        xs = self.x(x)
        for t in range(x.shape[1]):
            h = self.step(xs[:, t], h)
        return h

    def step(self, xs: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        xr, xu, xn = xs.split(self.hidden, dim=1)
        hr, hu, hn = self.h(h).split(self.hidden, dim=1)
        r, u = torch.sigmoid(xr + hr), torch.sigmoid(xu + hu)
        return u * torch.tanh(xn + r * hn) + (1 - u) * h


class Fused(torch.nn.Module):
    """``nn.LSTM`` or ``nn.GRU``, returning the last step's hidden state."""

    def __init__(self, features: int, hidden: int, gru: bool):
        super().__init__()
        kind = torch.nn.GRU if gru else torch.nn.LSTM
        self.rnn = kind(features, hidden, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0][:, -1]


class Classifier(torch.nn.Module):
    """A recurrent layer reading the sequence, a linear head on its last hidden state."""

    def __init__(self, features: int, hidden: int, classes: int, variant: str, cells: str):
        super().__init__()
        if cells == "fused":
            self.rnn = Fused(features, hidden, variant == "gru")
        elif variant == "gru":
            self.rnn = LoopedGRU(features, hidden)
        else:
            self.rnn = GreffLSTM(features, hidden, variant)
        self.head = torch.nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x))


def accuracy(model, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    with torch.no_grad():
        correct = sum(
            int((model(inputs[i : i + 1000]).argmax(-1) == targets[i : i + 1000]).sum())
            for i in range(0, len(targets), 1000)
        )
    return correct / len(targets)


def train_one(arrays: dict[str, torch.Tensor], label: str, args: argparse.Namespace) -> dict:
    """One run (``VARIANT/SEED``): its wall time, the time of its first 5 steps (compilation
    included, with ``--compile``), its training time and test accuracy."""
    start = time.perf_counter()
    variant, seed = label.split("/")
    torch.manual_seed(int(seed))
    generator = torch.Generator().manual_seed(int(seed))
    inputs, targets = arrays["train_inputs"], arrays["train_targets"]
    model = Classifier(inputs.shape[-1], args.hidden, int(targets.max()) + 1, variant, args.cells)
    step_model = torch.compile(model) if args.compile else model
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    cosine = lambda step: 0.5 * (1 + math.cos(math.pi * min(step, args.steps) / args.steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)
    # Evaluation runs the model uncompiled: a batch of 1,000 would make torch.compile compile
    # the model again for the new shape (about a minute here), for a few seconds of evaluation.
    validate = lambda: accuracy(model, arrays["validation_inputs"], arrays["validation_targets"])
    train_start = time.perf_counter()
    first_s = eval_s = 0.0
    for step in range(1, args.steps + 1):
        index = torch.randint(0, len(targets), (args.batch,), generator=generator)
        loss = torch.nn.functional.cross_entropy(step_model(inputs[index]), targets[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        optimizer.step()
        schedule.step()
        if step == 5:
            first_s = time.perf_counter() - train_start
        if args.eval_every and step % args.eval_every == 0 and step < args.steps:
            begin = time.perf_counter()
            validate()
            eval_s += time.perf_counter() - begin
    train_s = time.perf_counter() - train_start - eval_s
    validate()
    test = accuracy(model, arrays["test_inputs"], arrays["test_targets"])
    return {
        "run": label,
        "wall_s": time.perf_counter() - start,
        "first_steps_s": first_s,
        "train_s": train_s,
        "final_loss": loss.item(),
        "test/accuracy": test,
        "pid": os.getpid(),
    }


_ARRAYS: dict[str, torch.Tensor] = {}


def _load(path: str) -> dict[str, torch.Tensor]:
    with np.load(path) as data:
        arrays = {k: torch.from_numpy(np.asarray(v)) for k, v in data.items()}
    return {k: v.long() if k.endswith("targets") else v for k, v in arrays.items()}


def _set_up(path: str, threads: int) -> None:
    """This process's allocator (as gatelab's), threads and torch.compile's cache; the arrays."""
    runtime.tune_allocator()
    torch.set_num_threads(threads)
    if hasattr(torch, "_dynamo"):
        torch._dynamo.config.cache_size_limit = 64  # one entry per variant, more than the default 8
    _ARRAYS.update(_load(path))


def _init_worker(path: str, cores: multiprocessing.Queue, parent: int) -> None:
    """A worker: pinned to one core (the next from ``cores``), one thread, the arrays loaded;
    it ends with its parent (a benchmark killed outright leaves no run training on)."""
    runtime.end_with_parent(parent)
    core = cores.get()
    if core is not None:
        os.sched_setaffinity(0, {core})
    _set_up(path, threads=1)


def _work(job: tuple[str, argparse.Namespace]) -> dict:
    label, args = job
    try:
        return train_one(_ARRAYS, label, args)
    except Exception as error:  # noqa: BLE001  (a run that fails is a row that says so)
        return {"run": label, "error": f"{type(error).__name__}: {error}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the .npz the benchmark wrote")
    parser.add_argument("--runs", required=True, help="VARIANT/SEED,...")
    for name, kind in (("hidden", int), ("steps", int), ("batch", int), ("lr", float)):
        parser.add_argument(f"--{name}", type=kind, required=True)
    parser.add_argument("--clip", type=float, required=True, help="global gradient norm")
    parser.add_argument("--eval-every", type=int, default=0, help="validation every N steps")
    parser.add_argument("--cells", choices=["fused", "greff"], default="fused")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--workers", type=int, default=0, help="0: runs in this process")
    parser.add_argument("--json", required=True, help="where the results go")
    args = parser.parse_args(argv)
    labels = args.runs.split(",")
    if unknown := sorted({r.split("/")[0] for r in labels} - {*VARIANTS, "gru"}):
        parser.error(f"unknown variant(s) {unknown}; known: {sorted({*VARIANTS, 'gru'})}")
    results: list[dict] = []

    def keep(result: dict) -> None:
        results.append(result)
        with open(args.json, "w") as f:  # kept if a later run dies
            json.dump({"runs": results, "workers": args.workers}, f, indent=1)

    if not args.workers:
        _set_up(args.data, threads=len(os.sched_getaffinity(0)))
        for label in labels:
            keep(_work((label, args)))
        return 0
    context = multiprocessing.get_context("spawn")
    cores = context.Queue()
    usable = sorted(os.sched_getaffinity(0))
    for k in range(args.workers):
        cores.put(usable[k] if args.workers <= len(usable) else None)
    with context.Pool(args.workers, _init_worker, (args.data, cores, os.getpid())) as pool:
        for result in pool.imap_unordered(_work, [(label, args) for label in labels]):
            keep(result)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
