"""A study across tasks: per-task reports, scores normalised between chance and the baseline
(direction-aware), and aggregates with a bootstrap stratified by task."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import rliable.metrics

from gatelab import report
from gatelab.report import across


def _two_tasks(tmp_path) -> pd.DataFrame:
    from test_report import ACCURACY, grid_sweep  # the report tests' record writers

    runs = report.load_runs(grid_sweep(tmp_path / "sweep", variants=("vanilla", "NFG", "CIFG")))
    adding = runs.copy()
    adding["name"] = "adding-" + adding["name"]
    adding["task"] = "adding"
    adding["primary_metric"], adding["direction"], adding["chance"] = "mse", "min", 1 / 6
    # MSE that mirrors the accuracy (lower is better): NFG far worse, CIFG like vanilla.
    adding["test/mse"] = 1 / 6 * (1.0 - pd.to_numeric(adding["test/accuracy"]))
    adding["test/accuracy"] = np.nan
    assert ACCURACY["vanilla"]
    return pd.concat([runs, adding], ignore_index=True)


def test_scores_normalise_between_chance_and_the_baseline_whatever_the_direction(tmp_path):
    runs = _two_tasks(tmp_path)
    tasks = across.tasks_of(runs, "vanilla")
    assert [t.name for t in tasks] == ["mnist1d", "adding"]
    for task in tasks:
        assert task.normalise(np.array([task.baseline_mean]))[0] == pytest.approx(1.0)
        assert task.normalise(np.array([task.metric.chance]))[0] == pytest.approx(0.0)
    scores = across.normalised(tasks, ["vanilla", "NFG"]).set_index(["variant", "task"])
    # NFG is worse on both: below 1 on both, whatever the metric's direction.
    assert scores.loc[("NFG", "mnist1d"), "mean"] < 1 and scores.loc[("NFG", "adding"), "mean"] < 1


def test_the_aggregate_and_its_stratified_intervals(tmp_path):
    runs = _two_tasks(tmp_path)
    tasks = across.tasks_of(runs, "vanilla")
    summary = across.aggregate(tasks, ["vanilla", "NFG", "CIFG"], "vanilla")
    assert summary.loc["vanilla", "mean"] == pytest.approx(1.0)
    assert summary.loc["NFG", "tasks"] == 2 and summary.loc["NFG", "n"] == 10
    assert (
        summary.loc["NFG", "mean_lo"] <= summary.loc["NFG", "mean"] <= summary.loc["NFG", "mean_hi"]
    )
    # P(beats) averaged over tasks, as rliable computes it (per task, then the mean).
    x = np.stack([t.values("CIFG") * (1 if t.metric.direction == "max" else -1) for t in tasks], 1)
    y = np.stack(
        [t.values("vanilla") * (1 if t.metric.direction == "max" else -1) for t in tasks], 1
    )
    assert summary.loc["CIFG", "poi"] == pytest.approx(
        rliable.metrics.probability_of_improvement(x, y)
    )
    assert summary.loc["NFG", "poi"] == 0.0


def test_a_study_across_tasks_reports_each_task_and_the_aggregate(tmp_path):
    runs = _two_tasks(tmp_path)
    out = tmp_path / "report"
    text = report.build_report(tmp_path / "sweep", runs=runs, out=out).read_text()
    assert text.startswith("# gatelab report: 2 tasks (mnist1d, adding)")
    assert "## Per task" in text and "## Across tasks" in text
    assert "| NFG | 2 | 10 |" in text
    for task in ("mnist1d", "adding"):
        assert (out / "tasks" / task / "report.md").exists()
        assert "## Interval estimates" in (out / "tasks" / task / "report.md").read_text()
    assert (out / "figures" / "tasks.png").exists()
    table = pd.read_csv(out / "table.csv").set_index("variant")
    assert table.loc["vanilla", "mean"] == pytest.approx(1.0)
