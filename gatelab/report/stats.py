"""Statistics of a sweep: per-variant aggregates, Welch's t-test and Holm's correction.

Greff et al.'s protocol (docs/reference.md, section 3): each variant's test metric is compared
with the baseline's (vanilla) by Welch's t-test, over all trials and over the best 10% of trials
by validation. Only completed runs with a finite metric enter a mean or a test; diverged and
failed runs are counted beside them. With several variants tested against one baseline, the
p-values are adjusted by Holm's step-down method, which controls the family-wise error rate at
``alpha`` without assuming independent tests.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.stats

from gatelab import records
from gatelab.report import intervals
from gatelab.report.metric import Metric

__all__ = [
    "ALPHA",
    "holm",
    "welch",
    "usable",
    "best_fraction",
    "compare",
    "curve_band",
    "t_interval",
    "gate_table",
    "variant_order",
]

ALPHA = 0.05  # the family-wise significance level (Greff et al.: p < 0.05)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in the order given.

    Sort the m finite p-values ascending; the one of 0-based rank r is multiplied by (m - r);
    a running maximum keeps the adjusted values in the same order as the raw ones; values are
    clipped at 1. A test is significant at level alpha when its adjusted p-value is below alpha,
    which is exactly Holm's step-down procedure. NaN entries (tests not made) stay NaN and do not
    count in m.
    """
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    tested = np.flatnonzero(np.isfinite(p))
    m = len(tested)
    running = 0.0
    for rank, index in enumerate(tested[np.argsort(p[tested], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def welch(values: Sequence[float], baseline: Sequence[float]) -> float:
    """The two-sided p-value of Welch's t-test (unequal variances); NaN with < 2 values a side.

    Two groups without any spread (identical values on both sides) also give NaN: there is no
    t statistic to compute.
    """
    a, b = np.asarray(values, float), np.asarray(baseline, float)
    if len(a) < 2 or len(b) < 2:
        return math.nan
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nearly equal values: a precision note
        p = scipy.stats.ttest_ind(a, b, equal_var=False).pvalue
    return float(p)


def usable(runs: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    """The runs that enter means and tests: completed, with a finite ``metric``."""
    if metric.key not in runs:
        return runs.iloc[0:0]
    values = pd.to_numeric(runs[metric.key], errors="coerce")
    return runs[(runs["status"] == "completed") & np.isfinite(values)]


def best_fraction(
    runs: pd.DataFrame, by: Metric, fraction: float = 0.1, order: Sequence[str] | None = None
) -> pd.DataFrame:
    """Per variant, the best ``fraction`` of its usable runs by ``by`` (the validation metric).

    ``ceil(fraction * n)`` runs are kept of a variant's n usable runs, at least one; ties keep
    the earlier run of the sweep. This is the bottom row of Greff et al.'s Fig. 3.
    """
    kept = []
    candidates = usable(runs, by)
    for variant in order if order is not None else candidates["variant"].unique():
        group = candidates[candidates["variant"] == variant]
        if not len(group):
            continue
        count = max(1, math.ceil(fraction * len(group)))
        ranked = group.sort_values(by.key, ascending=by.direction == "min", kind="stable")
        kept.append(ranked.head(count))
    return pd.concat(kept) if kept else runs.iloc[0:0]


def variant_order(runs: pd.DataFrame, baseline: str | None = None) -> list[str]:
    """The baseline first, then the variants in order of first appearance (the sweep's order)."""
    seen = list(dict.fromkeys(runs["variant"]))
    if baseline in seen:
        seen.remove(baseline)
        seen.insert(0, baseline)
    return seen


def compare(
    runs: pd.DataFrame,
    metric: Metric,
    baseline: str,
    order: Sequence[str] | None = None,
    used: pd.DataFrame | None = None,
    alpha: float = ALPHA,
) -> pd.DataFrame:
    """One row per variant: counts, statistics of ``metric`` and the test against ``baseline``.

    Args:
        runs: every run (for the counts by status).
        metric: what is compared.
        baseline: the variant every other one is tested against.
        order: the variants' order (default: :func:`variant_order`).
        used: the runs whose values are aggregated (default: :func:`usable` ``(runs)``); the
            best-10% view passes its selection.
        alpha: the family-wise level for ``significant``.

    Returns:
        Indexed by variant, columns: ``params`` (mean ``params/total`` of the used runs, else of
        all the variant's runs), ``runs`` (all), ``completed``, ``diverged``, ``failed``,
        ``pending`` (pending or still running), ``n`` (values used), ``mean``, ``std`` (sample,
        ddof = 1; NaN for n < 2), ``median``, ``best``, ``diff`` (mean minus the baseline's),
        ``p`` (Welch, two-sided; NaN where no test: the baseline, n < 2 on either side),
        ``p_holm`` (Holm-adjusted over the variants tested), ``significant`` (``p_holm < alpha``)
        and ``verdict`` (``better``, ``worse`` or empty; by the metric's direction); the
        bootstrap 95% intervals of ``intervals``: ``mean_lo``/``mean_hi``, ``median_lo``/``_hi``,
        ``iqm`` with ``iqm_lo``/``iqm_hi``, the probability of improvement over the baseline
        ``poi`` with ``poi_lo``/``poi_hi`` (NaN for the baseline), and ``interval_note``: why an
        interval is missing (fewer than two runs), else empty.
    """
    order = list(order) if order is not None else variant_order(runs, baseline)
    used = usable(runs, metric) if used is None else used
    values = {
        variant: pd.to_numeric(used.loc[used["variant"] == variant, metric.key]).to_numpy(float)
        for variant in order
    }
    base = values.get(baseline, np.array([]))
    rows = []
    for variant in order:
        own = runs[runs["variant"] == variant]
        status = own["status"]
        v = values[variant]
        params_from = used[used["variant"] == variant] if len(v) else own
        params = (
            pd.to_numeric(params_from["params/total"], errors="coerce").mean()
            if "params/total" in params_from
            else math.nan
        )
        best = (v.max() if metric.direction == "max" else v.min()) if len(v) else math.nan
        rows.append(
            {
                "variant": variant,
                "params": params,
                "runs": len(own),
                "completed": int((status == "completed").sum()),
                "diverged": int((status == "diverged").sum()),
                "failed": int((status == "failed").sum()),
                "pending": int(status.isin(["pending", "running"]).sum()),
                "n": len(v),
                "mean": v.mean() if len(v) else math.nan,
                "std": v.std(ddof=1) if len(v) > 1 else math.nan,
                "median": float(np.median(v)) if len(v) else math.nan,
                "best": best,
                "p": welch(v, base) if variant != baseline else math.nan,
                **_intervals(v, base if variant != baseline else None, metric.direction),
            }
        )
    table = pd.DataFrame(rows).set_index("variant")
    base_mean = table.loc[baseline, "mean"] if baseline in table.index else math.nan
    table["diff"] = table["mean"] - base_mean
    table["p_holm"] = holm(table["p"].to_numpy())
    table["significant"] = table["p_holm"] < alpha
    table["verdict"] = [
        ("better" if metric.is_better(mean, base_mean) else "worse") if significant else ""
        for mean, significant in zip(table["mean"], table["significant"], strict=True)
    ]
    columns = ["params", "runs", "completed", "diverged", "failed", "pending", "n", "mean", "std"]
    columns += ["median", "best", "diff", "p", "p_holm", "significant", "verdict"]
    columns += ["mean_lo", "mean_hi", "median_lo", "median_hi", "iqm", "iqm_lo", "iqm_hi"]
    columns += ["poi", "poi_lo", "poi_hi", "interval_note"]
    return table[columns]


def _intervals(values: np.ndarray, baseline: np.ndarray | None, direction: str) -> dict:
    """The bootstrap intervals of ``intervals`` for one variant (and its probability of
    improvement over ``baseline``, unless it is the baseline), with why any is missing."""
    found: dict = {}
    why = []
    for name in ("mean", "median", "iqm"):
        estimate = intervals.interval(values, name)
        if name == "iqm":
            found["iqm"] = estimate.estimate
        found[f"{name}_lo"], found[f"{name}_hi"] = estimate.low, estimate.high
        why.append(estimate.why)
    if baseline is None:
        found.update(poi=math.nan, poi_lo=math.nan, poi_hi=math.nan)
    else:
        improvement = intervals.improvement_interval(values, baseline, direction)
        found.update(poi=improvement.estimate, poi_lo=improvement.low, poi_hi=improvement.high)
        why.append(improvement.why)
    found["interval_note"] = next((w for w in why if w), "")
    return found


def t_interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of ``values`` and its two-sided t-interval, as
    :func:`curve_band` computes it for one group (NaN bounds for fewer than two values)."""
    values = np.asarray(values, float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = scipy.stats.t.ppf((1 + confidence) / 2, len(values) - 1) * scipy.stats.sem(values)
    return mean, mean - half, mean + half


def curve_band(
    curves: pd.DataFrame, key: str, used: pd.DataFrame, confidence: float = 0.95
) -> pd.DataFrame:
    """Mean and a two-sided t-interval of ``key`` over runs, per variant and step.

    The interval is mean ± t_{(1+confidence)/2, n-1} · s / sqrt(n) over the runs (seeds) that
    logged a finite value at the step; NaN where n < 2.

    Args:
        curves: the long curves table (:func:`gatelab.report.load.load_curves`).
        key: e.g. ``eval/accuracy``.
        used: the runs to include (their ``name`` column selects curves).

    Returns:
        Columns ``variant, step, n, mean, low, high``.
    """
    columns = ["variant", "step", "n", "mean", "low", "high"]
    if not len(curves):
        return pd.DataFrame(columns=columns)
    rows = curves[(curves["key"] == key) & curves["run"].isin(set(used["name"]))]
    rows = rows[np.isfinite(rows["value"])]
    if not len(rows):
        return pd.DataFrame(columns=columns)
    grouped = rows.groupby(["variant", "step"], sort=False)["value"]
    band = grouped.agg(n="count", mean="mean", std="std").reset_index()
    quantile = scipy.stats.t.ppf((1 + confidence) / 2, np.maximum(band["n"] - 1, 1))
    half = np.where(band["n"] > 1, quantile * band["std"] / np.sqrt(band["n"]), np.nan)
    band["low"], band["high"] = band["mean"] - half, band["mean"] + half
    return band.sort_values(["variant", "step"], kind="stable")[columns].reset_index(drop=True)


def gate_table(
    used: pd.DataFrame, order: Sequence[str], average_layers: bool = False
) -> pd.DataFrame:
    """Gate statistics at the end of training, per variant, layer and gate, over runs.

    Reads the summaries' ``gates/<layer>/<gate>/<stat>`` (stat: ``mean`` activation, ``low`` the
    fraction below 0.1, ``high`` the fraction above 0.9). A removed gate has no key, so no row.

    Args:
        used: the runs (one row each, with ``name`` and ``variant``).
        order: the variants' order; variants not in it are left out.
        average_layers: average each run's layers and directions first (layer ``all``), so that
            a figure shows one bar per gate.

    Returns:
        Columns ``variant, layer, gate, stat, n, mean, std`` (n runs; std over runs, ddof = 1).
    """
    columns = ["variant", "layer", "gate", "stat", "n", "mean", "std"]
    found = records.gate_columns(used.columns)
    if not found or not len(used):
        return pd.DataFrame(columns=columns)
    keys = [column for column, *_ in found]
    long = used[["name", "variant", *keys]].melt(id_vars=["name", "variant"], var_name="key")
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    long = long.dropna(subset=["value"])
    parts = {column: rest for column, *rest in found}
    long = long.assign(
        layer=long["key"].map(lambda k: parts[k][0]),
        gate=long["key"].map(lambda k: parts[k][1]),
        stat=long["key"].map(lambda k: parts[k][2]),
    )
    if average_layers:
        long = (
            long.groupby(["name", "variant", "gate", "stat"], sort=False)["value"]
            .mean()
            .reset_index()
            .assign(layer="all")
        )
    table = (
        long.groupby(["variant", "layer", "gate", "stat"], sort=False)["value"]
        .agg(n="count", mean="mean", std="std")
        .reset_index()
    )
    rank = {v: i for i, v in enumerate(order)}
    table = table[table["variant"].isin(list(rank))]
    table = table.assign(_rank=table["variant"].map(rank))
    return table.sort_values("_rank", kind="stable")[columns].reset_index(drop=True)
