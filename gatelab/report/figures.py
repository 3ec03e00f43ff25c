"""The report's figures, in one style, for a single-column paper width.

Every figure is a ``matplotlib.figure.Figure`` built inside :func:`style` (an ``rc_context``), so
making one changes no global matplotlib state and needs no pyplot backend. Figures are saved as
PDF and PNG by :func:`save`, byte-identical for the same records: jitter comes from seeded
generators, PDFs carry no creation date, PNGs no software tag.

The figures:

* :func:`box_figure`: Greff et al.'s Fig. 3: per variant a box (quartiles, whiskers at 1.5 IQR)
  with every run as a jittered point; the baseline's median dashed, the chance level dotted;
  variants significantly different from the baseline (Holm-adjusted Welch p < 0.05) in blue with
  thick lines, as in the paper.
* :func:`curve_figure`: the validation metric against the training step, mean over runs with a
  95% t-interval band.
* :func:`gate_figure`: mean activation and saturation of every gate at the end of training.
* :func:`params_figure`: the metric against the parameter count.
* :func:`interval_figure`: mean, median and IQM with bootstrap 95% intervals per variant, the
  baseline's as a band, and the probability of improvement over the baseline.
* :func:`profile_figure`: the performance profile (fraction of runs beating each score) with
  bootstrap bands.
* :func:`importance_figure`: fANOVA importances of a random search's hyperparameters.
* :func:`marginals_figure`: the metric against each hyperparameter per variant (Greff's Fig. 4).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import matplotlib
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from gatelab.report.metric import Metric

__all__ = [
    "STYLE",
    "WIDTH",
    "OKABE_ITO",
    "Panel",
    "style",
    "save",
    "variant_styles",
    "legend",
    "box_figure",
    "curve_figure",
    "gate_figure",
    "params_figure",
    "interval_figure",
    "profile_figure",
    "importance_figure",
    "marginals_figure",
    "length_figure",
    "lr_figure",
    "across_figure",
]

WIDTH = 3.4  # inches: one column of a two-column paper (NeurIPS/ICML/IEEE are 3.25-3.5 in)
# Okabe & Ito's colour-blind-safe palette; black first (the baseline), yellow last (weak on white).
OKABE_ITO = ["#000000", "#E69F00", "#56B4E9", "#009E73", "#D55E00", "#0072B2", "#CC79A7", "#F0E442"]
# Per variant: Okabe-Ito with grey added before yellow, so that Greff et al.'s nine (vanilla and
# eight variants) each get their own colour.
VARIANT_COLORS = [*OKABE_ITO[:7], "#999999", OKABE_ITO[7]]
SIGNIFICANT = "#0072B2"  # Greff et al. Fig. 3 marks significant variants in blue
PLAIN = "#6b6b6b"
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "h", "*"]
GATE_COLORS = {
    "input": "#E69F00",
    "forget": "#0072B2",
    "output": "#009E73",
    "update": "#CC79A7",
    "reset": "#D55E00",
}

STYLE: dict[str, object] = {
    "font.family": "DejaVu Sans",  # shipped with matplotlib: the same glyphs on every machine
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "legend.handlelength": 1.6,
    "legend.columnspacing": 1.0,
    "axes.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "axes.axisbelow": True,
    "grid.color": "#e3e3e3",
    "grid.linewidth": 0.5,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "lines.linewidth": 1.0,
    "lines.markersize": 3,
    "axes.prop_cycle": matplotlib.cycler(color=OKABE_ITO),
    "figure.dpi": 100,
    "savefig.dpi": 300,
    "pdf.fonttype": 42,  # TrueType: text stays text in the PDF (editable, searchable)
    "ps.fonttype": 42,
    "svg.hashsalt": "gatelab",  # deterministic SVG ids, for whoever saves one
    "svg.fonttype": "none",
}


@contextlib.contextmanager
def style() -> Iterator[None]:
    """Applies :data:`STYLE` for the figures made (and saved) inside it."""
    with matplotlib.rc_context(STYLE):
        yield


def save(figure: Figure, stem: str | Path) -> list[Path]:
    """Writes ``stem.pdf`` and ``stem.png``; both are byte-identical for the same figure.

    Returns:
        The two paths.
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".pdf"), stem.with_suffix(".png")]
    with style():
        # No creation date, no software version: the file depends on the records only.
        figure.savefig(paths[0], metadata={"CreationDate": None, "Producer": None})
        figure.savefig(paths[1], metadata={"Software": None})
    return paths


