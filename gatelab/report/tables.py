"""The comparison table as Markdown (report.md), CSV (raw numbers) and LaTeX (booktabs).

The CSV keeps the record's units (an accuracy is a fraction) and every digit, for further
analysis; Markdown and LaTeX show the metric as a reader reads it (percentages, rounded to the
spread's precision, see :meth:`Metric.decimals`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from gatelab.report.metric import Metric, format_p

__all__ = ["markdown", "comparison_rows", "write_csv", "write_tex", "format_count"]

_TEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def markdown(rows: Sequence[Sequence[str]], headers: Sequence[str], align: str = "") -> str:
    """A GitHub Markdown table; ``align`` holds one of ``l``/``r`` per column (default left)."""
    align = align or "l" * len(headers)
    rule = ["---:" if a == "r" else "---" for a in align]
    escape = lambda cell: str(cell).replace("|", r"\|")  # noqa: E731
    lines = [headers, rule, *rows]
    return "\n".join("| " + " | ".join(escape(c) for c in line) + " |" for line in lines)


def format_count(count: float) -> str:
    """A parameter count: ``12,345``; ``n/a`` when unknown."""
    return (
        f"{round(count):,d}" if isinstance(count, (int, float)) and math.isfinite(count) else "n/a"
    )


def comparison_rows(
    table: pd.DataFrame, metric: Metric, baseline: str
) -> tuple[list[str], list[list[str]], str]:
    """The comparison (:func:`gatelab.report.stats.compare`) as strings for a Markdown table.

    Returns:
        ``(headers, rows, align)``.
    """
    decimals = metric.decimals(table["std"], table["mean"])
    headers = [
        "variant",
        "params",
        "runs (completed / diverged / failed)",
        "n",
        f"mean ± std ({metric.unit})" if metric.unit and not metric.percent else "mean ± std",
        "median",
        "best",
        f"Δ vs {baseline}",
        "p (Welch)",
        "p (Holm)",
        "verdict",
    ]
    rows = []
    for variant, row in table.iterrows():
        diff = row["diff"]
        diff_text = "" if variant == baseline else _signed(metric, diff, decimals)
        label = str(variant) + (" (baseline)" if variant == baseline else "")
        if row.get("still_improving"):
            label += " §"
        rows.append(
            [
                label,
                format_count(row["params"]),
                _status_counts(row),
                str(int(row["n"])),
                metric.format_mean_std(row["mean"], row["std"], decimals),
                metric.format(row["median"], decimals),
                metric.format(row["best"], decimals),
                diff_text,
                "" if variant == baseline else format_p(row["p"]),
                "" if variant == baseline else format_p(row["p_holm"]),
                {"better": "better ↑", "worse": "worse ↓"}.get(row["verdict"], ""),
            ]
        )
    return headers, rows, "lrrrrrrrrrl"


def write_csv(table: pd.DataFrame, metric: Metric, path: Path) -> None:
    """The comparison, raw values (record units) and a ``metric`` column; one row per variant."""
    out = table.reset_index()
    out.insert(1, "metric", metric.key)
    out.insert(2, "direction", metric.direction)
    out.to_csv(path, index=False, float_format="%.10g")


def write_tex(table: pd.DataFrame, metric: Metric, baseline: str, path: Path) -> None:
    """A booktabs ``tabular``: the best mean in bold (by direction), significance marked.

    A dagger marks a mean significantly different from the baseline's (Welch's t-test,
    Holm-adjusted p < 0.05); a line under the rule explains it.
    """
    decimals = metric.decimals(table["std"], table["mean"])
    means = table["mean"].where(table["n"] > 0)
    best = means.max() if metric.direction == "max" else means.min()
    unit = r"\%" if metric.percent else metric.unit
    words = metric.words[:1].upper() + metric.words[1:]  # not str.capitalize: keeps "NLL"
    head = _tex(words) + (f" ({unit})" if unit else "")
    lines = [
        f"% {metric.key}: mean ± sample std (ddof=1) over completed runs; "
        f"{metric.direction_words}. Written by gatelab report.",
        r"\begin{tabular}{lrrlrrl}",
        r"\toprule",
        r"Variant & Params & $n$ & \multicolumn{1}{c}{" + head + r"} & Median & Best & $p$ \\",
        r"\midrule",
    ]
    for variant, row in table.iterrows():
        mean = metric.format_mean_std(row["mean"], row["std"], decimals).replace("%", "")
        mean = mean.replace("±", r"$\pm$")
        if math.isfinite(row["mean"]) and row["mean"] == best:
            mean = r"\textbf{" + mean + "}"
        if row["significant"]:
            mean += r"$^{\dagger}$"
        p = "" if variant == baseline else format_p(row["p_holm"])
        counts = str(int(row["n"]))
        if row["diverged"] or row["failed"]:
            counts += f" ({int(row['diverged'])}d/{int(row['failed'])}f)"
        cells = [
            _tex(str(variant)),
            format_count(row["params"]).replace(",", "{,}"),
            counts,
            mean,
            metric.format(row["median"], decimals, unit=False),
            metric.format(row["best"], decimals, unit=False),
            p.replace("e-", r"$\times 10^{-").replace("n/a", "--") + ("}$" if "e-" in p else ""),
        ]
        lines.append(" & ".join(cells) + r" \\")
    lines += [
        r"\bottomrule",
        r"\multicolumn{7}{l}{\footnotesize $^{\dagger}$ significantly different from "
        + _tex(baseline)
        + r" (Welch's $t$-test, Holm-adjusted $p < 0.05$);}\\",
        r"\multicolumn{7}{l}{\footnotesize bold: the best mean; $p$: Holm-adjusted; "
        r"$n$: completed runs used (d: diverged, f: failed, left out).}\\",
        r"\end{tabular}",
    ]
    path.write_text("\n".join(lines) + "\n")


def _signed(metric: Metric, value: float, decimals: int) -> str:
    if not math.isfinite(value):
        return "n/a"
    text = f"{value * metric.scale:+.{decimals}f}"
    return text + (" pp" if metric.percent else "")


def _status_counts(row: pd.Series) -> str:
    text = f"{int(row['runs'])} ({int(row['completed'])} / {int(row['diverged'])} / "
    text += f"{int(row['failed'])})"
    if row["pending"]:
        text += f", {int(row['pending'])} pending"
    return text


def _tex(text: str) -> str:
    return "".join(_TEX_SPECIAL.get(c, c) for c in text)
