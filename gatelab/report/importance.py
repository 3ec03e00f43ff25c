"""Hyperparameter importance by fANOVA (Hutter et al. 2014), as Greff et al. used it (section
V-B): the fraction of the variance of the metric over a random search that each hyperparameter
explains, and the largest pairwise interactions; per variant and over all variants (the variant
itself then a categorical hyperparameter).

The fANOVA is optuna's (``FanovaImportanceEvaluator``, a random forest of 64 trees, seeded):
the runs become an in-memory optuna study, each run a trial with its hyperparameters and its
metric. The hyperparameters enter in the space they were searched in (``SPACES``: the learning
rate as log10, momentum as log10(1 - momentum), the hidden size as log10), since the fANOVA
integrates over that space uniformly. Main effects come from optuna's public API; a pair's
interaction (its joint marginal variance minus both main effects) from the same forest through
optuna's ``_Fanova`` (private: where it is missing, pairs are left out and the report says so).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from itertools import combinations

import numpy as np
import pandas as pd

from gatelab.report import stats
from gatelab.report.metric import Metric

__all__ = ["SPACES", "hyperparameters", "fanova", "marginals"]

# Where each hyperparameter was searched (Greff et al.): its column, label and transform.
SPACES: dict[str, tuple[str, str, Callable[[np.ndarray], np.ndarray]]] = {
    "lr": ("hparams/lr", "log10 learning rate", np.log10),
    "hidden": ("hidden", "log10 hidden size", np.log10),
    "momentum": ("hparams/momentum", "log10 (1 - momentum)", lambda m: np.log10(1.0 - m)),
    "input_noise": ("hparams/input_noise", "input noise std", lambda x: x),
    "weight_decay": ("hparams/weight_decay", "weight decay", lambda x: x),
    "clip": ("hparams/clip", "gradient clip", lambda x: x),
}
SEED = 0
TREES = 64


def hyperparameters(used: pd.DataFrame) -> list[str]:
    """The hyperparameters of ``SPACES`` that vary among ``used`` (finite where transformed)."""
    names = []
    for name, (column, _, transform) in SPACES.items():
        if column not in used:
            continue
        with np.errstate(all="ignore"):
            values = transform(pd.to_numeric(used[column], errors="coerce").to_numpy(float))
        if np.isfinite(values).all() and np.ptp(values) > 0:
            names.append(name)
    return names


def _features(runs: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    columns = []
    for name in names:
        if name == "variant":
            continue
        column, _, transform = SPACES[name]
        columns.append(transform(pd.to_numeric(runs[column]).to_numpy(float)))
    return np.column_stack(columns) if columns else np.empty((len(runs), 0))


def _one(runs: pd.DataFrame, metric: Metric, names: list[str], with_variant: bool) -> list[dict]:
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    x = _features(runs, names)
    y = pd.to_numeric(runs[metric.key]).to_numpy(float)
    distributions: dict = {
        name: FloatDistribution(float(x[:, i].min()), float(x[:, i].max()))
        for i, name in enumerate(names)
    }
    variants = sorted(set(runs["variant"])) if with_variant else []
    if len(variants) > 1:
        distributions["variant"] = CategoricalDistribution(variants)
    study = optuna.create_study(direction="maximize" if metric.direction == "max" else "minimize")
    trials = []
    for row in range(len(runs)):
        params: dict = {name: float(x[row, i]) for i, name in enumerate(names)}
        if "variant" in distributions:
            params["variant"] = runs["variant"].iloc[row]
        trials.append(
            optuna.trial.create_trial(params=params, distributions=distributions, value=y[row])
        )
    study.add_trials(trials)
    evaluator = FanovaImportanceEvaluator(n_trees=TREES, seed=SEED)
    with warnings.catch_warnings():  # ``normalize`` is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        main = get_param_importances(study, evaluator=evaluator, normalize=False)
    found = [
        {"term": term, "fraction": float(value), "kind": "main"} for term, value in main.items()
    ]
    found += _pairs(x, y, names) if x.shape[1] >= 2 and "variant" not in distributions else []
    return found


def _pairs(x: np.ndarray, y: np.ndarray, names: Sequence[str]) -> list[dict]:
    """Each pair's interaction: its joint marginal variance minus both main effects, as a
    fraction of the variance (optuna's ``_Fanova``, the forest of the main effects' settings)."""
    try:
        from optuna.importance._fanova._fanova import _Fanova
    except ImportError:  # optuna's private module moved: pairs are left out
        return []
    forest = _Fanova(
        n_trees=TREES, max_depth=64, min_samples_split=2, min_samples_leaf=1, seed=SEED
    )
    bounds = np.column_stack([x.min(axis=0), x.max(axis=0)])
    forest.fit(x, y, bounds, [np.array([i]) for i in range(x.shape[1])])
    trees = [t for t in forest._trees if t.variance > 0]
    singles = {
        i: np.array([max(t.get_marginal_variance(np.array([i])), 0.0) / t.variance for t in trees])
        for i in range(x.shape[1])
    }
    found = []
    for i, j in combinations(range(x.shape[1]), 2):
        joint = np.array([t.get_marginal_variance(np.array([i, j])) / t.variance for t in trees])
        interaction = float(np.mean(np.clip(joint - singles[i] - singles[j], 0.0, None)))
        found.append({"term": f"{names[i]} × {names[j]}", "fraction": interaction, "kind": "pair"})
    return found


def fanova(used: pd.DataFrame, metric: Metric, order: Sequence[str]) -> pd.DataFrame:
    """Per variant (with at least 4 runs) and over all of them (``scope`` ``all``): each varying
    hyperparameter's fraction of the variance of ``metric``, and every pair's interaction.

    Returns:
        Columns ``scope, term, kind, fraction``, sorted by scope (``all`` first, then ``order``)
        and fraction; empty when nothing varies.
    """
    names = hyperparameters(used)
    rows = []
    if not names or len(used) < 4:
        return pd.DataFrame(columns=["scope", "term", "kind", "fraction"])
    scopes = [("all", used, True)] + [
        (variant, used[used["variant"] == variant], False)
        for variant in order
        if (used["variant"] == variant).sum() >= 4
    ]
    for scope, runs, with_variant in scopes:
        values = pd.to_numeric(runs[metric.key]).to_numpy(float)
        if np.ptp(values) == 0:
            continue
        for entry in _one(runs, metric, names, with_variant):
            rows.append({"scope": scope, **entry})
    table = pd.DataFrame(rows, columns=["scope", "term", "kind", "fraction"])
    rank = {scope: k for k, (scope, _, _) in enumerate(scopes)}
    table["_rank"] = table["scope"].map(rank)
    table = table.sort_values(["_rank", "kind", "fraction"], ascending=[True, True, False])
    return table.drop(columns="_rank").reset_index(drop=True)


def marginals(
    used: pd.DataFrame, metric: Metric, name: str, order: Sequence[str], bins: int = 6
) -> pd.DataFrame:
    """The metric against one hyperparameter (in its search space), per variant: the mean and a
    95% t-interval of the runs in each of ``bins`` equal-width bins (Greff et al.'s Fig. 4).

    Returns:
        Columns ``variant, x, mean, low, high, n`` (bins with fewer than two runs have no band).
    """
    column, _, transform = SPACES[name]
    x_all = transform(pd.to_numeric(used[column]).to_numpy(float))
    edges = np.linspace(x_all.min(), x_all.max(), bins + 1)
    rows = []
    for variant in order:
        runs = used[used["variant"] == variant]
        if not len(runs):
            continue
        x = transform(pd.to_numeric(runs[column]).to_numpy(float))
        y = pd.to_numeric(runs[metric.key]).to_numpy(float)
        which = np.clip(np.digitize(x, edges[1:-1]), 0, bins - 1)
        for b in range(bins):
            values = y[which == b]
            if not len(values):
                continue
            mean, low, high = stats.t_interval(values)
            rows.append(
                {
                    "variant": variant,
                    "x": float((edges[b] + edges[b + 1]) / 2),
                    "mean": mean,
                    "low": low,
                    "high": high,
                    "n": len(values),
                }
            )
    return pd.DataFrame(rows, columns=["variant", "x", "mean", "low", "high", "n"])
