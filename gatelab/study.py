"""The study algebra that config files import: a study is data.

A config file's ``sweep(arg=None)`` returns a ``Sweep``: a list of override dicts built with
``grid`` (a cartesian product), ``zipped`` (axes side by side) or ``random`` (a seeded random
search in the style of Greff et al., docs/reference.md, section 3), and added
together with ``+``. Nothing here runs anything: ``gatelab.sweep`` expands, groups and trains.

    from gatelab.study import grid, random, log_uniform
    study = grid({"model.variant": ["vanilla", "NFG"], "optim.lr": [1e-3, 3e-3]})   # 4 runs
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "Sweep",
    "as_sweep",
    "Distribution",
    "grid",
    "zipped",
    "random",
    "log_uniform",
    "one_minus_log_uniform",
    "uniform",
    "choice",
    "log_buckets",
]


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A study: ``runs`` is a list of override dicts (``{"model.variant": "CIFG", ...}``).

    ``kind`` says how it was built (``grid``, ``random`` or ``list``), and ``parameters`` keeps
    the axes or distributions, from which ``wandb_sweep_config`` writes a W&B sweep.
    """

    runs: tuple[dict[str, Any], ...]
    kind: str = "list"
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __add__(self, other: Sweep) -> Sweep:
        """Both studies' runs. Two random searches over the same keys stay a random search for
        W&B, a key fixed to different values on each side becoming a choice among them (Greff
        et al.'s one search per variant); anything else is a plain list of runs."""
        runs = self.runs + other.runs
        if self.kind != "random" or other.kind != "random":
            return Sweep(runs, "list", {})
        if set(self.parameters) != set(other.parameters):
            return Sweep(runs, "list", {})
        parameters = {}
        for key, mine in self.parameters.items():
            theirs = other.parameters[key]
            if mine == theirs:
                parameters[key] = mine
            elif {*mine, *theirs} <= {"value", "values"}:
                pooled = list(mine.get("values", [mine.get("value")]))
                for value in theirs.get("values", [theirs.get("value")]):
                    if value not in pooled:
                        pooled.append(value)
                parameters[key] = {"values": pooled}
            else:
                return Sweep(runs, "list", {})
        return Sweep(runs, "random", parameters)

    def __len__(self) -> int:
        return len(self.runs)


def grid(axes: dict[str, Sequence[Any]]) -> Sweep:
    """Every combination of the axes, the first axis varying slowest.

    ``grid({"model.variant": ["vanilla", "NFG"], "optim.lr": [1e-3, 3e-3]})`` is 4 overrides.
    """
    keys = list(axes)
    runs = tuple(
        dict(zip(keys, values, strict=True)) for values in itertools.product(*axes.values())
    )
    return Sweep(runs, "grid", {k: {"values": list(v)} for k, v in axes.items()})


def zipped(axes: dict[str, Sequence[Any]]) -> Sweep:
    """The axes side by side (all of one length): ``{"a": [1, 2], "b": [3, 4]}`` is 2 overrides."""
    lengths = {len(v) for v in axes.values()}
    if len(lengths) != 1:
        raise ValueError(f"zipped axes differ in length: { {k: len(v) for k, v in axes.items()} }")
    keys = list(axes)
    return Sweep(
        tuple(dict(zip(keys, values, strict=True)) for values in zip(*axes.values(), strict=True))
    )


@dataclasses.dataclass(frozen=True)
class Distribution:
    kind: str
    low: float = 0.0
    high: float = 0.0
    values: tuple = ()

    def sample(self, rng: np.random.Generator) -> Any:
        match self.kind:
            case "log_uniform":
                return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
            case "uniform":
                return float(rng.uniform(self.low, self.high))
            case "choice":
                return self.values[int(rng.integers(len(self.values)))]
            case "one_minus_log_uniform":
                return 1.0 - float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        raise AssertionError(self.kind)

    def wandb(self) -> dict[str, Any]:
        match self.kind:
            case "log_uniform":
                return {"distribution": "log_uniform_values", "min": self.low, "max": self.high}
            case "uniform":
                return {"distribution": "uniform", "min": self.low, "max": self.high}
            case "one_minus_log_uniform":
                # W&B has no such distribution: the nearest it has, over the same range.
                return {"distribution": "uniform", "min": 1.0 - self.high, "max": 1.0 - self.low}
        return {"values": list(self.values)}


def log_uniform(low: float, high: float) -> Distribution:
    """``exp(U[log low, log high])`` (Greff et al.'s learning rate and hidden size)."""
    return Distribution("log_uniform", low, high)


def one_minus_log_uniform(low: float, high: float) -> Distribution:
    """``1 - exp(U[log low, log high])``: Greff et al.'s momentum, 1 - log-uniform [0.01, 1]."""
    return Distribution("one_minus_log_uniform", low, high)


def uniform(low: float, high: float) -> Distribution:
    return Distribution("uniform", low, high)


def choice(*values: Any) -> Distribution:
    return Distribution("choice", values=tuple(values))


def log_buckets(low: float, high: float, buckets: int) -> Distribution:
    """A log-uniform integer on [low, high], snapped to ``buckets`` sizes.

    The range is cut into equal log-width intervals and each draw takes its interval's geometric
    centre, so every size is equally likely, exactly as a log-uniform draw would put its mass;
    runs that share a size share a compiled program (a continuous hidden size would give every
    run its own).
    """
    edges = np.geomspace(low, high, buckets + 1)
    centres = tuple(
        int(round(math.sqrt(a * b))) for a, b in zip(edges[:-1], edges[1:], strict=True)
    )
    return choice(*centres)


def random(
    trials: int, seed: int, space: dict[str, Any], fixed: dict[str, Any] | None = None
) -> Sweep:
    """A seeded random search: ``trials`` draws of ``space`` (distributions or fixed values).

    Every trial is its own run (its own seed, ``run.seeds = (trial,)`` unless given), named by
    its trial number.
    """
    rng = np.random.default_rng(seed)
    runs = []
    for trial in range(trials):
        draw = {k: v.sample(rng) if isinstance(v, Distribution) else v for k, v in space.items()}
        runs.append({"_trial": trial, "run.seeds": (trial,), **(fixed or {}), **draw})
    parameters = {k: {"value": v} for k, v in (fixed or {}).items()}
    parameters.update(
        {k: v.wandb() if isinstance(v, Distribution) else {"value": v} for k, v in space.items()}
    )
    return Sweep(tuple(runs), "random", parameters)


def as_sweep(study: Sweep | Sequence[dict[str, Any]]) -> Sweep:
    """A config file's ``sweep()`` as a ``Sweep`` (a plain list of override dicts is one)."""
    return study if isinstance(study, Sweep) else Sweep(tuple(study), "list")