def variant_styles(order: Sequence[str]) -> dict[str, dict[str, object]]:
    """A colour, marker, line style and marker fill per variant, in ``order`` (baseline: black).

    Beyond nine variants the colours and markers repeat, with hollow markers and dashed lines.
    """
    styles = {}
    for i, variant in enumerate(order):
        first = i < len(VARIANT_COLORS)
        styles[variant] = {
            "color": VARIANT_COLORS[i % len(VARIANT_COLORS)],
            "marker": MARKERS[i % len(MARKERS)],
            "linestyle": "-" if first else "--",
            "fill": "full" if first else "none",
        }
    return styles


def legend(figure: Figure, handles: list, most: int) -> None:
    """A legend above the axes, in as many columns (up to ``most``) as the figure's width holds.

    Labels differ in length (``gru_reset_before``), so the columns are measured, not guessed.
    """
    renderer = FigureCanvasAgg(figure).get_renderer()
    available = figure.get_figwidth() * figure.dpi
    for ncol in range(max(min(most, len(handles)), 1), 0, -1):
        box = figure.legend(handles=handles, loc="outside upper center", ncol=ncol)
        if ncol == 1 or box.get_window_extent(renderer).width <= 0.98 * available:
            return
        box.remove()


@dataclasses.dataclass(frozen=True)
class Panel:
    """One box plot panel: the runs shown and their comparison with the baseline.

    Attributes:
        title: e.g. ``all trials`` or ``best 10% by validation``.
        used: the runs whose values are drawn (completed, finite metric).
        table: :func:`gatelab.report.stats.compare` of those runs (``significant``, ``diverged``
            and ``failed`` per variant).
    """

    title: str
    used: pd.DataFrame
    table: pd.DataFrame


def box_figure(
    panels: Sequence[Panel],
    metric: Metric,
    baseline: str,
    order: Sequence[str],
    width: float = WIDTH,
    height: float = 2.3,
) -> Figure:
    """Greff et al.'s Fig. 3: per variant a box and every run as a point; panels side by side.

    Args:
        panels: one per view (all trials; best 10%); each gets an axes.
        metric: the metric on the y axis.
        baseline: its median is the dashed line.
        order: the variants from left to right.
        width, height: inches; pass ``2 * WIDTH`` for a two-panel figure across both columns.
    """
    with style():
        figure = Figure(figsize=(width, height), layout="constrained")
        axes = figure.subplots(1, len(panels), squeeze=False)[0]
        for ax, panel in zip(axes, panels, strict=True):
            _box_panel(ax, panel, metric, baseline, order)
        axes[0].set_ylabel(metric.label)
        handles = [
            Line2D(
                [], [], color="#333333", linestyle="--", linewidth=0.8, label=f"{baseline} median"
            )
        ]
        chance = _chance_handle(axes, metric)
        if chance is not None:
            handles.append(chance)
        if any(bool(p.table["significant"].any()) for p in panels):
            handles.append(
                Patch(
                    facecolor="#d6e6f2",
                    edgecolor=SIGNIFICANT,
                    linewidth=1.4,
                    label="Holm p < 0.05",
                )
            )
        legend(figure, handles, len(handles))
    return figure


