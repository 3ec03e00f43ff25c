"""Records -> tidy tables: one row per run, and one row per (run, step, key) of the curves.

The local record (``gatelab.records``: its one layout and its summary schema) is read without the
training code: a directory of runs (a sweep, or a ``gatelab train`` workdir, which is a sweep of
one group), or a two-stage study whose test stage is reported. The same tables come from the W&B
public API through :func:`load_wandb`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from gatelab import records as record_io

__all__ = [
    "load_runs",
    "load_curves",
    "load_wandb",
    "runs_from_wandb",
    "STATUSES",
]

STATUSES = record_io.STATUSES
_FINISHED = {"completed", "diverged", "failed"}
# Keys of metrics.jsonl that learning curves use; gate statistics per step are left out by default
# (the summary holds them at the end), since they are most of a line's size.
CURVE_PREFIXES = ("train/", "eval/")
# Columns of the runs table that are not summary keys.
RUN_COLUMNS = ("name", "variant", "seed", "status", "group", "path")


def load_runs(directory: str | Path | record_io.Study) -> pd.DataFrame:
    """One row per run: ``name, variant, seed, status, group, path``, then every summary key.

    Also ``override/<key>`` for the run's sweep overrides, ``config/<dotted key>`` for its config,
    ``resolved/<key>`` and ``code_version`` from ``config.json``, and ``error`` for a failed run.
    A run of ``sweep.json`` without a directory or a summary is kept, with the sweep's status
    (``pending`` when it has none). A summary that says ``running`` yields to the sweep's status
    when that is final (the process that wrote it died before it could say so).

    Args:
        directory: a directory of runs or a two-stage study (or its ``records.find``).

    Returns:
        The runs in the index's order; the frame's ``attrs["sweep"]`` holds ``sweep.json`` and
        ``attrs["root"]`` the directory read.
    """
    study = directory if isinstance(directory, record_io.Study) else record_io.find(directory)
    rows = [_run_row(study.root / entry["name"], entry) for entry in study.index.get("runs", [])]
    runs = _frame(rows)
    runs.attrs["sweep"] = dict(study.index)
    runs.attrs["root"] = str(study.root)
    return runs


def load_curves(
    directory: str | Path,
    prefixes: Iterable[str] | None = CURVE_PREFIXES,
    *,
    runs: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The logged metrics of every run, long: ``run, variant, seed, status, step, key, value``.

    Args:
        directory: as for :func:`load_runs`.
        prefixes: the keys to keep (by prefix); ``None`` keeps every key (gate statistics too).
        runs: :func:`load_runs` of ``directory``, when already read.

    Returns:
        One row per (run, step, key); a non-finite value (logged as null) is NaN.
    """
    runs = load_runs(directory) if runs is None else runs
    frames = []
    for run in runs.itertuples(index=False):
        lines = record_io.read_metrics(Path(run.path) / "metrics.jsonl")
        frames.append(_curve_frame(run.name, run.variant, run.seed, run.status, lines, prefixes))
    return _concat_curves(frames)


# ----------------------------------------------------------------------------------------------
# W&B
# ----------------------------------------------------------------------------------------------


