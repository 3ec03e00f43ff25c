"""A study across several tasks: every task's scores normalised between chance and the
baseline, and aggregates over tasks with a bootstrap stratified by task (Agarwal et al. 2021).

A run's normalised score on task ``t`` is ``(x - chance_t) / (baseline_t - chance_t)``, with
``baseline_t`` the baseline's mean on ``t``: 0 is chance, 1 is the baseline, above 1 better than
it, whatever the metric's direction (an NLL and an accuracy combine). Per variant, the mean and
the IQM of its normalised scores over every run of every task, and the probability of
improvement over the baseline averaged over tasks (rliable's convention), each with a
percentile-bootstrap 95% CI that resamples runs within each task (stratified: every resample
keeps each task's number of runs). A task without a chance level is left out of the aggregate,
and the report says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from gatelab.report import intervals, stats
from gatelab.report.analysis import resolve_baseline, resolve_metric
from gatelab.report.metric import Metric

__all__ = ["Task", "tasks_of", "normalised", "aggregate"]


class Task:
    """One task of the study: its runs, metric, baseline and the baseline's mean."""

    def __init__(self, name: str, runs: pd.DataFrame, baseline: str | None):
        self.name = name
        self.runs = runs
        self.metric: Metric = resolve_metric(runs)
        self.baseline = resolve_baseline(runs, baseline)
        self.used = stats.usable(runs, self.metric)
        base = self.values(self.baseline)
        self.baseline_mean = float(base.mean()) if len(base) else math.nan

    def values(self, variant: str) -> np.ndarray:
        own = self.used[self.used["variant"] == variant]
        return pd.to_numeric(own[self.metric.key]).to_numpy(float)

    @property
    def why_not(self) -> str:
        """Why the task cannot be normalised, or empty."""
        if self.metric.chance is None:
            return "no chance level"
        if not math.isfinite(self.baseline_mean):
            return f"no completed {self.baseline} run"
        if self.baseline_mean == self.metric.chance:
            return f"{self.baseline} scores chance"
        return ""

    def normalise(self, values: np.ndarray) -> np.ndarray:
        chance = self.metric.chance
        return (values - chance) / (self.baseline_mean - chance)


def tasks_of(runs: pd.DataFrame, baseline: str | None) -> list[Task]:
    """The tasks of ``runs``, in order of first appearance."""
    names = list(dict.fromkeys(runs["task"].dropna()))
    return [Task(str(name), runs[runs["task"] == name], baseline) for name in names]


def normalised(tasks: Sequence[Task], order: Sequence[str]) -> pd.DataFrame:
    """Per variant and task: the mean normalised score and n (``variant, task, mean, n``)."""
    rows = []
    for task in tasks:
        if task.why_not:
            continue
        for variant in order:
            values = task.normalise(task.values(variant))
            if len(values):
                rows.append(
                    {"variant": variant, "task": task.name, "mean": values.mean(), "n": len(values)}
                )
    return pd.DataFrame(rows, columns=["variant", "task", "mean", "n"])


def _interval(samples: list[np.ndarray], statistic) -> tuple[float, float]:
    """A percentile-bootstrap 95% CI resampling each sample (a task's runs) on its own."""
    if any(len(s) < 2 for s in samples):
        return math.nan, math.nan
    low, high = intervals.bootstrap(samples, statistic)
    return float(low), float(high)


def aggregate(tasks: Sequence[Task], order: Sequence[str], baseline: str) -> pd.DataFrame:
    """Per variant over the normalisable tasks: ``tasks`` (how many it has runs on), ``n``,
    ``mean`` / ``mean_lo`` / ``mean_hi`` and ``iqm`` / ``iqm_lo`` / ``iqm_hi`` of the
    normalised scores, ``poi`` / ``poi_lo`` / ``poi_hi`` against ``baseline`` (the mean over
    tasks of P(X beats Y)); intervals stratified by task; ``note`` says why one is missing."""
    usable = [t for t in tasks if not t.why_not]
    rows = []
    for variant in order:
        samples = [t.normalise(t.values(variant)) for t in usable]
        present = [s for s in samples if len(s)]
        if not present:
            continue
        every = np.concatenate(present)

        def mean(*parts, axis=-1):
            return np.mean(np.concatenate(parts, axis=axis), axis=axis)

        def iqm(*parts, axis=-1):
            return intervals.iqm(np.concatenate(parts, axis=axis), axis=axis)

        row = {"variant": variant, "tasks": len(present), "n": len(every)}
        row["mean"], row["iqm"] = float(every.mean()), float(intervals.iqm(every))
        row["mean_lo"], row["mean_hi"] = _interval(present, mean)
        row["iqm_lo"], row["iqm_hi"] = _interval(present, iqm)
        row["poi"] = row["poi_lo"] = row["poi_hi"] = math.nan
        pairs = [
            (t.values(variant), t.values(baseline), t.metric.direction)
            for t in usable
            if len(t.values(variant)) and len(t.values(baseline))
        ]
        if variant != baseline and pairs:
            signed = []
            for x, y, direction in pairs:
                sign = 1.0 if direction == "max" else -1.0
                signed += [sign * x, sign * y]

            def poi(*parts, axis=-1):
                return np.mean(
                    [
                        intervals._improvement(parts[k], parts[k + 1], axis=axis)
                        for k in range(0, len(parts), 2)
                    ],
                    axis=0,
                )

            row["poi"] = float(poi(*signed))
            row["poi_lo"], row["poi_hi"] = _interval(signed, poi)
        row["note"] = "" if math.isfinite(row["mean_lo"]) else "a task with one run: no interval"
        rows.append(row)
    columns = ["tasks", "n", "mean", "mean_lo", "mean_hi", "iqm", "iqm_lo", "iqm_hi"]
    columns += ["poi", "poi_lo", "poi_hi", "note"]
    if not rows:
        return pd.DataFrame(columns=columns).rename_axis("variant")
    return pd.DataFrame(rows).set_index("variant")[columns]