def _box_panel(ax, panel: Panel, metric: Metric, baseline: str, order: Sequence[str]) -> None:
    table, used = panel.table, panel.used
    for i, variant in enumerate(order):
        values = (
            pd.to_numeric(used.loc[used["variant"] == variant, metric.key]).to_numpy(float)
            * metric.scale
        )
        if not len(values):
            continue
        significant = variant in table.index and bool(table.loc[variant, "significant"])
        color = SIGNIFICANT if significant else ("#000000" if variant == baseline else PLAIN)
        thick = 1.4 if significant else 0.8
        ax.boxplot(
            [values],
            positions=[i],
            widths=0.6,
            showfliers=False,  # every run is drawn as a point
            patch_artist=True,
            boxprops={
                "facecolor": "#d6e6f2" if significant else "white",
                "edgecolor": color,
                "linewidth": thick,
            },
            whiskerprops={"color": color, "linewidth": thick},
            capprops={"color": color, "linewidth": thick},
            medianprops={"color": color, "linewidth": thick + 0.4},
        )
        # Jitter seeded by the variant's name: the same records give the same picture whatever
        # the variant's position.
        rng = np.random.default_rng(zlib.crc32(variant.encode()))
        jitter = rng.uniform(-0.17, 0.17, len(values))
        ax.scatter(i + jitter, values, s=8, color=color, alpha=0.75, linewidths=0, zorder=3)
    base = used.loc[used["variant"] == baseline, metric.key]
    if len(base):
        ax.axhline(
            float(np.median(pd.to_numeric(base))) * metric.scale,
            color="#333333",
            linestyle="--",
            linewidth=0.8,
            zorder=1,
        )
    labels = []
    for variant in order:
        label = variant
        if variant in table.index:
            lost = [
                f"{int(table.loc[variant, s])} {w}"
                for s, w in (("diverged", "div."), ("failed", "fail."))
                if table.loc[variant, s]
            ]
            if lost:
                label += "\n" + ", ".join(lost)
        labels.append(label)
    ax.set_xticks(range(len(order)), labels)
    ax.set_xlim(-0.6, len(order) - 0.4)
    ax.grid(False, axis="x")
    if len(order) > 5 or max(len(v) for v in order) > 7:
        for tick in ax.get_xticklabels():
            tick.set(rotation=40, ha="right", rotation_mode="anchor")
    if panel.title:
        ax.set_title(panel.title)


def _chance_handle(axes, metric: Metric) -> Line2D | None:
    """Draws the chance level where it is near the data; else names it in the legend only."""
    if metric.chance is None or not math.isfinite(metric.chance):
        return None
    chance = metric.chance * metric.scale
    value = metric.format(metric.chance, 1) if metric.percent else f"{metric.chance:.3g}"
    label = f"chance {value}"
    near = False
    for ax in axes:
        low, high = ax.get_ylim()
        margin = 0.25 * (high - low)
        if low - margin <= chance <= high + margin:
            ax.axhline(chance, color="#999999", linestyle=":", linewidth=1.0, zorder=1)
            ax.set_ylim(
                min(low, chance - 0.05 * (high - low)), max(high, chance + 0.05 * (high - low))
            )
            near = True
    if not near:
        side = "below" if chance < axes[0].get_ylim()[0] else "above"
        label += f" ({side})"
    return Line2D([], [], color="#999999", linestyle=":", linewidth=1.0, label=label)


def curve_figure(
    band: pd.DataFrame,
    metric: Metric,
    order: Sequence[str],
    width: float = WIDTH,
    height: float = 2.4,
) -> Figure:
    """The validation metric against the step: per variant the mean and a 95% t-interval band.

    Args:
        band: :func:`gatelab.report.stats.curve_band` (``variant, step, n, mean, low, high``).
        metric: the curve's metric (e.g. ``eval/accuracy``), for the label and the chance line.
        order: the variants in the legend's order.
    """
    present = [v for v in order if (band["variant"] == v).any()]
    if len(present) > SMALL_MULTIPLES_FROM:
        return _curve_multiples(band, metric, present, width)
    styles = variant_styles(order)
    with style():
        figure = Figure(figsize=(width, height), layout="constrained")
        ax = figure.subplots()
        for variant in order:
            rows = band[band["variant"] == variant]
            if not len(rows):
                continue
            s = styles[variant]
            steps = rows["step"].to_numpy(float)
            ax.plot(
                steps,
                rows["mean"].to_numpy(float) * metric.scale,
                color=s["color"],
                linestyle=s["linestyle"],
                marker=s["marker"],
                markersize=2.5,
                fillstyle=s["fill"],
                label=variant,
            )
            ax.fill_between(
                steps,
                rows["low"].to_numpy(float) * metric.scale,
                rows["high"].to_numpy(float) * metric.scale,
                color=s["color"],
                alpha=0.18,
                linewidth=0,
            )
        ax.set_xlabel("training step")
        ax.set_ylabel(metric.label)
        handles, _ = ax.get_legend_handles_labels()
        chance = _chance_handle([ax], metric)
        if chance is not None:
            handles.append(chance)
        if handles:
            legend(figure, handles, 5)
    return figure


SMALL_MULTIPLES_FROM = 4  # more variants than this: one small panel each, against the baseline


