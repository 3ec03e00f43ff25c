"""Greff et al.'s Fig. 3 for one sweep: all trials and the best 10% by validation, side by side.

    python experiments/figures/greff_fig3.py runs/odyssey
    python experiments/figures/greff_fig3.py runs/odyssey --out paper/fig3 --metric test/nll

Per variant a box (quartiles, whiskers at 1.5 IQR) with every completed run as a point; the
baseline's median dashed, the task's chance level dotted; variants whose mean differs from the
baseline's (Welch's t-test, Holm-adjusted p < 0.05) in blue with thick lines. The right panel keeps
each variant's best 10% of runs by the validation primary metric (at least one run). Works for a
random search (Greff et al.'s protocol) and for a grid (where the best 10% of a few seeds is one
run: read the right panel as "best run").

Writes ``OUT.pdf`` and ``OUT.png`` (default ``SWEEP_DIR/report/figures/greff_fig3``), two columns
wide (6.8 in). Seconds; reads only the records.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gatelab import report
from gatelab.report import analysis, figures, stats


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="a sweep directory (or a two-stage sweep's)")
    parser.add_argument("--out", type=Path, help="output stem; .pdf and .png are written")
    parser.add_argument("--metric", help="a summary key, e.g. test/loss (default test/<primary>)")
    parser.add_argument("--baseline", help="default: vanilla when present, else the first variant")
    args = parser.parse_args(argv)

    runs = report.load_runs(args.sweep)
    metric = report.resolve_metric(runs, args.metric)
    baseline = report.resolve_baseline(runs, args.baseline)
    order = stats.variant_order(runs, baseline)
    selection = analysis.selection_metric(runs, metric)
    # kind="random" asks for both views whatever the sweep's kind.
    views = analysis.views(runs, metric, baseline, order, selection, kind="random")
    panels = [figures.Panel(view.title.lower(), view.used, view.table) for view in views]
    figure = figures.box_figure(panels, metric, baseline, order, width=2 * figures.WIDTH)
    out = args.out or args.sweep / "report" / "figures" / "greff_fig3"
    paths = figures.save(figure, out.with_suffix("") if out.suffix in (".pdf", ".png") else out)
    print("\n".join(str(p) for p in paths))
    return paths


if __name__ == "__main__":
    main()
