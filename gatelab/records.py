"""The local run record (the source of truth) and its W&B mirror (DESIGN.md, "The record").

A run's workdir holds::

    config.json      {"config": the run's config, "resolved": spec/hidden/params,
                      "code_version", "wandb_id"}; written once, and a later start with a
                      different config is refused
    metrics.jsonl    one JSON object per logged step, appended and flushed per chunk
    summary.json     flat keys with slashes, replaced atomically (write + rename)
    wandb/           the W&B run's files (offline by default)

W&B is a mirror: it never decides anything, and a W&B failure only warns.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import uuid
import warnings
from pathlib import Path
from typing import Any

__all__ = [
    "RunRecord",
    "WandbMirror",
    "code_version",
    "config_difference",
    "flatten",
    "read_json",
    "read_json_or_none",
    "write_json_atomic",
    "read_metrics",
]


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item"):  # numpy and jax scalars
        return _clean(value.item())
    return value


def write_json_atomic(path: Path, data: Any) -> None:
    """Writes ``data`` as JSON to ``path`` via a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(_clean(data), f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def read_json_or_none(path: Path) -> Any:
    """``read_json``, or ``None`` for a file that is missing or cannot be read."""
    try:
        return read_json(path)
    except (OSError, json.JSONDecodeError):
        return None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The lines of a ``metrics.jsonl`` (a torn last line, from a kill mid-write, is skipped)."""
    rows = []
    if not Path(path).exists():
        return rows
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return rows


def code_version() -> str:
    """``gatelab <version>`` plus the git commit of the source tree, where there is one."""
    from gatelab import __version__

    version = f"gatelab {__version__}"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        if commit.returncode == 0:
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=Path(__file__).parent,
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            version += f" ({commit.stdout.strip()}{'+dirty' if dirty else ''})"
    except (OSError, subprocess.SubprocessError):
        pass
    return version


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    flat = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def config_difference(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Lines ``key: old -> new`` for every differing flattened key."""
    a, b = flatten(old), flatten(new)
    return [
        f"{key}: {a.get(key, '(absent)')!r} -> {b.get(key, '(absent)')!r}"
        for key in sorted(set(a) | set(b))
        if a.get(key, "(absent)") != b.get(key, "(absent)")
    ]


# Sections that may change between starts of the same run: they do not change what is computed.
_MUTABLE_SECTIONS = ("wandb",)


class RunRecord:
    """One run's directory: config, metrics and summary.

    Args:
        workdir: the run's directory (created).
        config: the run's config as a dict (``config.to_dict``).
        resolved: derived facts worth keeping (spec, hidden size, parameter count).

    Raises:
        ValueError: when the directory holds a run with a different config; the message lists
            every difference.
    """

    def __init__(self, workdir: Path, config: dict[str, Any], resolved: dict[str, Any]):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "config.json"
        self.metrics_path = self.workdir / "metrics.jsonl"
        self.summary_path = self.workdir / "summary.json"
        compared = {k: v for k, v in config.items() if k not in _MUTABLE_SECTIONS}
        if self.config_path.exists():
            stored = read_json(self.config_path)
            old = {k: v for k, v in stored["config"].items() if k not in _MUTABLE_SECTIONS}
            difference = config_difference(old, compared)
            if difference:
                raise ValueError(
                    f"{self.workdir} holds a run with a different config; use another workdir "
                    "or delete it. Differences (stored -> requested):\n  " + "\n  ".join(difference)
                )
            self.wandb_id = stored.get("wandb_id") or uuid.uuid4().hex[:12]
            # The derived part can change (a run retrained in another group of a sweep).
            updated = {**stored, "config": config, "resolved": resolved, "wandb_id": self.wandb_id}
            if updated != stored:
                write_json_atomic(self.config_path, updated)
        else:
            self.wandb_id = uuid.uuid4().hex[:12]
            write_json_atomic(
                self.config_path,
                {
                    "config": config,
                    "resolved": resolved,
                    "code_version": code_version(),
                    "wandb_id": self.wandb_id,
                },
            )

    def summary(self) -> dict[str, Any] | None:
        """The current summary, or ``None`` if there is none (or it cannot be read)."""
        return self.read_summary(self.workdir)

    @staticmethod
    def read_summary(workdir: Path) -> dict[str, Any] | None:
        """``workdir/summary.json``, or ``None`` if there is none (or it cannot be read)."""
        return read_json_or_none(Path(workdir) / "summary.json")

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json_atomic(self.summary_path, summary)

    def truncate(self, step: int) -> None:
        """Drops every logged line after ``step`` (resuming from a checkpoint at ``step``)."""
        rows = [row for row in read_metrics(self.metrics_path) if row["step"] <= step]
        tmp = self.metrics_path.with_name(".metrics.jsonl.tmp")
        with open(tmp, "w") as f:
            for row in rows:
                f.write(json.dumps(_clean(row), sort_keys=True) + "\n")
        os.replace(tmp, self.metrics_path)

    def log(self, row: dict[str, Any]) -> None:
        """Appends one line (``row`` holds ``step``) and flushes it to disk."""
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(_clean(row), sort_keys=True) + "\n")
            f.flush()


class WandbMirror:
    """One W&B run mirroring one local record; every failure is a warning, never an error.

    Args:
        mode: ``offline`` (default: no account, no network; ``wandb sync`` uploads later),
            ``online`` or ``disabled``.
        workdir: the run's directory; W&B writes under ``workdir/wandb``.
        run_id: a stable id, so a resumed run continues the same W&B run.
        name, project, entity, group, tags: W&B's fields.
        config: the flattened config to attach.
        primary: ``(metric, direction)`` for the summary's best value.
    """

    def __init__(
        self,
        mode: str,
        workdir: Path,
        run_id: str,
        name: str,
        project: str,
        entity: str,
        group: str,
        tags: list[str],
        config: dict[str, Any],
        primary: tuple[str, str],
    ):
        self.run = None
        if mode == "disabled":
            return
        os.environ.setdefault("WANDB_SILENT", "true")
        try:
            import wandb

            self.run = wandb.init(
                mode=mode,
                dir=str(workdir),
                id=run_id,
                resume="allow",
                name=name,
                project=project,
                entity=entity or None,
                group=group or None,
                tags=tags,
                config=flatten(config),
                reinit="create_new",
                settings=wandb.Settings(console="off", x_disable_stats=True),
            )
            self.run.define_metric("step")
            self.run.define_metric("*", step_metric="step")
            metric, direction = primary
            self.run.define_metric(f"eval/{metric}", summary=direction)
        except Exception as error:  # noqa: BLE001  (a mirror must never stop a run)
            warnings.warn(f"W&B could not start ({error}); the local record goes on", stacklevel=2)
            self.run = None

    def log(self, row: dict[str, Any]) -> None:
        if self.run is None:
            return
        try:
            self.run.log({k: v for k, v in _clean(row).items() if v is not None}, step=row["step"])
        except Exception as error:  # noqa: BLE001
            warnings.warn(f"W&B logging failed ({error}); continuing without it", stacklevel=2)
            self.run = None

    def finish(self, summary: dict[str, Any]) -> None:
        if self.run is None:
            return
        try:
            for key, value in _clean(summary).items():
                if value is not None and not isinstance(value, (dict, list)):
                    self.run.summary[key] = value
            self.run.finish()
        except Exception as error:  # noqa: BLE001
            warnings.warn(
                f"W&B could not finish ({error}); the local record is complete", stacklevel=2
            )
        self.run = None