def _curve_multiples(
    band: pd.DataFrame, metric: Metric, order: Sequence[str], width: float
) -> Figure:
    """One small panel per variant, the first (the baseline) in grey behind each, the y axis
    zoomed to the later part of training where the differences that matter are (the first
    30% of the steps may run off the top or bottom)."""
    baseline, others = order[0], list(order[1:])
    columns = 3
    rows_count = math.ceil(len(others) / columns)
    late = band[band["step"] >= 0.3 * band["step"].max()]
    values = late[["low", "high"]].to_numpy(float).ravel() * metric.scale
    values = values[np.isfinite(values)]
    low, high = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
    pad = 0.05 * (high - low or 1.0)
    styles = variant_styles(order)

    def draw(ax, variant: str, color: str, alpha: float, linewidth: float) -> None:
        rows = band[band["variant"] == variant]
        steps = rows["step"].to_numpy(float)
        ax.fill_between(
            steps,
            rows["low"].to_numpy(float) * metric.scale,
            rows["high"].to_numpy(float) * metric.scale,
            color=color,
            alpha=alpha,
            linewidth=0,
        )
        ax.plot(steps, rows["mean"].to_numpy(float) * metric.scale, color=color, lw=linewidth)

    with style():
        figure = Figure(figsize=(width, 0.45 + 0.95 * rows_count), layout="constrained")
        axes = list(
            figure.subplots(rows_count, columns, squeeze=False, sharex=True, sharey=True).flat
        )
        for ax, variant in zip(axes, others, strict=False):
            draw(ax, baseline, "#9a9a9a", 0.25, 0.8)
            color = styles[variant]["color"]
            draw(ax, variant, SIGNIFICANT if color in ("#000000", "#999999") else color, 0.25, 1.1)
            ax.set_title(variant, fontsize=7, pad=2)
            ax.tick_params(labelsize=6)
            ax.set_ylim(low - pad, high + pad)
        for ax in axes[len(others) :]:
            ax.set_visible(False)
        figure.supxlabel("training step", fontsize=7)
        figure.supylabel(metric.label, fontsize=7)
        figure.suptitle(f"each variant (colour) against {baseline} (grey)", fontsize=7)
    return figure


def gate_figure(
    gates: pd.DataFrame, order: Sequence[str], width: float = WIDTH, height: float = 3.3
) -> Figure:
    """Per variant and gate: mean activation, fraction below 0.1, fraction above 0.9.

    Args:
        gates: :func:`gatelab.report.stats.gate_table` with layers averaged (layer ``all``) or a
            single layer; bars are means over runs, error bars the std over runs.
        order: the variants from left to right. A removed gate has no bar.
    """
    names = list(dict.fromkeys(gates["gate"]))
    names = sorted(names, key=lambda g: (list(GATE_COLORS).index(g) if g in GATE_COLORS else 99, g))
    variants = [v for v in order if v in set(gates["variant"])]
    # Two-line labels: one line is taller than a third of the figure.
    stats = [("mean", "mean\nactivation"), ("low", "fraction\n< 0.1"), ("high", "fraction\n> 0.9")]
    width_bar = 0.8 / max(len(names), 1)
    with style():
        figure = Figure(figsize=(width, height), layout="constrained")
        axes = figure.subplots(len(stats), 1, sharex=True)
        for ax, (stat, words) in zip(axes, stats, strict=True):
            for j, gate in enumerate(names):
                rows = gates[(gates["gate"] == gate) & (gates["stat"] == stat)].set_index("variant")
                xs = [i for i, v in enumerate(variants) if v in rows.index]
                if not xs:
                    continue
                picked = rows.loc[[variants[i] for i in xs]]
                ax.bar(
                    np.array(xs) + (j - (len(names) - 1) / 2) * width_bar,
                    picked["mean"].to_numpy(float),
                    width=width_bar * 0.92,
                    yerr=picked["std"].fillna(0).to_numpy(float),
                    error_kw={"elinewidth": 0.5, "capsize": 0, "ecolor": "#333333"},
                    color=GATE_COLORS.get(gate, OKABE_ITO[(j + 1) % len(OKABE_ITO)]),
                    label=gate if stat == "mean" else None,
                )
            ax.set_ylim(0, 1)
            ax.set_yticks([0, 0.5, 1])
            ax.set_ylabel(words)
            ax.grid(False, axis="x")
        figure.align_ylabels(axes)
        axes[-1].set_xticks(range(len(variants)), variants)
        if len(variants) > 5 or max((len(v) for v in variants), default=0) > 7:
            for tick in axes[-1].get_xticklabels():
                tick.set(rotation=40, ha="right", rotation_mode="anchor")
        legend(figure, axes[0].get_legend_handles_labels()[0], len(names))
    return figure


