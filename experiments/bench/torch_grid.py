"""The grid's PyTorch contender: the grid's runs one after another, in one PyTorch process.

    python -m experiments.bench.torch_grid --data ARRAYS.npz --runs lstm/0,NFG/0 --json OUT.json

Each run trains ``nn.LSTM(1, H, batch_first=True)`` with a linear head on the last step on the
MNIST-1D arrays that gatelab trains on (written by the benchmark to ``ARRAYS.npz``), with what
the grid's gatelab config does: batches drawn with replacement, softmax cross-entropy, Adam with
a cosine schedule, gradient clipping at global norm 1, then one validation and one test
evaluation. PyTorch has no Greff variants: every run, whatever variant it stands for, is an
``nn.LSTM``.

Imports NumPy, PyTorch and ``gatelab.runtime`` (for the gatelab contenders' allocator, which
loads no JAX), so its peak memory is PyTorch's own.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

from gatelab import runtime  # the process set-up only: it loads no JAX


class Classifier(torch.nn.Module):
    """``nn.LSTM`` reading the sequence, a linear head on its last hidden state."""

    def __init__(self, features: int, hidden: int, classes: int):
        super().__init__()
        self.lstm = torch.nn.LSTM(features, hidden, batch_first=True)
        self.head = torch.nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(x)
        return self.head(h[-1])


def accuracy(model: Classifier, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    with torch.no_grad():
        correct = sum(
            int((model(inputs[i : i + 1000]).argmax(-1) == targets[i : i + 1000]).sum())
            for i in range(0, len(targets), 1000)
        )
    return correct / len(targets)


def train_one(arrays: dict[str, torch.Tensor], seed: int, args: argparse.Namespace) -> dict:
    """One run: its wall time, training time and test accuracy."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    inputs, targets = arrays["train_inputs"], arrays["train_targets"]
    model = Classifier(inputs.shape[-1], args.hidden, int(targets.max()) + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    cosine = lambda step: 0.5 * (1 + math.cos(math.pi * min(step, args.steps) / args.steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)
    train_start = time.perf_counter()
    for _ in range(args.steps):
        index = torch.randint(0, len(targets), (args.batch,), generator=generator)
        loss = torch.nn.functional.cross_entropy(model(inputs[index]), targets[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        optimizer.step()
        schedule.step()
    train_s = time.perf_counter() - train_start
    accuracy(model, arrays["validation_inputs"], arrays["validation_targets"])  # as gatelab does
    test = accuracy(model, arrays["test_inputs"], arrays["test_targets"])
    return {"wall_s": time.perf_counter() - start, "train_s": train_s, "test/accuracy": test}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the .npz the benchmark wrote")
    parser.add_argument("--runs", required=True, help="VARIANT/SEED,... (labels; all nn.LSTM)")
    for name, kind in (("hidden", int), ("steps", int), ("batch", int), ("lr", float)):
        parser.add_argument(f"--{name}", type=kind, required=True)
    parser.add_argument("--clip", type=float, required=True, help="global gradient norm")
    parser.add_argument("--json", required=True, help="where the results go")
    args = parser.parse_args(argv)
    runtime.tune_allocator()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    with np.load(args.data) as data:
        arrays = {k: torch.from_numpy(np.asarray(v)) for k, v in data.items()}
    arrays = {k: v.long() if k.endswith("targets") else v for k, v in arrays.items()}
    results = []
    for label in args.runs.split(","):
        results.append({"run": label, **train_one(arrays, int(label.split("/")[1]), args)})
        with open(args.json, "w") as f:  # kept if a later run dies
            json.dump({"runs": results, "threads": torch.get_num_threads()}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
