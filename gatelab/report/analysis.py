"""What a report compares: the metric, the baseline, the variants' order and the views (all
trials; the best 10% by validation), decided from the runs table alone. Tables, figures and
report.md are drawn from these (``document``, ``figures``, ``experiments/figures``).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pandas as pd

from gatelab import records
from gatelab.report import stats
from gatelab.report.metric import Metric

__all__ = [
    "BEST_FRACTION",
    "View",
    "common",
    "describe",
    "resolve_baseline",
    "resolve_metric",
    "selection_metric",
    "short_labels",
    "views",
]

BEST_FRACTION = 0.1  # Greff et al. Fig. 3, bottom row: the best 10% of trials by validation


def resolve_metric(runs: pd.DataFrame, metric: str | None = None) -> Metric:
    """The reported metric: ``metric`` (a key, or a bare name meaning ``test/<name>``) or
    ``test/<primary metric>``; its direction and chance level from the summaries.

    Raises:
        ValueError: when ``metric`` is given and no run has it, or when there is no primary
            metric to default to.
    """
    primary = common(runs, "primary_metric")
    if metric is None and primary is None:
        raise ValueError("the records name no primary_metric (no run has a summary); pass a metric")
    key = metric if metric is not None else f"test/{primary}"
    key = key if "/" in key else f"test/{key}"
    found = sorted(c for c in runs.columns if c.startswith(records.METRIC_SPLITS))
    # Without any metric in the records (no run got that far) there is nothing to check against.
    if metric is not None and key not in runs and found:
        raise ValueError(f"no run has the metric {key!r}; the records have: {', '.join(found)}")
    return describe(runs, key)


def describe(runs: pd.DataFrame, key: str) -> Metric:
    """``key`` as a :class:`Metric`, in the words the task wrote into the summaries: its label,
    unit and direction (``labels/<m>``, ``units/<m>``, ``directions/<m>``), and the task's
    direction and chance level where it is the primary metric."""
    chance = None
    if "chance" in runs:
        finite = pd.to_numeric(runs["chance"], errors="coerce").dropna()
        chance = float(finite.iloc[0]) if len(finite) else None
    name = key.rsplit("/", 1)[-1]
    said = {part: common(runs, f"{part}/{name}") for part in ("labels", "units", "directions")}
    return Metric.from_key(
        key,
        primary=common(runs, "primary_metric"),
        primary_direction=common(runs, "direction"),
        chance=chance,
        **{part: {name: value} for part, value in said.items() if value is not None},
    )


def selection_metric(runs: pd.DataFrame, metric: Metric) -> Metric:
    """The validation metric that selects runs (best 10%) and draws learning curves: the task's
    primary metric on the validation set (``eval/<primary>``), else ``eval/<metric's name>``."""
    return describe(runs, f"eval/{common(runs, 'primary_metric') or metric.name}")


def resolve_baseline(runs: pd.DataFrame, baseline: str | None = None) -> str:
    """``baseline``, else ``vanilla`` when present, else the first variant of the sweep.

    Raises:
        ValueError: when ``baseline`` is not a variant of the records, or there are no runs.
    """
    variants = list(dict.fromkeys(runs["variant"]))
    if not variants:
        raise ValueError("the records hold no runs")
    if baseline is not None:
        if baseline not in variants:
            raise ValueError(f"baseline {baseline!r} is not among the variants: {variants}")
        return baseline
    return "vanilla" if "vanilla" in variants else variants[0]


@dataclasses.dataclass(frozen=True)
class View:
    """One way of choosing the runs that enter the comparison (all trials; best 10%).

    Attributes:
        title: the section's and the panel's title.
        suffix: of its files (``table{suffix}.csv``, ``box{suffix}.png``).
        note: how the runs were chosen.
        used: the runs whose values are aggregated.
        table: :func:`gatelab.report.stats.compare` of them.
    """

    title: str
    suffix: str
    note: str
    used: pd.DataFrame
    table: pd.DataFrame


def views(
    runs: pd.DataFrame,
    metric: Metric,
    baseline: str,
    order: Sequence[str],
    selection: Metric,
    kind: str | None,
) -> list[View]:
    """All trials; for a random search also the best 10% by validation (Greff et al., Fig. 3)."""
    used = stats.usable(runs, metric)
    out = [
        View(
            "All runs",
            "",
            "Every completed run with a finite metric.",
            used,
            stats.compare(runs, metric, baseline, order, used=used),
        )
    ]
    if kind == "random" and selection.key in runs:
        best = stats.best_fraction(used, selection, BEST_FRACTION, order)
        out.append(
            View(
                "Best 10% by validation",
                "_best10",
                f"Per variant, the best {BEST_FRACTION:.0%} of its completed runs (at least one) "
                f"by `{selection.key}` ({selection.direction_words}); Greff et al.'s Fig. 3, "
                "bottom row.",
                best,
                stats.compare(runs, metric, baseline, order, used=best),
            )
        )
    return out


def common(runs: pd.DataFrame, column: str) -> Any:
    """The most frequent value of ``column`` (ties: the first seen), or ``None``."""
    if column not in runs:
        return None
    values = runs[column].dropna()
    if not len(values):
        return None
    return Counter(values).most_common(1)[0][0]


def short_labels(variants: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Variant labels without the spec overrides every variant shares (``vanilla[forget_bias=
    0.0]`` and ``NIG[forget_bias=0.0]`` become ``vanilla`` and ``NIG``), and those shared ones,
    for the report to state once. Labels that would collide stay whole."""

    def split(label: str) -> tuple[str, list[str]]:
        if label.endswith("]") and "[" in label:
            name, inside = label[:-1].split("[", 1)
            return name, [part.strip() for part in inside.split(", ") if part.strip()]
        return label, []

    parsed = {v: split(str(v)) for v in variants}
    shared = None
    for _, parts in parsed.values():
        shared = set(parts) if shared is None else shared & set(parts)
    if not shared or len(parsed) < 2:
        return {v: v for v in variants}, []
    mapping = {}
    for variant, (name, parts) in parsed.items():
        rest = [p for p in parts if p not in shared]
        mapping[variant] = f"{name}[{', '.join(rest)}]" if rest else name
    if len(set(mapping.values())) < len(mapping):
        return {v: v for v in variants}, []
    kept = [p for p in parsed[variants[0]][1] if p in shared]
    return mapping, kept