def params_figure(
    used: pd.DataFrame,
    table: pd.DataFrame,
    metric: Metric,
    order: Sequence[str],
    width: float = WIDTH,
    height: float = 2.4,
) -> Figure:
    """The metric against ``params/total``: every run a faint point, each variant's mean ± std.

    A variant's mean is drawn at its median parameter count. The x axis is logarithmic when the
    counts span more than a factor of 4 (a random search over hidden sizes), else linear. Variants
    with the same median count (NIG, NFG and NOG all drop one gate) are dodged sideways a little,
    so that their error bars stay apart.
    """
    styles = variant_styles(order)
    counts = pd.to_numeric(used.get("params/total", pd.Series(dtype=float)), errors="coerce")
    finite = counts[np.isfinite(counts) & (counts > 0)]
    log = bool(len(finite)) and finite.max() > 4 * finite.min()
    shown = [v for v in order if v in table.index and (used["variant"] == v).any()]
    medians = {v: float(np.nanmedian(counts[used["variant"] == v].to_numpy(float))) for v in shown}
    dodge = _dodge(medians, log, finite)
    with style():
        figure = Figure(figsize=(width, height), layout="constrained")
        ax = figure.subplots()
        for variant in shown:
            rows = used[used["variant"] == variant]
            s = styles[variant]
            x = pd.to_numeric(rows["params/total"], errors="coerce").to_numpy(float)
            x = _shift(x, dodge[variant], log)
            y = pd.to_numeric(rows[metric.key]).to_numpy(float) * metric.scale
            hollow = s["fill"] == "none"
            ax.scatter(
                x,
                y,
                s=6,
                marker=s["marker"],
                facecolors="none" if hollow else s["color"],
                edgecolors=s["color"],
                linewidths=0.6 if hollow else 0,
                alpha=0.35,
            )
            std = table.loc[variant, "std"]
            ax.errorbar(
                [_shift(np.array([medians[variant]]), dodge[variant], log)[0]],
                [table.loc[variant, "mean"] * metric.scale],
                yerr=[0 if not math.isfinite(std) else std * metric.scale],
                color=s["color"],
                marker=s["marker"],
                markersize=4.5,
                markerfacecolor="white" if hollow else s["color"],
                markeredgecolor=s["color"] if hollow else "white",
                markeredgewidth=0.8 if hollow else 0.5,
                elinewidth=0.9,
                capsize=1.5,
                linestyle="none",
                label=variant,
            )
        if log:
            ax.set_xscale("log")
        ax.margins(x=0.08)
        ax.set_xlabel("parameters")
        ax.set_ylabel(metric.label)
        ax.grid(True, axis="x")
        handles, _ = ax.get_legend_handles_labels()
        if handles:
            legend(figure, handles, 5)
    return figure


def _dodge(medians: dict[str, float], log: bool, counts: pd.Series) -> dict[str, float]:
    """Sideways offsets (a fraction of the axis span) for variants sharing a parameter count."""
    if not len(counts):
        return dict.fromkeys(medians, 0.0)
    span = (
        math.log10(counts.max() / counts.min()) if log else float(counts.max() - counts.min())
    ) or (1.0 if log else max(float(counts.max()), 1.0))
    groups: dict[float, list[str]] = {}
    for variant, median in medians.items():
        groups.setdefault(round(median, 6), []).append(variant)
    offsets = {}
    for members in groups.values():
        for k, variant in enumerate(members):
            offsets[variant] = (k - (len(members) - 1) / 2) * 0.03 * span
    return offsets


def _shift(x: np.ndarray, offset: float, log: bool) -> np.ndarray:
    return x * 10**offset if log else x + offset


