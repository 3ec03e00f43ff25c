"""Interval estimates, the probability of improvement and the convergence check, each against an
independent computation: rliable's own functions, scipy, a closed form, hand-built cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import rliable.metrics
import scipy.stats
from hypothesis import given
from hypothesis import strategies as st

from gatelab.report import convergence, intervals, stats
from gatelab.report.metric import Metric

scores = st.lists(
    st.floats(0, 1, allow_nan=False).map(lambda x: round(x, 3)), min_size=1, max_size=12
)


@given(scores)
def test_iqm_is_rliables(values):
    x = np.array(values)
    assert intervals.iqm(x) == pytest.approx(rliable.metrics.aggregate_iqm(x[:, None]))


@given(scores, scores)
def test_probability_of_improvement_is_rliables_and_mann_whitneys(xs, ys):
    x, y = np.array(xs), np.array(ys)
    ours = intervals.probability_of_improvement(x, y)
    assert ours == pytest.approx(rliable.metrics.probability_of_improvement(x[:, None], y[:, None]))
    u = scipy.stats.mannwhitneyu(x, y, alternative="greater").statistic
    assert ours == pytest.approx(u / (len(x) * len(y)))
    # To minimise, the question turns round: P(X < Y) = P(-X > -Y) = 1 - P(X > Y) - ties.
    assert intervals.probability_of_improvement(x, y, "min") == pytest.approx(
        intervals.probability_of_improvement(y, x)
    )


def test_closed_forms_of_the_probability_of_improvement():
    better, worse = [0.9, 0.95, 0.92], [0.5, 0.6, 0.55, 0.58]
    assert intervals.improvement_interval(better, worse) == (1.0, 1.0, 1.0)  # always beats
    assert intervals.improvement_interval(worse, better).estimate == 0.0
    same = intervals.improvement_interval([0.5, 0.5], [0.5, 0.5])
    assert same.estimate == 0.5  # only ties: no difference


def test_the_bootstrap_interval_of_a_mean_matches_the_t_interval_of_a_large_sample():
    x = np.random.default_rng(1).normal(10.0, 2.0, 400)
    estimate, low, high = intervals.interval(x, "mean")
    t_low, t_high = scipy.stats.t.interval(0.95, len(x) - 1, x.mean(), scipy.stats.sem(x))
    assert estimate == pytest.approx(x.mean())
    width = t_high - t_low
    assert abs(low - t_low) < 0.1 * width and abs(high - t_high) < 0.1 * width


def test_intervals_cover_the_estimate_are_seeded_and_say_why_they_are_missing():
    x = [0.86, 0.84, 0.89, 0.83, 0.90]
    for name in ("mean", "median", "iqm"):
        first = intervals.interval(x, name)
        assert first.low <= first.estimate <= first.high
        assert intervals.interval(x, name) == first  # a report is byte-identical made again
    one = intervals.interval([0.8], "mean")
    assert one.estimate == 0.8 and math.isnan(one.low) and "one run" in one.why
    assert "no runs" in intervals.interval([], "iqm").why
    assert "one run" in intervals.improvement_interval([0.8], x).why


def test_a_performance_profile_counts_the_runs_beyond_each_threshold():
    x = np.array([0.1, 0.2, 0.3, 0.4])
    fraction, low, high = intervals.profile(x, [0.0, 0.25, 0.5])
    assert fraction.tolist() == [1.0, 0.5, 0.0]
    assert np.all(low <= fraction) and np.all(fraction <= high)
    assert intervals.profile(x, [0.25], "min")[0].tolist() == [0.5]  # below, to minimise


def _runs_and_curves(shapes: dict[str, list[str]], steps: int = 1000):
    """Runs whose validation accuracy follows ``rising`` (to the last step) or ``plateau``."""
    rows, curves = [], []
    for variant, kinds in shapes.items():
        for seed, kind in enumerate(kinds):
            name = f"{variant}__s{seed}"
            points = np.arange(100, steps + 1, 100)
            if kind == "rising":
                values = 0.5 + (0.4 + 0.01 * seed) * points / steps
                best = steps
            else:  # up early, then flat with noise: best somewhere in the middle
                noise = np.random.default_rng(seed).normal(0, 0.002, len(points))
                values = np.minimum(0.5 + points / 400, 0.85) + noise
                best = int(points[np.argmax(values)])
                values[-1] = values.max() - 0.003  # not the best at the very end
                best = int(points[np.argmax(values)])
            rows.append(
                {"name": name, "variant": variant, "steps": steps, "best_step": best, "seed": seed}
            )
            curves += [
                {
                    "run": name,
                    "variant": variant,
                    "step": int(s),
                    "key": "eval/accuracy",
                    "value": v,
                }
                for s, v in zip(points, values, strict=True)
            ]
    return pd.DataFrame(rows), pd.DataFrame(curves)


def test_still_improving_is_said_of_rising_curves_not_of_plateaus():
    runs, curves = _runs_and_curves(
        {"rising": ["rising"] * 3, "plateau": ["plateau"] * 3, "mixed": ["rising", "plateau"]}
    )
    found = convergence.still_improving(runs, curves, Metric("eval/accuracy", "max"))
    assert found.loc["rising", "still_improving"]
    assert found.loc["rising", "best_at_end"] == 1.0 and found.loc["rising", "trend_p"] < 0.05
    assert not found.loc["plateau", "still_improving"]
    assert found.loc["plateau", "best_at_end"] == 0.0
    assert not found.loc["mixed", "still_improving"]  # half is not most
    assert found.loc["rising", "budget"] == 1000
    # For a metric to minimise, a falling curve is the improving one.
    flipped = curves.assign(value=-curves["value"])
    found = convergence.still_improving(runs, flipped, Metric("eval/accuracy", "min"))
    assert found.loc["rising", "trend_p"] < 0.05


def test_compare_carries_the_intervals_and_the_probability_of_improvement():
    runs = pd.DataFrame(
        {
            "variant": ["a"] * 4 + ["b"] * 4 + ["c"],
            "status": ["completed"] * 9,
            "test/accuracy": [0.80, 0.82, 0.81, 0.83, 0.90, 0.91, 0.92, 0.93, 0.5],
        }
    )
    table = stats.compare(runs, Metric("test/accuracy", "max"), "a")
    assert math.isnan(table.loc["a", "poi"])  # the baseline against itself: nothing
    assert table.loc["b", "poi"] == 1.0
    assert table.loc["b", "mean_lo"] <= table.loc["b", "mean"] <= table.loc["b", "mean_hi"]
    assert table.loc["b", "iqm"] == pytest.approx(0.915)
    assert "one run" in table.loc["c", "interval_note"]
    assert math.isnan(table.loc["c", "mean_lo"])


def test_a_study_of_one_variant_still_reports(tmp_path):
    from test_report import ACCURACY, write_run, write_sweep  # the report tests' record writers

    from gatelab import report

    root = tmp_path / "sweep"
    entries = []
    for seed, value in enumerate(ACCURACY["vanilla"]):
        write_run(root, f"vanilla__s{seed}", "vanilla", seed, test=value)
        entries.append({"name": f"vanilla__s{seed}", "variant": "vanilla", "seed": seed})
        entries[-1]["status"] = "completed"
    write_sweep(root, entries)
    text = report.build_report(root).read_text()
    assert "- One variant only: nothing to test." in text
    assert "## Interval estimates" in text and "| vanilla (baseline) | 5 | " in text
    assert "## Convergence and budget" in text