def load_wandb(project: str, group: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs and curves tables of :func:`load_runs` / :func:`load_curves`, from W&B online.

    Reads ``wandb.Api().runs(project, filters={"group": group})``: each run's ``config`` (the
    flattened config gatelab's mirror logs), ``summary`` (the keys of ``summary.json``) and
    ``scan_history()`` (the lines of ``metrics.jsonl``).

    Not exercised against a live W&B server: it was written without network access. Its
    conversion, :func:`runs_from_wandb`, is tested with stand-ins shaped like ``wandb``'s ``Run``.

    Args:
        project: ``entity/project``.
        group: a W&B run group (a sweep's group, e.g. the one its runs were started with);
            ``None`` reads every run of the project.

    Returns:
        ``(runs, curves)``; ``runs.attrs["sweep"]`` is ``{"source": "wandb:<project>"}`` (W&B
        does not keep ``sweep.json``, so a random search is not recognised as one).
    """
    import wandb  # a heavy import, needed only here

    api = wandb.Api()
    found = api.runs(project, filters={"group": group} if group else None)
    runs, curves = runs_from_wandb(found)
    runs.attrs["sweep"] = {"source": f"wandb:{project}" + (f" (group {group})" if group else "")}
    return runs, curves


def runs_from_wandb(
    wandb_runs: Iterable[Any], prefixes: Iterable[str] | None = CURVE_PREFIXES
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Converts W&B ``Run`` objects (or stand-ins) into the runs and curves tables.

    A run needs ``name``, ``id``, ``group``, ``state``, ``config`` (nested or dot-flattened),
    ``summary`` (a mapping) and ``scan_history()`` (an iterable of dicts). The run's name is the
    part after the last ``/`` (gatelab names W&B runs ``<group dir>/<run dir>``). W&B's own keys
    (``_step``, ``_runtime``, ``_wandb``...) are dropped. Without a summary ``status``, W&B's
    state decides: ``finished`` is completed, ``running`` running, anything else failed.
    """
    rows, frames = [], []
    for wandb_run in wandb_runs:
        summary = {
            key: _scalar(value)
            for key, value in dict(wandb_run.summary).items()
            if not key.startswith("_") and not isinstance(value, (dict, list))
        }
        config = record_io.flatten(_plain(dict(wandb_run.config)))
        name = str(wandb_run.name).rsplit("/", 1)[-1]
        status = summary.get("status") or _WANDB_STATES.get(wandb_run.state, "failed")
        row = _row_from(
            name=name,
            summary=summary,
            config=config,
            status=status,
            group=wandb_run.group,
            path=f"wandb:{wandb_run.id}",
            sweep_entry={},
        )
        row["wandb_id"] = wandb_run.id
        rows.append(row)
        lines = [
            {k: v for k, v in line.items() if not k.startswith("_")}
            for line in wandb_run.scan_history()
        ]
        frames.append(_curve_frame(name, row["variant"], row["seed"], status, lines, prefixes))
    return _frame(rows), _concat_curves(frames)


_WANDB_STATES = {"finished": "completed", "running": "running", "pending": "pending"}


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _run_row(run_dir: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """One run's row from its directory and its ``sweep.json`` entry."""
    found = record_io.read_summary(run_dir)
    summary = found.to_json() if found is not None else {}
    stored = record_io.read_json_or_none(run_dir / "config.json") or {}
    config = record_io.flatten(stored.get("config", {}))
    config.update({f"resolved.{k}": v for k, v in stored.get("resolved", {}).items()})
    status = summary.get("status")
    swept = entry.get("status")
    if status is None or (status not in _FINISHED and swept in _FINISHED):
        status = swept or status or "pending"
    row = _row_from(
        name=entry["name"],
        summary=summary,
        config=config,
        status=status,
        group=entry.get("group"),
        path=str(run_dir),
        sweep_entry=entry,
    )
    if "code_version" in stored:
        row["code_version"] = stored["code_version"]
    return row


def _row_from(
    *,
    name: str,
    summary: Mapping[str, Any],
    config: Mapping[str, Any],
    status: str,
    group: str | None,
    path: str,
    sweep_entry: Mapping[str, Any],
) -> dict[str, Any]:
    overrides = dict(sweep_entry.get("overrides") or {})
    variant = _first(
        summary.get("variant"), overrides.get("model.variant"), config.get("model.variant")
    )
    seeds = config.get("run.seeds")
    seed = _first(
        summary.get("seed"),
        sweep_entry.get("seed"),
        config.get("seed"),
        seeds[0] if isinstance(seeds, (list, tuple)) and len(seeds) == 1 else None,
    )
    row: dict[str, Any] = {
        "name": name,
        "variant": str(variant) if variant is not None else "unknown",
        "seed": int(seed) if seed is not None else None,
        "status": status,
        "group": group,
        "path": path,
    }
    for key, value in summary.items():
        if key not in ("traceback", *RUN_COLUMNS):
            row[key] = _cell(value)
    if "error" in summary:
        row["error"] = str(summary["error"])
    row.update({f"override/{k}": _cell(v) for k, v in overrides.items()})
    row.update({f"config/{k}": _cell(v) for k, v in config.items()})
    return row


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=None if rows else list(RUN_COLUMNS))
    # Metric columns of runs without them (failed, pending) are NaN; keep numeric columns numeric.
    for column in frame.columns:
        if column not in RUN_COLUMNS and frame[column].dtype == object:
            converted = pd.to_numeric(frame[column], errors="coerce")
            present = frame[column].notna()
            if converted[present].notna().all() and present.any():
                frame[column] = converted
    frame["seed"] = frame["seed"].astype("Int64")
    return frame


def _curve_frame(
    run: str,
    variant: str,
    seed: Any,
    status: str,
    lines: list[dict[str, Any]],
    prefixes: Iterable[str] | None,
) -> pd.DataFrame:
    prefixes = tuple(prefixes) if prefixes is not None else None
    records = [
        (line["step"], key, _number(value))
        for line in lines
        if "step" in line
        for key, value in line.items()
        if key != "step" and (prefixes is None or key.startswith(prefixes))
    ]
    frame = pd.DataFrame(records, columns=["step", "key", "value"])
    frame.insert(0, "status", status)
    frame.insert(0, "seed", seed)
    frame.insert(0, "variant", variant)
    frame.insert(0, "run", run)
    return frame


def _concat_curves(frames: list[pd.DataFrame]) -> pd.DataFrame:
    columns = ["run", "variant", "seed", "status", "step", "key", "value"]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(
            {c: pd.Series(dtype=float if c == "value" else object) for c in columns}
        )
    curves = pd.concat(frames, ignore_index=True)
    curves["step"] = curves["step"].astype(int)
    curves["value"] = curves["value"].astype(float)
    return curves


def _plain(value: Any) -> Any:
    """W&B config values: ``{"value": x}`` wrappers (the raw API form) unwrapped."""
    if isinstance(value, Mapping):
        if set(value) == {"value"} or set(value) == {"value", "desc"}:
            return _plain(value["value"])
        return {k: _plain(v) for k, v in value.items() if not str(k).startswith("_")}
    return value


def _cell(value: Any) -> Any:
    """A table cell: lists become tuples (hashable), empty mappings ``None``, null NaN."""
    if isinstance(value, list):
        return tuple(_cell(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True) if value else None
    return value


def _scalar(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _number(value: Any) -> float:
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def _first(*values: Any) -> Any:
    for value in values:
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            return value
    return None
