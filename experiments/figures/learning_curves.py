"""Learning curves of a sweep: a validation metric against the step, one line per variant.

    python experiments/figures/learning_curves.py runs/odyssey
    python experiments/figures/learning_curves.py runs/odyssey --key eval/loss --out paper/curves

The line is the mean over the completed runs of a variant (seeds, and every trial of a random
search), the band a 95% t-interval of that mean (mean ± t(0.975, n-1) · s/√n, where n ≥ 2).
Diverged and failed runs are left out, as in ``gatelab report``.

Writes ``OUT.pdf`` and ``OUT.png`` (default ``SWEEP_DIR/report/figures/learning_curves``), one
column wide (3.4 in). Seconds; reads only the records.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gatelab import report
from gatelab.report import analysis, figures, stats


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="a sweep directory, or a gatelab train workdir")
    parser.add_argument("--out", type=Path, help="output stem; .pdf and .png are written")
    parser.add_argument("--key", help="a logged key, e.g. eval/loss (default eval/<primary>)")
    parser.add_argument("--baseline", help="first in the legend (default: vanilla, if present)")
    args = parser.parse_args(argv)

    runs = report.load_runs(args.sweep)
    curves = report.load_curves(args.sweep, runs=runs)
    metric = report.resolve_metric(runs)
    key = analysis.describe(runs, args.key) if args.key else analysis.selection_metric(runs, metric)
    order = stats.variant_order(runs, report.resolve_baseline(runs, args.baseline))
    band = stats.curve_band(curves, key.key, stats.usable(runs, metric))
    if not len(band):
        raise SystemExit(f"no completed run of {args.sweep} logged {key.key}")
    out = args.out or args.sweep / "report" / "figures" / "learning_curves"
    paths = figures.save(
        figures.curve_figure(band, key, order),
        out.with_suffix("") if out.suffix in (".pdf", ".png") else out,
    )
    print("\n".join(str(p) for p in paths))
    return paths


if __name__ == "__main__":
    main()
