"""Whether a variant's runs were still improving when their budget ran out.

A comparison at a fixed budget says which variant learned more in that many steps, which is
not always which can learn more: at 1,200 steps a variant that learns faster can look better
than one that would overtake it. A variant is **still improving** when

- most of its runs (more than half) had their best validation value at the last evaluation
  (the summary's ``best_step`` is its last step), or
- its validation metric's trend over the last fifth of training (at least its last three
  evaluations) is clearly still improving: the slopes of its runs' least-squares lines, in the
  metric's better direction, are positive by a one-sided t-test at p < 0.05 (with at least two
  runs).

Only the runs that enter the means are looked at (completed, with a finite metric).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import scipy.stats

from gatelab.report.metric import Metric

__all__ = ["ALPHA", "still_improving"]

ALPHA = 0.05
LAST_FRACTION = 0.2
MIN_POINTS = 3


def _slope(steps: np.ndarray, values: np.ndarray) -> float:
    if len(steps) < 2 or np.ptp(steps) == 0:
        return math.nan
    return float(np.polyfit(steps, values, 1)[0])


def still_improving(used: pd.DataFrame, curves: pd.DataFrame, selection: Metric) -> pd.DataFrame:
    """Per variant of ``used``: ``best_at_end`` (the fraction of its runs whose best validation
    step is their last), ``trend_p`` (the one-sided p-value that the last fifth still improves;
    NaN where it cannot be tested), ``still_improving`` (bool), ``budget`` (the runs' steps)."""
    rows = []
    sign = 1.0 if selection.direction == "max" else -1.0
    eval_curves = curves[curves["key"] == selection.key] if len(curves) else curves
    for variant, runs in used.groupby("variant", sort=False):
        missing = pd.Series(math.nan, index=runs.index)
        steps = pd.to_numeric(runs.get("steps", missing), errors="coerce").to_numpy(float)
        best = pd.to_numeric(runs.get("best_step", missing), errors="coerce").to_numpy(float)
        known = np.isfinite(steps) & np.isfinite(best)
        at_end = float(np.mean(best[known] >= steps[known])) if known.any() else 0.0
        slopes = []
        for name in runs["name"]:
            curve = eval_curves[eval_curves["run"] == name].sort_values("step")
            curve = curve[np.isfinite(curve["value"].to_numpy(float))]
            if len(curve) < MIN_POINTS:
                continue
            keep = max(MIN_POINTS, math.ceil(LAST_FRACTION * len(curve)))
            tail = curve.tail(keep)
            slope = _slope(tail["step"].to_numpy(float), sign * tail["value"].to_numpy(float))
            if math.isfinite(slope):
                slopes.append(slope)
        trend_p = math.nan
        if len(slopes) >= 2 and np.ptp(slopes) > 0:
            with warnings.catch_warnings():  # nearly equal slopes: scipy's precision note
                warnings.simplefilter("ignore", RuntimeWarning)
                test = scipy.stats.ttest_1samp(slopes, 0.0, alternative="greater")
            trend_p = float(test.pvalue)
        elif len(slopes) >= 2:  # every run's slope the same: no spread to test, its sign decides
            trend_p = 0.0 if slopes[0] > 0 else 1.0
        improving = (at_end > 0.5) or (math.isfinite(trend_p) and trend_p < ALPHA)
        budget = int(np.nanmax(steps)) if np.isfinite(steps).any() else None
        rows.append(
            {
                "variant": variant,
                "best_at_end": at_end,
                "trend_p": trend_p,
                "still_improving": bool(improving),
                "budget": budget,
            }
        )
    columns = ["best_at_end", "trend_p", "still_improving", "budget"]
    if not rows:
        return pd.DataFrame(columns=columns).rename_axis("variant")
    return pd.DataFrame(rows).set_index("variant")[columns]
