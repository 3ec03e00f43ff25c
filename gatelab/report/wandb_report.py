"""The study's results in W&B, beside its runs: the report as one W&B run.

``gatelab report DIR`` logs, in the sweep's W&B group, a run of ``job_type="report"``: the
comparison table as a ``wandb.Table``, the verdict sentences (and each variant's mean, interval
and verdict) in the run's summary, every figure as a ``wandb.Image``, and ``report.md``,
``table.tex`` and ``table.csv`` as an artifact of type ``report``. Its mode is the study's runs'
(offline unless they were online; ``--wandb`` chooses). Like every W&B mirror it never decides
anything: a failure only warns, and the local report is complete without it.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["MODES", "log_report", "study_wandb"]

MODES = ("off", "offline", "online")


def study_wandb(runs: pd.DataFrame, root_name: str) -> dict[str, str]:
    """The W&B mode, project, entity and group of a study's runs (their configs' most frequent
    values; the group defaults to the directory of runs' name, as the runs' own mirrors do)."""

    def common(column: str, default: str) -> str:
        values = runs[column].dropna() if column in runs else pd.Series(dtype=object)
        values = values[values.astype(str) != ""]
        return str(values.mode().iloc[0]) if len(values) else default

    return {
        "mode": common("config/wandb.mode", "offline"),
        "project": common("config/wandb.project", "gatelab"),
        "entity": common("config/wandb.entity", ""),
        "group": common("config/wandb.group", root_name),
    }


def _cell(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _cell(value.item())
    return value


def log_report(
    out: Path,
    table: pd.DataFrame,
    sentences: Sequence[str],
    figures: Sequence[str],
    *,
    mode: str,
    project: str,
    entity: str,
    group: str,
) -> Path | None:
    """Logs the report in ``out`` (``DIR/report``) as a W&B run; returns its directory (under
    ``out/wandb``), or ``None`` when ``mode`` is off or W&B failed (with a warning)."""
    if mode in ("off", "disabled"):
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    run = None
    try:
        import wandb

        run = wandb.init(
            mode=mode,
            dir=str(out),
            project=project,
            entity=entity or None,
            group=group or None,
            job_type="report",
            name=f"{group}/report" if group else "report",
            reinit="create_new",
            settings=wandb.Settings(console="off", x_disable_stats=True),
        )
        frame = table.reset_index()
        columns = [str(c) for c in frame.columns]
        rows = [[_cell(v) for v in row] for row in frame.itertuples(index=False)]
        logged: dict[str, Any] = {"comparison": wandb.Table(columns=columns, data=rows)}
        for name in figures:
            png = out / "figures" / f"{name}.png"
            if png.exists():
                logged[f"figures/{name}"] = wandb.Image(str(png))
        run.log(logged)
        summary = {"verdicts": "\n".join(s.removeprefix("- ") for s in sentences)}
        for variant, row in table.iterrows():
            for key in ("mean", "mean_lo", "mean_hi", "iqm", "poi", "p_holm", "verdict"):
                if key in row and _cell(row[key]) not in (None, ""):
                    summary[f"{variant}/{key}"] = _cell(row[key])
        run.summary.update(summary)
        artifact = wandb.Artifact(re.sub(r"[^\w.-]", "-", f"report-{group or 'study'}"), "report")
        for name in ("report.md", "table.tex", "table.csv"):
            if (out / name).exists():
                artifact.add_file(str(out / name), name=name)
        run.log_artifact(artifact)
        where = Path(run.dir).parent
        run.finish()
        return where
    except Exception as error:  # noqa: BLE001  (the local report is complete without W&B)
        warnings.warn(f"the report could not be logged to W&B ({error})", stacklevel=2)
        if run is not None:
            try:
                run.finish(exit_code=1)
            except Exception:  # noqa: BLE001, S110
                pass
        return None
