"""Records -> tidy tables -> statistics, tables and figures (``gatelab report``).

Reads only the records (``gatelab.records``: docs/design.md, "The record"), never the training
code::

    from gatelab import report
    report.build_report("runs/odyssey")                  # runs/odyssey/report/report.md
    runs = report.load_runs("runs/odyssey")              # one row per run
    curves = report.load_curves("runs/odyssey")          # one row per (run, step, key)
    runs, curves = report.load_wandb("me/gatelab", "odyssey")   # the same, from W&B

The modules: ``load`` (records -> tables), ``analysis`` (what is compared: the metric, the
baseline, the views), ``stats`` (aggregates and tests), ``tables`` and ``figures`` (drawing them),
``document`` (report.md).
"""

from gatelab.report.analysis import resolve_baseline, resolve_metric
from gatelab.report.document import build_report
from gatelab.report.load import load_curves, load_runs, load_wandb, runs_from_wandb
from gatelab.report.metric import Metric

__all__ = [
    "build_report",
    "load_runs",
    "load_curves",
    "load_wandb",
    "runs_from_wandb",
    "resolve_metric",
    "resolve_baseline",
    "Metric",
]