def interval_figure(
    table: pd.DataFrame, metric: Metric, baseline: str, order: Sequence[str], width: float = WIDTH
) -> Figure:
    """Interval estimates (Agarwal et al. 2021, Fig. 9 style): one row per variant, a panel per
    aggregate (mean, median, IQM) with its bootstrap 95% CI as a bar, and the probability of
    improvement over the baseline; the baseline's interval is a grey band across each panel.
    A variant without an interval (fewer than two runs) has its point only."""
    variants = [v for v in order if v in table.index and table.loc[v, "n"] > 0]
    aggregates = [("mean", "Mean"), ("median", "Median"), ("iqm", "IQM")]
    with style():
        height = 0.6 + 0.16 * len(variants)
        figure = Figure(figsize=(width, height), layout="constrained")
        axes = figure.subplots(1, 4, sharey=True, gridspec_kw={"width_ratios": [1, 1, 1, 1]})
        y = np.arange(len(variants))[::-1]
        colors = variant_styles(order)
        for ax, (column, title) in zip(axes[:3], aggregates, strict=True):
            if baseline in variants:
                low, high = table.loc[baseline, [f"{column}_lo", f"{column}_hi"]] * metric.scale
                if math.isfinite(low) and math.isfinite(high):
                    ax.axvspan(low, high, color="#dddddd", linewidth=0, zorder=0)
            for yi, variant in zip(y, variants, strict=True):
                row = table.loc[variant]
                value = row[column] * metric.scale
                low, high = row[f"{column}_lo"] * metric.scale, row[f"{column}_hi"] * metric.scale
                color = colors[variant]["color"]
                if math.isfinite(low) and math.isfinite(high):
                    ax.plot([low, high], [yi, yi], color=color, linewidth=2.2, alpha=0.75)
                ax.plot([value], [yi], marker="|", color="black", markersize=6)
            ax.set_title(title)
            ax.grid(axis="x", color="#e3e3e3", linewidth=0.5)
            ax.grid(axis="y", visible=False)
            ax.tick_params(axis="x", labelsize=6)
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(2, min_n_ticks=2))
            ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.3g"))
        ax = axes[3]
        ax.axvline(0.5, color="#333333", linestyle="--", linewidth=0.8)
        for yi, variant in zip(y, variants, strict=True):
            row = table.loc[variant]
            if variant == baseline or not math.isfinite(row["poi"]):
                continue
            color = colors[variant]["color"]
            if math.isfinite(row["poi_lo"]):
                ax.plot([row["poi_lo"], row["poi_hi"]], [yi, yi], color=color, linewidth=2.2)
            ax.plot([row["poi"]], [yi], marker="|", color="black", markersize=6)
        ax.set_xlim(-0.02, 1.02)
        ax.set_xticks([0, 0.5, 1])
        ax.set_title(f"P(> {baseline})" if metric.direction == "max" else f"P(< {baseline})")
        ax.grid(axis="x", color="#e3e3e3", linewidth=0.5)
        ax.grid(axis="y", visible=False)
        ax.tick_params(axis="x", labelsize=6)
        axes[0].set_yticks(y, variants)
        axes[0].tick_params(axis="y", length=0)
        figure.supxlabel(metric.label, fontsize=7)
    return figure


def profile_figure(
    used: pd.DataFrame, metric: Metric, order: Sequence[str], width: float = WIDTH
) -> Figure:
    """The performance profile: per variant, the fraction of its runs whose score beats each
    threshold (``>`` for a metric to maximise, ``<`` to minimise), with bootstrap 95% bands;
    the legend outside the axes, on the right."""
    from gatelab.report import intervals  # the statistics live there

    values = {
        v: pd.to_numeric(used.loc[used["variant"] == v, metric.key]).to_numpy(float)
        for v in order
        if (used["variant"] == v).any()
    }
    every = np.concatenate(list(values.values())) if values else np.array([0.0])
    low, high = float(np.min(every)), float(np.max(every))
    pad = 0.02 * (high - low or 1.0)
    thresholds = np.linspace(low - pad, high + pad, 101)
    styles = variant_styles(order)
    with style():
        figure = Figure(figsize=(width, 2.2), layout="constrained")
        ax = figure.subplots()
        for variant, v in values.items():
            fraction, lo, hi = intervals.profile(v, thresholds, metric.direction)
            s = styles[variant]
            ax.fill_between(thresholds * metric.scale, lo, hi, color=s["color"], alpha=0.12)
            ax.plot(
                thresholds * metric.scale,
                fraction,
                color=s["color"],
                linestyle=s["linestyle"],
                label=variant,
            )
        ax.set_xlabel(metric.label)
        beats = "above" if metric.direction == "max" else "below"
        ax.set_ylabel(f"fraction of runs {beats}")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=6, handlelength=1.2)
    return figure


