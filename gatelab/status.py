"""Where a sweep stands, across every process, job and machine that shares its directory.

``gatelab status DIR`` reads only the records: ``sweep.json`` for the runs and their groups,
each run's ``summary.json`` and ``metrics.jsonl`` for its status and step, and each group's lock
(``gatelab.locks``) for who is training it now. A run is

- ``done``: completed or diverged (finished; never trained again);
- ``running``: its group is claimed by a live process (which one, and since when);
- ``failed``: its summary says so (the first line of its error is shown);
- ``pending``: not started, or interrupted (its summary says running but no process holds its
  group: a kill, a preempted job); the next sweep resumes it from its last checkpoint.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from pathlib import Path
from typing import Any

from gatelab import locks, records

__all__ = ["RunState", "GroupState", "collect", "render", "stage_directories"]

STATES = ("done", "running", "failed", "pending")


@dataclasses.dataclass(frozen=True)
class RunState:
    name: str
    group: str
    state: str  # one of STATES
    status: str  # the summary's own status (completed, diverged, ...), or pending
    step: int  # the last logged step
    steps: int | None  # the run's budget, when its config says
    error: str = ""  # a failed run's first error line
    note: str = ""  # e.g. "interrupted at step 400"


@dataclasses.dataclass(frozen=True)
class GroupState:
    name: str
    runs: tuple[RunState, ...]
    holder: dict[str, Any] | None  # who trains it now (locks.holder), None when nobody

    def counts(self) -> dict[str, int]:
        found = collections.Counter(run.state for run in self.runs)
        return {state: found[state] for state in STATES}


def stage_directories(directory: str | Path) -> list[Path]:
    """The directories of runs under ``directory``: itself, or a two-stage study's stages."""
    directory = Path(directory)
    if records.read_index(directory) is not None:
        return [directory]
    stages = [directory / s for s in ("tune", "test") if records.read_index(directory / s)]
    if not stages:
        raise FileNotFoundError(
            f"{directory} holds no sweep: no {records.INDEX} there nor in tune/ or test/ "
            "(gatelab sweep and gatelab train write it)"
        )
    return stages


def _last_step(path: Path) -> int:
    lines = records.read_metrics(path) if path.exists() else []
    return int(lines[-1]["step"]) if lines else 0


def _run(directory: Path, entry: dict[str, Any], held: bool) -> RunState:
    run_dir = directory / entry["name"]
    summary = records.read_summary(run_dir)
    stored = records.read_json_or_none(run_dir / "config.json") or {}
    steps = stored.get("config", {}).get("run", {}).get("steps")
    group = entry.get("group") or stored.get("resolved", {}).get("group", "")
    step = _last_step(run_dir / "metrics.jsonl")
    status = summary.status if summary else "pending"
    live = records.live_status(summary, held)  # a failed group being retried is running
    state = "done" if live in records.FINISHED else live
    note = error = ""
    if state == "failed" and summary.error:
        error = summary.error.strip().splitlines()[0]
    elif state == "pending" and step:
        note = f"interrupted at step {step}; resumes from its last checkpoint"
    return RunState(entry["name"], group, state, status, step, steps, error, note)


def collect(directory: str | Path) -> list[GroupState]:
    """Every group of the directory of runs ``directory`` (its index's order), with its runs."""
    directory = Path(directory)
    index = records.read_index(directory)
    if index is None:
        raise FileNotFoundError(f"{directory} holds no {records.INDEX}")
    by_group: dict[str, list[dict]] = {}
    for entry in index["runs"]:
        by_group.setdefault(entry.get("group") or "", []).append(entry)
    groups = []
    for name, entries in by_group.items():
        holder = locks.holder(records.group_dir(directory, name) / locks.LOCK) if name else None
        runs = tuple(_run(directory, e, holder is not None) for e in entries)
        groups.append(GroupState(name, runs, holder))
    return groups


def _table(rows: list[list[str]], headers: list[str]) -> list[str]:
    widths = [max(len(c) for c in column) for column in zip(headers, *rows, strict=True)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    return [line(headers).rstrip()] + [line(r).rstrip() for r in rows]


def render(directory: Path, groups: list[GroupState], *, runs: bool = True) -> str:
    """The text ``gatelab status`` prints for one directory of runs."""
    every = [run for group in groups for run in group.runs]
    totals = collections.Counter(run.state for run in every)
    finished = collections.Counter(run.status for run in every if run.state == "done")
    done = ", ".join(f"{finished[s]} {s}" for s in records.FINISHED if finished[s])
    head = (
        f"{directory}: {len(every)} runs in {len(groups)} groups: {totals['done']} done"
        + (f" ({done})" if done else "")
        + "".join(f", {totals[s]} {s}" for s in STATES[1:])
    )
    lines = [head, ""]
    rows = [
        [group.name or "(none)", str(len(group.runs))]
        + [str(group.counts()[s]) for s in STATES]
        + [locks.describe(group.holder) if group.holder is not None else ""]
        for group in groups
    ]
    lines += _table(rows, ["group", "runs", *STATES, "trained by"])
    if runs:
        lines += ["", "runs:"]
        rows = [
            [
                run.name,
                run.state,
                run.status if run.status != run.state else "",
                f"{run.step}/{run.steps}" if run.steps else str(run.step),
                run.note,
            ]
            for run in every
        ]
        lines += ["  " + line for line in _table(rows, ["run", "state", "status", "step", ""])]
    failed = [run for run in every if run.state == "failed"]
    if failed:
        lines += ["", f"failed ({len(failed)}):"]
        lines += [f"  {run.name}: {run.error or '(no error recorded)'}" for run in failed]
    return "\n".join(lines)


def as_json(directory: Path, groups: list[GroupState]) -> dict[str, Any]:
    """``collect``'s answer as JSON (``gatelab status --json``)."""
    return {
        "directory": str(directory),
        "groups": [
            {
                "name": group.name,
                "holder": group.holder,
                "counts": group.counts(),
                "runs": [dataclasses.asdict(run) for run in group.runs],
            }
            for group in groups
        ],
    }


def main(directory: str | Path, *, runs: bool = True, as_json_output: bool = False) -> int:
    """Prints the status of every directory of runs under ``directory`` (``--json``: as JSON)."""
    parts = []
    for stage in stage_directories(directory):
        groups = collect(stage)
        parts.append(as_json(stage, groups) if as_json_output else render(stage, groups, runs=runs))
    if as_json_output:
        print(json.dumps(parts if len(parts) > 1 else parts[0], indent=1))
    else:
        print("\n\n".join(parts))
    return 0
