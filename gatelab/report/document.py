"""``gatelab report``: records -> report.md, tables (CSV, LaTeX) and figures (PDF, PNG).

Written into ``DIR/report/``::

    report.md             the header, the comparison per view, the sentences, the figures
    table.csv, table.tex  the comparison over all trials (one row per variant)
    table_best10.*        the same over the best 10% by validation (random searches)
    runs.csv              the tidy runs table, one row per run
    gates.csv             gate statistics per variant, layer and gate
    figures/              box, box_best10, intervals, profile, curves, gates, params (.pdf, .png)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gatelab import records as record_io
from gatelab.report import (
    across,
    convergence,
    importance,
    intervals,
    load,
    stats,
    tables,
    wandb_report,
)
from gatelab.report import figures as figures_lib
from gatelab.report.analysis import (
    View,
    common,
    resolve_baseline,
    resolve_metric,
    selection_metric,
    short_labels,
    views,
)
from gatelab.report.metric import Metric, format_p, is_finite

__all__ = ["build_report"]


def build_report(
    directory: str | Path,
    baseline: str | None = None,
    metric: str | None = None,
    *,
    runs: pd.DataFrame | None = None,
    curves: pd.DataFrame | None = None,
    out: Path | None = None,
    figures: bool = True,
    wandb: str | None = None,
) -> Path:
    """Writes the report of the runs in ``directory`` (see the module docstring).

    Args:
        directory: a sweep, a two-stage sweep (``DIR/tune``, ``DIR/test``: the test stage is
            reported) or a ``gatelab train`` workdir.
        baseline: the variant every other one is tested against; default ``vanilla`` when the
            sweep has it (Greff et al.'s variants are defined against it), else the first variant.
        metric: a summary key, e.g. ``test/loss``; default ``test/<primary metric>``.
        runs: the runs table (:func:`gatelab.report.load.load_runs`, or
            :func:`gatelab.report.load.load_wandb`); read from ``directory`` when ``None``.
        curves: the curves table; read from ``directory`` with the runs, else none.
        out: the output directory; default ``directory/report``.
        figures: draw the figures (most of the time taken); without them, report.md and the
            tables only.
        wandb: ``off``, ``offline`` or ``online``: how the report is also logged as a W&B run
            of ``job_type="report"`` in the study's group (``wandb_report``); default the mode
            of the study's runs (``disabled`` runs: off).

    Returns:
        The path of ``report.md``.

    Raises:
        ValueError: for a baseline or a metric that the records do not have.
    """
    directory = Path(directory)
    records = None
    if runs is None:
        records = record_io.find(directory)
        runs = load.load_runs(records)
        if curves is None:
            curves = load.load_curves(directory, runs=runs)
    if curves is None:
        curves = _no_curves()
    sweep = dict(records.index) if records is not None else dict(runs.attrs.get("sweep", {}))
    out = Path(out) if out is not None else directory / "report"
    out.mkdir(parents=True, exist_ok=True)

    several = list(dict.fromkeys(runs["task"].dropna())) if "task" in runs else []
    if len(several) > 1 and metric is None:
        return _across_report(
            directory, records, sweep, runs, curves, baseline, out, figures, wandb
        )
    task = common(runs, "task")
    the_metric = resolve_metric(runs, metric)
    runs = runs.copy()
    # Overrides every variant shares are said once (the header), not in every label.
    labels, shared = short_labels(list(dict.fromkeys(runs["variant"])))
    if shared:
        runs["variant"] = runs["variant"].map(labels)
        curves = curves.assign(variant=curves["variant"].map(labels)) if len(curves) else curves
        baseline = labels.get(baseline, baseline) if baseline else baseline
    runs.attrs["shared_overrides"] = shared
    if the_metric.key not in runs:
        runs[the_metric.key] = math.nan  # no run got that far: counted, nothing to aggregate
    the_baseline = resolve_baseline(runs, baseline)
    order = stats.variant_order(runs, the_baseline)
    selection = selection_metric(runs, the_metric)

    sections = []
    made = []
    the_views = views(runs, the_metric, the_baseline, order, selection, sweep.get("kind"))
    progress = convergence.still_improving(the_views[0].used, curves, selection)
    for view in the_views:
        for column in progress.columns:  # the budget's verdict, from all the completed runs
            view.table[column] = progress[column].reindex(view.table.index)
        view.table["still_improving"] = view.table["still_improving"].fillna(False).astype(bool)
        tables.write_csv(view.table, the_metric, out / f"table{view.suffix}.csv")
        tables.write_tex(view.table, the_metric, the_baseline, out / f"table{view.suffix}.tex")
        figure_name = None
        if figures and len(view.used):
            figure = figures_lib.box_figure(
                [figures_lib.Panel("", view.used, view.table)], the_metric, the_baseline, order
            )
            figure_name = f"box{view.suffix}"
            figures_lib.save(figure, out / "figures" / figure_name)
            made.append(figure_name)
        sections.append(_view_section(view, the_metric, the_baseline, task, figure_name))
        if view is the_views[0]:
            interval_name = None
            if figures and len(view.used):
                figure = figures_lib.interval_figure(view.table, the_metric, the_baseline, order)
                figures_lib.save(figure, out / "figures" / "intervals")
                figure = figures_lib.profile_figure(view.used, the_metric, order)
                figures_lib.save(figure, out / "figures" / "profile")
                made += ["intervals", "profile"]
                interval_name = "intervals"
            sections.append(_interval_section(view.table, the_metric, the_baseline, interval_name))
            sections.append(_budget_section(view.table, the_metric, the_baseline, selection))

    used = the_views[0].used
    runs.to_csv(out / "runs.csv", index=False)
    lengths_text = _lengths_section(used, the_metric, order, out, figures, made)
    importance_text = None
    if sweep.get("kind") == "random":
        importance_text = _importance_section(used, the_metric, order, out, figures, made)

    # Learning curves: the validation primary metric of the runs in the means.
    band = stats.curve_band(curves, selection.key, used)
    curve_note = None
    if figures and len(band):
        figures_lib.save(
            figures_lib.curve_figure(band, selection, order), out / "figures" / "curves"
        )
        made.append("curves")
    elif not len(band):
        curve_note = f"No learning curves: no completed run logged `{selection.key}`."
    else:
        curve_note = "Figures not drawn (`figures=False`)."

    gates = stats.gate_table(used, order)
    gates.to_csv(out / "gates.csv", index=False)
    gates_averaged = stats.gate_table(used, order, average_layers=True)
    if figures and len(gates_averaged):
        figures_lib.save(figures_lib.gate_figure(gates_averaged, order), out / "figures" / "gates")
        made.append("gates")

    if figures and len(used) and "params/total" in used:
        figure = figures_lib.params_figure(used, the_views[0].table, the_metric, order)
        figures_lib.save(figure, out / "figures" / "params")
        made.append("params")

    text = [
        _header(directory, records, sweep, runs, the_metric, the_baseline, task, made, out),
        *sections,
        lengths_text,
        importance_text,
        _tuning_section(records, runs, selection, order, out, figures, made),
        _curves_section(curve_note, selection, "curves" in made),
        _gates_section(gates_averaged, order, "gates" in made),
        _params_section("params" in made, the_metric),
        _left_out_section(runs),
    ]
    path = out / "report.md"
    path.write_text("\n\n".join(t for t in text if t).rstrip() + "\n")
    root_name = records.root.name if records is not None else directory.name
    where = wandb_report.study_wandb(runs, root_name)
    mode = wandb or where["mode"]
    wandb_report.log_report(
        out,
        the_views[0].table,
        _sentences(the_views[0].table, the_metric, the_baseline, task),
        made,
        mode=mode,
        project=where["project"],
        entity=where["entity"],
        group=where["group"],
    )
    return path


# ----------------------------------------------------------------------------------------------
# Sections of report.md
# ----------------------------------------------------------------------------------------------


def _header(
    directory: Path,
    records: record_io.Study | None,
    sweep: dict[str, Any],
    runs: pd.DataFrame,
    metric: Metric,
    baseline: str,
    task: str | None,
    made: list[str],
    out: Path,
) -> str:
    counts = Counter(runs["status"])
    count_text = ", ".join(f"{counts[s]} {s}" for s in load.STATUSES if counts[s])
    lines = [f"# gatelab report: {task or 'unknown task'}", ""]
    if records is not None:
        where = f"`{records.root}`"
        if records.root != directory:
            where += " (the test stage of a two-stage sweep"
            where += f"; learning rates tuned in `{records.tune}`)" if records.tune else ")"
        lines.append(f"- Records: {where}")
    elif sweep.get("source"):  # load_wandb
        lines.append(f"- Records: {sweep['source']}")
    elif runs.attrs.get("root"):  # load_runs, passed in
        lines.append(f"- Records: `{runs.attrs['root']}`")
    if sweep.get("config"):
        config = f"`{sweep['config']}`" + (
            f" (argument `{sweep['arg']}`)" if sweep.get("arg") else ""
        )
        details = [f"kind {sweep.get('kind', '?')}", f"stage {sweep.get('stage', '?')}"]
        if sweep.get("overrides"):
            details.append("overrides " + ", ".join(f"`{o}`" for o in sweep["overrides"]))
        lines.append(f"- Sweep: {config}; {'; '.join(details)}")
    if runs.attrs.get("shared_overrides"):
        shared = ", ".join(f"`{o}`" for o in runs.attrs["shared_overrides"])
        lines.append(f"- Every variant's spec overrides: {shared} (left out of the labels)")
    varying = _varying(runs)
    if varying:
        lines.append("- Runs vary in: " + ", ".join(f"`{k}`" for k in varying))
    versions = sorted({str(v) for v in runs.get("code_version", pd.Series()).dropna()})
    if sweep.get("code_version"):
        lines.append(f"- Code version: {sweep['code_version']}")
        other = [v for v in versions if v != sweep["code_version"]]
        if other:
            lines.append("- **Runs written by other code versions**: " + "; ".join(other))
    elif versions:
        several = len(versions) > 1
        lines.append(
            ("- **Several code versions**: " if several else "- Code version: ")
            + "; ".join(versions)
        )
    machines = sorted({str(m) for m in runs.get("config/resolved.machine", pd.Series()).dropna()})
    if len(machines) > 1:  # records before the machine was recorded have none
        lines.append(
            "- **Runs from several machines** ("
            + "; ".join(machines)
            + "): XLA compiles for each machine's instruction set, so a seed trains to other "
            "numbers on each; the spread between them is not all the variants'"
        )
    elif machines:
        lines.append(f"- Machine: {machines[0]}")
    tasks = sorted({str(t) for t in runs.get("task", pd.Series()).dropna()})
    if len(tasks) > 1:
        lines.append(f"- **Several tasks in one report** ({', '.join(tasks)}): numbers mix them.")
    chance = (
        f"; chance level {metric.format(metric.chance, 1 if metric.percent else 4)}"
        if metric.chance is not None
        else ""
    )
    lines.append(f"- Metric: {metric.words} (`{metric.key}`, {metric.direction_words}){chance}")
    lines.append(f"- Baseline: {baseline}")
    lines.append(f"- Runs: {len(runs)} ({count_text})")
    excluded = counts["diverged"] + counts["failed"] + counts["pending"] + counts["running"]
    if excluded:
        lines.append(
            f"- {_excluded_words(counts)}: counted in the tables, left out of every mean, "
            "median, test and figure (listed at the end)."
        )
    if made:
        listed = ", ".join(f"`{name}`" for name in made)
        lines.append(f"- Figures: `{out / 'figures'}/` ({listed}; PDF and PNG)")
    lines.append(
        "- Tables: `table.csv` (raw values: an accuracy is a fraction) and `table.tex` (booktabs)"
        "; `runs.csv` has one row per run"
    )
    for note in dict.fromkeys(runs.get("task_note", pd.Series(dtype=object)).dropna()):
        lines += ["", f"> **Note:** {note}"]  # what the task says every report must say
    return "\n".join(lines)


def _view_section(
    view: View, metric: Metric, baseline: str, task: str | None, figure_name: str | None
) -> str:
    table = view.table
    headers, rows, align = tables.comparison_rows(table, metric, baseline)
    tested = int(np.isfinite(table["p"]).sum())
    lines = [f"## {view.title}", "", view.note, "", tables.markdown(rows, headers, align), ""]
    lines.append(
        "Mean ± sample standard deviation (ddof = 1), median and best over the n completed runs "
        f"used. p: Welch's t-test (two-sided, unequal variances) against {baseline}; "
        f"p (Holm): Holm-Bonferroni-adjusted over the m = {tested} variants tested; significant "
        f"when p (Holm) < {stats.ALPHA}."
        + (
            " §: still improving at the end of the budget (see Convergence and budget)."
            if "still_improving" in table and table["still_improving"].any()
            else ""
        )
    )
    lines.append("")
    lines += _sentences(table, metric, baseline, task)
    if figure_name:
        lines += [
            "",
            f"![{view.title}: {metric.words} per variant](figures/{figure_name}.png)",
            "",
            f"*`figures/{figure_name}.pdf`: a box per variant (quartiles, whiskers at 1.5 IQR) "
            f"and every run as a point; dashed: the {baseline} median; blue, thick: significant "
            "(Holm-adjusted p < 0.05).*",
        ]
    return "\n".join(lines)


def _across_report(
    directory: Path,
    records: record_io.Study | None,
    sweep: dict[str, Any],
    runs: pd.DataFrame,
    curves: pd.DataFrame,
    baseline: str | None,
    out: Path,
    figures: bool,
    wandb: str | None,
) -> Path:
    """A study across tasks: each task's full report in ``out/tasks/<task>/``, and here every
    task's comparison side by side and the aggregate over tasks (``across``)."""
    tasks = across.tasks_of(runs, baseline)
    the_baseline = tasks[0].baseline
    order = stats.variant_order(runs, the_baseline)
    per_task = {}
    for task in tasks:
        names = set(task.runs["name"])
        own_curves = curves[curves["run"].isin(names)] if len(curves) else curves
        build_report(
            directory,
            the_baseline,
            runs=task.runs.copy(),
            curves=own_curves,
            out=out / "tasks" / task.name,
            figures=figures,
            wandb="off",
        )
        per_task[task.name] = stats.compare(task.runs, task.metric, task.baseline, order)
    summary = across.aggregate(tasks, order, the_baseline)
    tables.write_csv(summary, Metric("normalised", "max"), out / "table.csv")
    runs.to_csv(out / "runs.csv", index=False)
    made = []
    if figures and len(summary):
        scores = across.normalised(tasks, order)
        figure = figures_lib.across_figure(summary, scores, the_baseline, order)
        figures_lib.save(figure, out / "figures" / "tasks")
        made.append("tasks")

    counts = Counter(runs["status"])
    lines = [f"# gatelab report: {len(tasks)} tasks ({', '.join(t.name for t in tasks)})", ""]
    if records is not None:
        lines.append(f"- Records: `{records.root}`")
    if sweep.get("config"):
        lines.append(
            f"- Sweep: `{sweep['config']}`"
            + (f" (argument `{sweep['arg']}`)" if sweep.get("arg") else "")
        )
    lines.append(f"- Baseline: {the_baseline}")
    lines.append(
        f"- Runs: {len(runs)} ("
        + ", ".join(f"{counts[s]} {s}" for s in load.STATUSES if counts[s])
        + ")"
    )
    lines.append(
        "- Each task's own report (tables, intervals, budget, curves, gates): "
        + ", ".join(f"`tasks/{t.name}/report.md`" for t in tasks)
    )
    lines += ["", "## Per task", ""]
    headers = ["variant"] + [f"{t.name}: {t.metric.words}" for t in tasks]
    body = []
    for variant in order:
        cells = [str(variant) + (" (baseline)" if variant == the_baseline else "")]
        for task in tasks:
            table = per_task[task.name]
            if variant not in table.index or not table.loc[variant, "n"]:
                cells.append("")
                continue
            row = table.loc[variant]
            decimals = task.metric.decimals(table["std"], table["mean"])
            text = task.metric.format_mean_std(row["mean"], row["std"], decimals)
            text += {"better": " ↑", "worse": " ↓"}.get(row["verdict"], "")
            cells.append(text)
        body.append(cells)
    lines += [tables.markdown(body, headers, "l" + "r" * len(tasks)), ""]
    lines.append(
        f"Mean ± std per task; ↑/↓: significantly better/worse than {the_baseline} on that task "
        "(Welch's t-test, Holm-adjusted over the variants of the task, p < 0.05)."
    )
    lines += ["", "## Across tasks", ""]
    skipped = [f"{t.name} ({t.why_not})" for t in tasks if t.why_not]
    if skipped:
        lines.append("Left out of the aggregate: " + ", ".join(skipped) + ".")
        lines.append("")
    if len(summary):

        def shown(value, low, high) -> str:
            if not is_finite(value):
                return ""
            text = f"{value:.2f}"
            return text + (f" [{low:.2f}, {high:.2f}]" if is_finite(low) else "")

        body = [
            [
                str(variant),
                str(int(row["tasks"])),
                str(int(row["n"])),
                shown(row["mean"], row["mean_lo"], row["mean_hi"]),
                shown(row["iqm"], row["iqm_lo"], row["iqm_hi"]),
                shown(row["poi"], row["poi_lo"], row["poi_hi"]),
                row["note"],
            ]
            for variant, row in summary.iterrows()
        ]
        headers = [
            "variant",
            "tasks",
            "runs",
            "normalised mean [95% CI]",
            "normalised IQM [95% CI]",
        ]
        headers += [f"P(beats {the_baseline}) [95% CI]", "note"]
        lines += [tables.markdown(body, headers, "lrrrrrl"), ""]
        lines.append(
            "Scores normalised per task between chance (0) and the baseline's mean (1), "
            "whatever the metric's direction, so that tasks with different metrics combine; "
            "the mean and IQM over every run of every task; P(beats): the probability that a run "
            f"of the variant beats a run of {the_baseline}, averaged over tasks. Intervals: "
            "percentile bootstrap (2,000 resamples, seeded) stratified by task, each task's "
            "runs resampled on their own."
        )
    if "tasks" in made:
        lines += ["", "![Every variant's normalised score per task](figures/tasks.png)"]
    left = _left_out_section(runs)
    text = "\n".join(lines) + ("\n\n" + left if left else "")
    path = out / "report.md"
    path.write_text(text.rstrip() + "\n")
    root_name = records.root.name if records is not None else directory.name
    where = wandb_report.study_wandb(runs, root_name)
    wandb_report.log_report(
        out,
        summary,
        [
            f"{variant}: normalised mean {row['mean']:.2f}, P(beats {the_baseline}) "
            f"{row['poi']:.2f} over {int(row['tasks'])} tasks"
            for variant, row in summary.iterrows()
            if is_finite(row["poi"])
        ],
        made,
        mode=wandb or where["mode"],
        project=where["project"],
        entity=where["entity"],
        group=where["group"],
    )
    return path


def _interval_section(
    table: pd.DataFrame, metric: Metric, baseline: str, figure_name: str | None
) -> str:
    """Mean, median and IQM with bootstrap 95% intervals, and the probability of improvement."""
    decimals = metric.decimals(table["std"], table["mean"])
    better = ">" if metric.direction == "max" else "<"

    def shown(value: float, low: float, high: float) -> str:
        if not is_finite(value):
            return ""
        text = metric.format(value, decimals)
        if is_finite(low) and is_finite(high):
            text += f" [{metric.format(low, decimals)}, {metric.format(high, decimals)}]"
        return text

    rows = []
    for variant, row in table.iterrows():
        poi = ""
        if variant != baseline and is_finite(row["poi"]):
            poi = f"{row['poi']:.2f}"
            if is_finite(row["poi_lo"]):
                poi += f" [{row['poi_lo']:.2f}, {row['poi_hi']:.2f}]"
        rows.append(
            [
                str(variant) + (" (baseline)" if variant == baseline else ""),
                str(int(row["n"])),
                shown(row["mean"], row["mean_lo"], row["mean_hi"]),
                shown(row["median"], row["median_lo"], row["median_hi"]),
                shown(row["iqm"], row["iqm_lo"], row["iqm_hi"]),
                poi,
                row["interval_note"] or "",
            ]
        )
    headers = ["variant", "n", "mean [95% CI]", "median [95% CI]", "IQM [95% CI]"]
    headers += [f"P(X {better} {baseline}) [95% CI]", "note"]
    lines = ["## Interval estimates", "", tables.markdown(rows, headers, "lrrrrrl"), ""]
    lines.append(
        "Percentile-bootstrap 95% confidence intervals over runs (2,000 resamples, seeded: the "
        "same records give the same intervals). IQM: the interquartile mean, the mean of the "
        f"middle 50% of runs, robust to an outlying seed. P(X {better} {baseline}): the "
        f"probability that a run of the variant beats a run of {baseline} (ties count one "
        "half; 0.5 is no difference), with both sides resampled (Agarwal et al. 2021, "
        '"Deep RL at the edge of the statistical precipice"). An interval that excludes '
        "0.5 is evidence of a difference that does not depend on a t-test's assumptions."
    )
    if figure_name:
        lines += [
            "",
            f"![Interval estimates per variant](figures/{figure_name}.png)",
            "",
            f"*`figures/{figure_name}.pdf`: per variant the mean, median and IQM (ticks) with "
            f"their 95% intervals (bars), {baseline}'s interval as a grey band; right, the "
            "probability of improvement, 0.5 dashed. `figures/profile.pdf`: the performance "
            "profile, the fraction of each variant's runs beyond every score, with 95% bands.*",
        ]
    return "\n".join(lines)


def _lengths_section(
    used: pd.DataFrame,
    metric: Metric,
    order: Sequence[str],
    out: Path,
    figures: bool,
    made: list[str],
) -> str | None:
    """Length generalisation: the metric at every test length (``test/<m>@<T>``) per variant."""
    prefix = f"{metric.key}@"
    lengths = sorted(int(c.removeprefix(prefix)) for c in used if c.startswith(prefix))
    if not lengths:
        return None
    trained_column = next(
        (c for c in ("config/task.args.length", "config/task.args.delay") if c in used), None
    )
    trained = common(used, trained_column) if trained_column else None
    rows = []
    for variant in order:
        own = used[used["variant"] == variant]
        if not len(own):
            continue
        columns = [(int(trained), metric.key)] if trained is not None else []
        columns += [(length, f"{prefix}{length}") for length in lengths]
        for length, column in columns:
            values = pd.to_numeric(own[column], errors="coerce").dropna().to_numpy(float)
            estimate = intervals.interval(values, "mean")
            rows.append(
                {
                    "variant": variant,
                    "length": length,
                    "mean": estimate.estimate,
                    "low": estimate.low,
                    "high": estimate.high,
                    "n": len(values),
                    "trained": column == metric.key,
                }
            )
    table = pd.DataFrame(rows).drop_duplicates(["variant", "length"])
    table.to_csv(out / "lengths.csv", index=False)
    shown = sorted(set(table["length"]))
    decimals = metric.decimals(pd.Series(dtype=float), table["mean"])
    body = []
    for variant in dict.fromkeys(table["variant"]):
        own = table[table["variant"] == variant].set_index("length")
        cells = []
        for length in shown:
            if length not in own.index:
                cells.append("")
                continue
            row = own.loc[length]
            text = metric.format(row["mean"], decimals)
            if is_finite(row["low"]):
                text += f" [{metric.format(row['low'], decimals)}, "
                text += f"{metric.format(row['high'], decimals)}]"
            cells.append(text)
        body.append([str(variant), *cells])
    headers = ["variant"] + [
        f"T = {length}" + (" (trained)" if trained is not None and length == int(trained) else "")
        for length in shown
    ]
    lines = ["## Length generalisation", ""]
    lines += [tables.markdown(body, headers, "l" + "r" * len(shown)), ""]
    lines.append(
        f"{metric.words.capitalize()} at each test length, at the parameters of the best "
        "validation step (trained at one length, tested at the others without any further "
        "training): mean over runs [bootstrap 95% CI]. `lengths.csv` has the numbers."
    )
    if figures:
        figures_lib.save(figures_lib.length_figure(table, metric, order), out / "figures/lengths")
        made.append("lengths")
        lines += ["", "![The metric against the test length](figures/lengths.png)"]
    return "\n".join(lines)


def _importance_section(
    used: pd.DataFrame,
    metric: Metric,
    order: Sequence[str],
    out: Path,
    figures: bool,
    made: list[str],
) -> str:
    """fANOVA importances of a random search's hyperparameters, and the marginal plots."""
    lines = ["## Hyperparameter importance (fANOVA)", ""]
    table = importance.fanova(used, metric, order)
    table.to_csv(out / "importance.csv", index=False)
    if not len(table):
        lines.append("No importances: fewer than 4 completed runs, or no hyperparameter varies.")
        return "\n".join(lines)
    names = list(dict.fromkeys(table.loc[table["kind"] == "main", "term"]))
    names = [n for n in names if n != "variant"] + (["variant"] if "variant" in names else [])
    scopes = list(dict.fromkeys(table["scope"]))
    rows = []
    for scope in scopes:
        own = table[table["scope"] == scope].set_index("term")["fraction"]
        pairs = table[(table["scope"] == scope) & (table["kind"] == "pair")]
        top = pairs.head(1)
        rows.append(
            [scope if scope != "all" else "all variants"]
            + [f"{own[n]:.0%}" if n in own else "" for n in names]
            + [f"{top['term'].iloc[0]} ({top['fraction'].iloc[0]:.0%})" if len(top) else ""]
        )
    headers = ["runs of", *names, "largest pair interaction"]
    lines += [tables.markdown(rows, headers, "l" + "r" * len(names) + "l"), ""]
    lines.append(
        f"The fraction of the variance of {metric.words} explained by each hyperparameter alone "
        "(main effects) and by the largest pairwise interaction beyond them, by fANOVA (optuna's "
        "FanovaImportanceEvaluator, 64 trees, seeded), per variant with at least 4 runs and "
        "over all of them (where the variant is a hyperparameter too). Hyperparameters enter in "
        "the space they were searched in: the learning rate, 1 - momentum and the hidden size "
        "as log10. Greff et al. found the learning rate by far the most important (about two "
        "thirds of the variance), then the hidden size; interactions small. `importance.csv` "
        "has every term."
    )
    if figures:
        figures_lib.save(figures_lib.importance_figure(table, order), out / "figures/importance")
        varying = importance.hyperparameters(used)
        curves = {name: importance.marginals(used, metric, name, order) for name in varying}
        labels = {name: importance.SPACES[name][1] for name in varying}
        figure = figures_lib.marginals_figure(curves, labels, metric, order)
        figures_lib.save(figure, out / "figures/marginals")
        made += ["importance", "marginals"]
        lines += [
            "",
            "![Hyperparameter importance](figures/importance.png)",
            "",
            "![The metric against each hyperparameter](figures/marginals.png)",
            "",
            "*`figures/importance.pdf`: bars, over all variants; markers, per variant. "
            "`figures/marginals.pdf`: per variant the mean of the runs in each of 6 equal bins "
            "of the hyperparameter, with a 95% t-interval band (Greff et al., Fig. 4).*",
        ]
    return "\n".join(lines)


def _budget_section(
    table: pd.DataFrame, metric: Metric, baseline: str, selection: Metric
) -> str | None:
    """Which variants were still improving at the end of the budget, and which verdicts hold
    only at this budget."""
    if "still_improving" not in table or not table["n"].gt(0).any():
        return None
    budgets = sorted({int(b) for b in table["budget"].dropna()})
    budget = f"{budgets[-1]:,d} steps" if budgets else "the budget"
    improving = [str(v) for v, row in table.iterrows() if row["still_improving"]]
    lines = ["## Convergence and budget", ""]
    if not improving:
        lines.append(
            f"No variant was still improving at {budget}: in every variant most runs had their "
            f"best `{selection.key}` before the last evaluation, and no trend over the last "
            "fifth of training is clearly improving. The verdicts above compare trained models."
        )
        return "\n".join(lines)
    rows = [
        [
            str(variant),
            "yes" if row["still_improving"] else "no",
            f"{row['best_at_end']:.0%}" if is_finite(row["best_at_end"]) else "",
            format_p(row["trend_p"]) if is_finite(row["trend_p"]) else "",
        ]
        for variant, row in table.iterrows()
        if row["n"] > 0
    ]
    headers = ["variant", "still improving", "runs best at the last evaluation", "trend p"]
    lines += [tables.markdown(rows, headers, "llrr"), ""]
    lines.append(
        f"**Still improving at {budget}**: {', '.join(improving)} ({len(improving)} of "
        f"{len(rows)} variants). A variant is still improving when most of its runs had their "
        f"best `{selection.key}` at the last evaluation, or when the slopes of `{selection.key}` "
        "over the last fifth of training (at least three evaluations) are positive in the "
        f"better direction (trend p: one-sided t-test over runs, p < {convergence.ALPHA})."
    )
    base_improving = baseline in improving
    verdicts = [
        str(v)
        for v, row in table.iterrows()
        if v != baseline and row["significant"] and (row["still_improving"] or base_improving)
    ]
    lines.append("")
    if verdicts:
        lines.append(
            f"These verdicts hold only at this budget: {', '.join(verdicts)} against {baseline}. "
            f"With {'the baseline' if base_improving else 'the variant'} still improving, a "
            "difference may reflect the speed of learning rather than what the cell can "
            "learn; train longer (or compare learning curves) before concluding."
        )
    else:
        lines.append(
            "No significant verdict involves a variant that was still improving; the "
            "differences that are not significant may still change with a longer budget."
        )
    return "\n".join(lines)


def _sentences(table: pd.DataFrame, metric: Metric, baseline: str, task: str | None) -> list[str]:
    """A sentence per significant variant; then those not significant and those not tested."""
    if len(table) == 1:
        return ["- One variant only: nothing to test."]
    if baseline not in table.index or table.loc[baseline, "n"] < 2:
        return [f"- No tests: {baseline} has fewer than 2 completed runs."]
    decimals = metric.decimals(table["std"], table["mean"])
    base = table.loc[baseline]
    base_text = metric.format_mean_std(base["mean"], base["std"], decimals)
    lines, plain, untested = [], [], []
    for variant, row in table.iterrows():
        if variant == baseline:
            continue
        if not math.isfinite(row["p"]):
            untested.append(str(variant))
        elif row["significant"]:
            caveat = ""
            if row.get("still_improving") or base.get("still_improving"):
                who = variant if row.get("still_improving") else baseline
                budget = row.get("budget")
                at = f" at {int(budget):,d} steps" if is_finite(budget) else ""
                caveat = (
                    f"; {who} was still improving{at}: the difference may reflect speed of "
                    "learning, not capacity"
                )
            lines.append(
                f"- {variant} is significantly {row['verdict']} than {baseline}"
                f"{f' on {task}' if task else ''}: "
                f"{metric.format_mean_std(row['mean'], row['std'], decimals)} vs {base_text}, "
                f"p = {format_p(row['p_holm'])} (Holm-adjusted){caveat}."
            )
        else:
            plain.append(f"{variant} (p = {format_p(row['p_holm'])})")
    if not lines:
        lines.append(f"- No variant differs significantly from {baseline}.")
    if plain:
        lines.append(
            f"- Not significantly different from {baseline} (Holm-adjusted p ≥ {stats.ALPHA}): "
            + ", ".join(plain)
            + "."
        )
    if untested:
        lines.append(
            "- Not tested (fewer than 2 completed runs, or no spread on either side): "
            + ", ".join(untested)
            + "."
        )
    return lines


def _tuning_section(
    records: record_io.Study | None,
    runs: pd.DataFrame,
    selection: Metric,
    order: Sequence[str] = (),
    out: Path | None = None,
    figures: bool = False,
    made: list[str] | None = None,
) -> str | None:
    """The learning rate chosen per setting in ``DIR/tune`` (``records.best_learning_rates``,
    which the test stage trained at) and the one its test runs used."""
    if records is None or records.tune is None:
        return None
    chosen = record_io.best_learning_rates(records.tune)
    lr = "hparams/lr"
    if not chosen:
        return f"## Learning-rate tuning\n\n`{records.tune}` records no `{lr}`."
    rows = []
    for tuned in chosen:
        if tuned.lr is None:
            best = "n/a (no completed run)"
        else:
            mean, count = tuned.means[tuned.lr]
            decimals = selection.decimals([], [m for m, _ in tuned.means.values()])
            best = f"{tuned.lr:.3g} ({selection.format(mean, decimals)}, n = {count})"
        in_test = runs.loc[runs["variant"] == tuned.variant, lr] if lr in runs else pd.Series()
        test_lrs = sorted(pd.to_numeric(in_test, errors="coerce").dropna().unique())
        rows.append(
            [
                tuned.variant,
                ", ".join(f"{v:.3g}" for v in tuned.tried),
                best,
                ", ".join(f"{v:.3g}" for v in test_lrs) or "(not in the test stage)",
            ]
        )
    headers = [
        "variant",
        "learning rates tried",
        f"best by mean {selection.words} (value, n)",
        "used in the test stage",
    ]
    lines = [
        "## Learning-rate tuning",
        "",
        f"From `{records.tune}`: completed runs only, mean over seeds per learning rate.",
        "",
        tables.markdown(rows, headers),
    ]
    if figures and out is not None:
        frame = _tuning_frame(chosen)
        if len(frame):
            figure = figures_lib.lr_figure(frame, selection, [*order, *frame["variant"]])
            figures_lib.save(figure, out / "figures" / "tuning")
            if made is not None:
                made.append("tuning")
            lines += [
                "",
                "![The validation metric against the learning rate](figures/tuning.png)",
                "",
                f"*`figures/tuning.pdf`: per variant the mean `{selection.key}` over seeds at each "
                "learning rate with a 95% t-interval band; ringed, the rate the test stage used.*",
            ]
    return "\n".join(lines)


def _tuning_frame(chosen: list[record_io.TunedRate]) -> pd.DataFrame:
    """Per tuned setting and learning rate: the mean, a 95% t-interval and n of its completed
    runs' validation values (``TunedRate.values``)."""
    rows = []
    for tuned in chosen:
        for lr, values in tuned.values.items():
            mean, low, high = stats.t_interval(values)
            rows.append(
                {
                    "variant": tuned.variant,
                    "lr": lr,
                    "mean": mean,
                    "low": low,
                    "high": high,
                    "n": len(values),
                    "chosen": lr == tuned.lr,
                }
            )
    return pd.DataFrame(rows)


def _curves_section(note: str | None, selection: Metric, made: bool) -> str:
    lines = ["## Learning curves", ""]
    if not made:
        return "\n".join([*lines, note or "No learning curves."])
    lines += [
        f"![{selection.words} against the training step](figures/curves.png)",
        "",
        f"*`figures/curves.pdf`: {selection.words} of the completed runs against the training "
        "step; the line is the mean over runs, the band a 95% t-interval of the mean "
        "(mean ± t(0.975, n-1) · s/√n, drawn where n ≥ 2).*",
    ]
    return "\n".join(lines)


def _gates_section(gates: pd.DataFrame, order: Sequence[str], made: bool) -> str | None:
    if not len(gates):
        return None
    names = list(dict.fromkeys(gates["gate"]))
    names = sorted(
        names,
        key=lambda g: (
            list(figures_lib.GATE_COLORS).index(g) if g in figures_lib.GATE_COLORS else 99,
            g,
        ),
    )
    cell = gates.set_index(["variant", "gate", "stat"])["mean"]
    rows = []
    for variant in order:
        if variant not in set(gates["variant"]):
            continue
        row = [variant]
        for gate in names:
            if (variant, gate, "mean") in cell.index:
                row.append(
                    f"{cell[(variant, gate, 'mean')]:.2f} "
                    f"({cell[(variant, gate, 'low')]:.0%} / {cell[(variant, gate, 'high')]:.0%})"
                )
            else:
                row.append("—")
        rows.append(row)
    lines = [
        "## Gate statistics",
        "",
        "Mean activation (fraction < 0.1 / fraction > 0.9) of each gate at the end of training, "
        "averaged over layers, directions and completed runs; — : the variant has no such gate. "
        "Per layer: `gates.csv`.",
        "",
        tables.markdown(rows, ["variant", *names]),
    ]
    if made:
        lines += ["", "![gate statistics](figures/gates.png)"]
    return "\n".join(lines)


def _params_section(made: bool, metric: Metric) -> str | None:
    if not made:
        return None
    return "\n".join(
        [
            "## Metric and parameters",
            "",
            f"![{metric.words} against the parameter count](figures/params.png)",
            "",
            "*`figures/params.pdf`: every completed run (faint) and each variant's mean ± std.*",
        ]
    )


def _left_out_section(runs: pd.DataFrame) -> str | None:
    left = runs[runs["status"] != "completed"]
    if not len(left):
        return None
    rows = []
    for _, run in left.iterrows():
        if run["status"] == "diverged":
            step = run.get("diverged_step")
            detail = (
                f"loss non-finite at step {int(step)}" if is_finite(step) else "loss non-finite"
            )
        elif run["status"] == "failed":
            error = run.get("error")
            detail = (
                str(error).splitlines()[0] if isinstance(error, str) and error else "no summary"
            )
        elif run["status"] == "running":
            detail = "still running (or stopped without a final summary)"
        else:
            detail = "never started"
        seed = "" if pd.isna(run["seed"]) else str(int(run["seed"]))
        rows.append([f"`{run['name']}`", str(run["variant"]), seed, str(run["status"]), detail])
    return "\n".join(
        [
            "## Runs left out",
            "",
            tables.markdown(rows, ["run", "variant", "seed", "status", "detail"]),
        ]
    )


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _varying(runs: pd.DataFrame) -> list[str]:
    """The override keys (and the seed) that take more than one value across the runs (a key
    some runs leave at its default counts as varying)."""
    keys = [c for c in runs.columns if c.startswith("override/")]
    values = lambda c: runs[c].astype(str).fillna("<default>")  # noqa: E731  (pandas 3 keeps NaN)
    varying = [c.removeprefix("override/") for c in keys if values(c).nunique() > 1]
    if "seed" not in varying and runs["seed"].nunique() > 1:
        varying.append("seed")
    return varying


def _excluded_words(counts: Counter) -> str:
    words = [f"{counts[s]} {s}" for s in ("diverged", "failed", "running", "pending") if counts[s]]
    return ", ".join(words)


def _no_curves() -> pd.DataFrame:
    columns = ["run", "variant", "seed", "status", "step", "key", "value"]
    return pd.DataFrame({c: pd.Series(dtype=float if c == "value" else object) for c in columns})