def importance_figure(table: pd.DataFrame, order: Sequence[str], width: float = WIDTH) -> Figure:
    """fANOVA: per hyperparameter (and the largest pair interactions) the fraction of the
    metric's variance it explains over all variants (bars), and per variant (markers)."""
    overall = table[table["scope"] == "all"]
    main = overall[overall["kind"] == "main"]
    pairs = table[(table["kind"] == "pair")].groupby("term")["fraction"].mean()
    terms = list(main["term"]) + list(pairs.sort_values(ascending=False).index[:3])
    styles = variant_styles(order)
    with style():
        figure = Figure(figsize=(width, 0.8 + 0.22 * len(terms)), layout="constrained")
        ax = figure.subplots()
        y = np.arange(len(terms))[::-1]
        values = [
            float(main.loc[main["term"] == t, "fraction"].iloc[0])
            if t in set(main["term"])
            else float("nan")
            for t in terms
        ]
        ax.barh(y, np.nan_to_num(values), color="#cccccc", label="all variants")
        for variant in order:
            own = table[table["scope"] == variant].set_index("term")["fraction"]
            points = [own.get(t, np.nan) for t in terms]
            if np.isfinite(points).any():
                s = styles[variant]
                ax.plot(
                    points,
                    y,
                    linestyle="none",
                    marker=s["marker"],
                    color=s["color"],
                    fillstyle=s["fill"],
                    label=variant,
                )
        ax.set_yticks(y, terms)
        ax.set_xlabel("fraction of variance explained (fANOVA)")
        ax.set_xlim(0, 1)
        ax.grid(axis="x", color="#e3e3e3", linewidth=0.5)
        ax.grid(axis="y", visible=False)
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=6)
    return figure


def _mean_band(ax, x, rows: pd.DataFrame, metric: Metric, s: dict, label: str, markers=True):
    """One variant's line (``rows["mean"]``) and its band (``low`` to ``high``) against ``x``,
    in the variant's style (:func:`variant_styles`), markers on its points unless told not to."""
    marks = {"marker": s["marker"], "fillstyle": s["fill"]} if markers else {}
    scale = metric.scale
    ax.plot(
        x, rows["mean"] * scale, color=s["color"], linestyle=s["linestyle"], label=label, **marks
    )
    ax.fill_between(
        x, rows["low"] * scale, rows["high"] * scale, color=s["color"], alpha=0.12, linewidth=0
    )


def marginals_figure(
    curves: dict[str, pd.DataFrame],
    labels: dict[str, str],
    metric: Metric,
    order: Sequence[str],
    width: float = WIDTH,
) -> Figure:
    """Greff et al.'s Fig. 4: the metric against each hyperparameter (in its search space), per
    variant the mean of the runs in each bin and a 95% band."""
    names = list(curves)
    columns = 2 if len(names) > 1 else 1
    rows = math.ceil(len(names) / columns)
    styles = variant_styles(order)
    with style():
        figure = Figure(figsize=(width, 0.4 + 1.45 * rows), layout="constrained")
        axes = list(figure.subplots(rows, columns, squeeze=False, sharey=True).flat)
        for ax, name in zip(axes, names, strict=False):
            frame = curves[name]
            for variant in order:
                own = frame[frame["variant"] == variant]
                if not len(own):
                    continue
                _mean_band(ax, own["x"], own, metric, styles[variant], variant, markers=False)
            ax.set_xlabel(labels[name], fontsize=7)
        for ax in list(axes)[len(names) :]:
            ax.set_visible(False)
        means = np.concatenate([c["mean"].to_numpy(float) for c in curves.values()])
        means = means[np.isfinite(means)] * metric.scale
        if len(means):  # the means decide the scale; a band of two runs may run off it
            low, high = float(means.min()), float(means.max())
            pad = 0.25 * (high - low or abs(high) or 1.0)
            axes[0].set_ylim(low - pad, high + pad)
        figure.supylabel(metric.label, fontsize=7)
        handles = [
            Line2D([], [], color=styles[v]["color"], linestyle=styles[v]["linestyle"], label=v)
            for v in order
            if any((c["variant"] == v).any() for c in curves.values())
        ]
        legend(figure, handles, 5)
    return figure


