"""Interval estimates and robust aggregates (Agarwal et al. 2021, "Deep RL at the edge of the
statistical precipice"; their library ``rliable`` is the reference the tests compare with).

Per variant: the mean, the median and the IQM (interquartile mean: the mean of the middle 50%
of runs, ``scipy.stats.trim_mean(x, 0.25)``) with percentile-bootstrap 95% confidence
intervals over runs, and the probability of improvement over the baseline, ``P(X > Y)`` for a
metric to maximise (``P(X < Y)`` to minimise; ties count one half), the Mann-Whitney U
statistic divided by ``n m``, with a bootstrap interval that resamples both sides. A
performance profile is the fraction of a variant's runs whose score beats each threshold, with
a bootstrap band. Every bootstrap is ``scipy.stats.bootstrap`` with a fixed seed, so a report is
byte-identical when it is made again. Fewer than two runs give no interval, and the reason.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.stats

__all__ = [
    "LEVEL",
    "RESAMPLES",
    "SEED",
    "Interval",
    "iqm",
    "interval",
    "probability_of_improvement",
    "improvement_interval",
    "bootstrap",
    "profile",
]

LEVEL = 0.95
RESAMPLES = 2000
SEED = 0


class Interval(tuple):
    """``(estimate, low, high)``, and ``why`` when there is no interval."""

    why: str = ""

    def __new__(cls, estimate: float, low: float = math.nan, high: float = math.nan, why=""):
        self = super().__new__(cls, (float(estimate), float(low), float(high)))
        self.why = why
        return self

    @property
    def estimate(self) -> float:
        return self[0]

    @property
    def low(self) -> float:
        return self[1]

    @property
    def high(self) -> float:
        return self[2]


def iqm(values, axis: int = -1) -> np.ndarray:
    """The interquartile mean: the mean of the middle 50% (``rliable.metrics.aggregate_iqm``)."""
    return scipy.stats.trim_mean(values, proportiontocut=0.25, axis=axis)


def _median(values, axis: int = -1) -> np.ndarray:
    return np.median(values, axis=axis)


def _mean(values, axis: int = -1) -> np.ndarray:
    return np.mean(values, axis=axis)


STATISTICS: dict[str, Callable] = {"mean": _mean, "median": _median, "iqm": iqm}


def bootstrap(samples: Sequence[np.ndarray], statistic: Callable) -> tuple[Any, Any]:
    """The percentile-bootstrap 95% CI ``(low, high)`` of ``statistic(*samples, axis=-1)``
    (vectorised), each sample resampled on its own, seeded: the one bootstrap of the report
    (one sample: over runs; a variant and its baseline; every task's runs, stratified)."""
    with warnings.catch_warnings():  # nearly equal runs: scipy's precision note, not an error
        warnings.simplefilter("ignore", RuntimeWarning)
        result = scipy.stats.bootstrap(
            tuple(samples),
            statistic,
            n_resamples=RESAMPLES,
            confidence_level=LEVEL,
            method="percentile",
            vectorized=True,
            paired=False,
            rng=np.random.default_rng(SEED),
        )
    return result.confidence_interval.low, result.confidence_interval.high


def _bootstrap(samples: tuple[np.ndarray, ...], statistic: Callable) -> tuple[float, float]:
    low, high = bootstrap(samples, statistic)
    return float(low), float(high)


def interval(values, statistic: str = "mean") -> Interval:
    """The statistic (``mean``, ``median`` or ``iqm``) of ``values`` and its bootstrap 95% CI."""
    x = np.asarray(values, float)
    function = STATISTICS[statistic]
    if len(x) == 0:
        return Interval(math.nan, why="no runs")
    estimate = float(function(x))
    if len(x) < 2:
        return Interval(estimate, why="one run: no interval")
    if np.all(x == x[0]):
        return Interval(estimate, estimate, estimate)  # every resample is the same
    return Interval(estimate, *_bootstrap((x,), function))


def _improvement(x, y, axis: int = -1) -> np.ndarray:
    """``P(X > Y)`` with ties one half, along ``axis`` of both (vectorised over the others)."""
    x = np.moveaxis(np.asarray(x, float), axis, -1)[..., :, None]
    y = np.moveaxis(np.asarray(y, float), axis, -1)[..., None, :]
    return np.mean((x > y) + 0.5 * (x == y), axis=(-2, -1))


def probability_of_improvement(x, y, direction: str = "max") -> float:
    """``P(X > Y)`` (``direction="max"``) or ``P(X < Y)`` (``"min"``), ties counting one half:
    the probability that a run of X beats a run of Y."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if direction == "min":
        x, y = -x, -y
    return float(_improvement(x, y))


def improvement_interval(x, y, direction: str = "max") -> Interval:
    """:func:`probability_of_improvement` and its bootstrap 95% CI (both sides resampled)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if not len(x) or not len(y):
        return Interval(math.nan, why="no runs on one side")
    if direction == "min":
        x, y = -x, -y
    estimate = float(_improvement(x, y))
    if len(x) < 2 or len(y) < 2:
        return Interval(estimate, why="one run on a side: no interval")
    if np.all(x == x[0]) and np.all(y == y[0]):
        return Interval(estimate, estimate, estimate)
    return Interval(estimate, *_bootstrap((x, y), _improvement))


def profile(
    values, thresholds, direction: str = "max"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The performance profile: at each threshold, the fraction of runs whose score beats it
    (``>`` to maximise, ``<`` to minimise), with a bootstrap 95% band.

    Returns:
        ``(fraction, low, high)``, each shaped like ``thresholds``.
    """
    x = np.asarray(values, float)
    tau = np.asarray(thresholds, float)
    sign = 1.0 if direction == "max" else -1.0

    def fraction(sample, axis=-1):  # (thresholds, *batch): scipy wants the statistic's axis first
        sample = np.moveaxis(sample, axis, -1)
        beats = np.mean(sign * sample[..., None, :] > sign * tau[:, None], axis=-1)
        return np.moveaxis(beats, -1, 0)

    point = fraction(x)
    if len(x) < 2 or np.all(x == x[0]):
        return point, point.copy(), point.copy()
    low, high = bootstrap((x,), fraction)
    return point, np.asarray(low), np.asarray(high)