def length_figure(
    table: pd.DataFrame, metric: Metric, order: Sequence[str], width: float = WIDTH
) -> Figure:
    """Length generalisation: the metric against the test length per variant (mean, and its
    bootstrap 95% interval as a band); the trained length marked. ``table``: rows ``variant,
    length, mean, low, high, trained``."""
    styles = variant_styles(order)
    with style():
        figure = Figure(figsize=(width, 2.3), layout="constrained")
        ax = figure.subplots()
        for variant in order:
            own = table[table["variant"] == variant].sort_values("length")
            if not len(own):
                continue
            _mean_band(ax, own["length"].to_numpy(float), own, metric, styles[variant], variant)
        trained = sorted(set(table.loc[table["trained"], "length"]))
        for length in trained:
            ax.axvline(length, color="#999999", linestyle=":", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xticks(sorted(set(table["length"])))
        positive = (table["mean"] > 0).all()
        if metric.direction == "min" and positive:
            ax.set_yscale("log")
        ax.set_xlabel("test length T (dotted: trained)")
        ax.set_ylabel(metric.label)
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=6)
    return figure


def lr_figure(
    table: pd.DataFrame, metric: Metric, order: Sequence[str], width: float = WIDTH
) -> Figure:
    """A tune stage: the validation metric against the learning rate per variant, the mean over
    seeds with a 95% t-interval band, the chosen rate ringed. ``table``: rows ``variant, lr,
    mean, low, high, n, chosen``."""
    styles = variant_styles(order)
    with style():
        figure = Figure(figsize=(width, 2.3), layout="constrained")
        ax = figure.subplots()
        for variant in order:
            own = table[table["variant"] == variant].sort_values("lr")
            if not len(own):
                continue
            s = styles[variant]
            _mean_band(ax, own["lr"], own, metric, s, variant)
            best = own[own["chosen"]]
            ax.plot(
                best["lr"],
                best["mean"] * metric.scale,
                linestyle="none",
                marker="o",
                markersize=7,
                markerfacecolor="none",
                markeredgecolor=s["color"],
            )
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (ringed: chosen)")
        ax.set_ylabel(metric.label)
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=6)
    return figure


def across_figure(
    summary: pd.DataFrame,
    scores: pd.DataFrame,
    baseline: str,
    order: Sequence[str],
    width: float = WIDTH,
) -> Figure:
    """A study across tasks: per variant (a row) its normalised score on each task (a marker per
    task) and the aggregate mean with its stratified 95% interval (a bar); 0 is chance, 1 the
    baseline (dashed)."""
    variants = [v for v in order if v in summary.index]
    task_names = list(dict.fromkeys(scores["task"]))
    markers = dict(zip(task_names, MARKERS, strict=False))
    colours = dict(zip(task_names, OKABE_ITO[1:], strict=False))
    with style():
        figure = Figure(figsize=(width, 0.7 + 0.2 * len(variants)), layout="constrained")
        ax = figure.subplots()
        y = np.arange(len(variants))[::-1]
        for yi, variant in zip(y, variants, strict=True):
            row = summary.loc[variant]
            if math.isfinite(row["mean_lo"]):
                ax.plot([row["mean_lo"], row["mean_hi"]], [yi, yi], color="#bbbbbb", lw=4)
            ax.plot([row["mean"]], [yi], marker="|", color="black", markersize=8)
            for task in task_names:
                own = scores[(scores["variant"] == variant) & (scores["task"] == task)]
                if len(own):
                    ax.plot(
                        own["mean"],
                        [yi],
                        linestyle="none",
                        marker=markers[task],
                        color=colours[task],
                        markersize=3.5,
                    )
        ax.axvline(1.0, color="#333333", linestyle="--", linewidth=0.8)
        ax.axvline(0.0, color="#999999", linestyle=":", linewidth=0.8)
        ax.set_yticks(y, variants)
        ax.set_xlabel(f"normalised score (0: chance, 1: {baseline})")
        ax.grid(axis="x", color="#e3e3e3", linewidth=0.5)
        ax.grid(axis="y", visible=False)
        handles = [
            Line2D([], [], linestyle="none", marker=markers[t], color=colours[t], label=t)
            for t in task_names
        ]
        handles.append(Line2D([], [], color="#bbbbbb", lw=4, label="mean, 95% CI"))
        ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=6)
    return figure
