"""The record: a run's files and their schema, the directory layout, the W&B mirror.

The local record is the source of truth (docs/design.md, "The record"). Every directory of runs,
a ``gatelab train`` workdir as much as a sweep, has one layout::

    DIR/sweep.json              the runs, their overrides, seeds, groups and statuses (the index)
    DIR/<run>/config.json       {"config", "resolved", "code_version", "wandb_id"}; written once,
                                and a later start with a different config is refused
    DIR/<run>/metrics.jsonl     one JSON object per logged step, appended and flushed per chunk
    DIR/<run>/summary.json      a ``Summary``: flat keys with slashes, replaced atomically
    DIR/<run>/wandb/            the W&B run's files (offline by default)
    DIR/groups/<group>/checkpoints/   the group's stacked orbax checkpoints
    DIR/groups/<group>/lock     claimed (``flock``) by the process training the group

A two-stage study keeps one such directory per stage, ``DIR/tune`` and ``DIR/test``; ``find``
says what a directory holds. W&B is a mirror: it never decides anything, and a W&B failure only
warns. This module imports neither JAX nor the runner, so readers (the report) stay light.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "INDEX",
    "STATUSES",
    "CheckpointError",
    "FINISHED",
    "Study",
    "Summary",
    "TunedRate",
    "RunRecord",
    "RunWriter",
    "WandbMirror",
    "best_learning_rates",
    "code_version",
    "config_difference",
    "disk_full",
    "find",
    "flatten",
    "gate_columns",
    "group_claimed",
    "group_dir",
    "group_name",
    "live_status",
    "read_index",
    "read_json",
    "read_json_or_none",
    "read_metrics",
    "read_summary",
    "update_index",
    "write_index",
    "write_json_atomic",
]

INDEX = "sweep.json"  # the index of a directory of runs
INDEX_LOCK = ".sweep.lock"  # held while the index is written
# A run's status, in the order reports count them; ``pending``: not started (no summary yet).
STATUSES = ("completed", "diverged", "failed", "running", "pending")
FINISHED = ("completed", "diverged")  # a finished run is never trained again


# ==================================================================================================
# JSON files.
# ==================================================================================================


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
    try:
        with open(tmp, "w") as f:
            json.dump(_clean(data), f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk or a kill of the writer: the old file stays
        raise


class CheckpointError(RuntimeError):
    """No checkpoint of a group restores (each newer one was damaged); nothing was changed."""


def disk_full(error: BaseException) -> str | None:
    """What a full disk stopped writing, where ``error`` (or an error behind it) says the disk
    is full: ``ENOSPC``, or the ``RESOURCE_EXHAUSTED ... No space left`` that orbax's writers
    raise. ``None`` for any other error."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return str(error.filename or "a file")
        text = str(error)
        if "No space left on device" in text or "os_error_code='28'" in text:
            paths = [part for part in text.split('"')[1::2] if part.startswith("/")]
            return paths[0] if paths else "a file"
        error = error.__cause__ or error.__context__
    return None


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def read_json_or_none(path: Path) -> Any:
    """``read_json``, or ``None`` for a file that is missing or cannot be read."""
    try:
        return read_json(path)
    except (OSError, json.JSONDecodeError):
        return None


def _line(row: dict[str, Any]) -> str:
    """One line of a ``metrics.jsonl``."""
    return json.dumps(_clean(row), sort_keys=True) + "\n"


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


@functools.cache
def code_version() -> str:
    """``gatelab <version>`` plus the git commit of the source tree, where there is one.

    Once per process (two ``git`` calls): the code a process runs does not change while it runs,
    and a sweep writes its index at every group's start and end."""
    try:
        version = f"gatelab {importlib.metadata.version('gatelab')}"
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        version = "gatelab (not installed)"
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


def cpu_info() -> dict[str, str]:
    """The fields of ``/proc/cpuinfo`` (its last CPU's), empty where there is none (macOS)."""
    path = Path("/proc/cpuinfo")
    text = path.read_text() if path.exists() else ""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in fields.items()}


# The widest vector instructions, widest first: x86 flags, then Arm's.
_VECTOR_ISAS = ("avx512f", "avx2", "avx", "sve2", "sve", "asimd")


@functools.cache
def host_cpu() -> str:
    """This machine's CPU as a run's record keeps it: its model, architecture and widest vector
    instructions, e.g. ``AMD EPYC (x86_64, avx512)``.

    XLA compiles for the host it runs on, so the same seed and code give other last bits on a CPU
    with other vector instructions, and after thousands of steps other accuracies: records are
    reproducible on one kind of machine, not across them."""
    fields = cpu_info()
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    isa = next((f for f in _VECTOR_ISAS if f in flags), "")
    model = fields.get("model name") or platform.processor() or "unknown CPU"
    details = [platform.machine(), isa.removesuffix("f")]
    return f"{model} ({', '.join(d for d in details if d)})"


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


# ==================================================================================================
# The summary: one schema for the runner that writes it and every reader.
# ==================================================================================================

# The metric keys of a summary: ``eval/<m>`` the best validation value, ``test/<m>`` the test
# metric at the best-validation parameters, ``final/test/<m>`` and ``final/eval/<m>`` at the last
# step (``train/<m>`` in the metrics lines).
METRIC_SPLITS = ("eval/", "test/", "final/", "train/")


@dataclasses.dataclass
class Summary:
    """A run's ``summary.json``: written by the runner (and by a sweep for a run that failed),
    read by the report, the sweep's stages, ``gatelab inspect`` and the tests.

    On disk the keys are flat with slashes (``params/total``, ``gates/layer0/forget/mean``,
    ``test/accuracy``), so that W&B's summary and a table's columns take them as they are;
    ``to_json`` and ``from_json`` are the only places that know that layout.

    Attributes:
        status: ``running``, ``completed``, ``diverged`` or ``failed``.
        variant: the variant label (``config.variant_label``).
        spec: the resolved spec, as the line a user types.
        task: the task's name; seed, hidden: the run's seed and hidden size.
        primary_metric, direction, chance: the task's primary metric, whether higher
            (``max``) or lower (``min``) is better, and its chance level.
        step, steps: the steps done and to do; best_step: the best validation step.
        diverged_step: the step whose loss was non-finite (diverged runs only).
        params: parameter counts, ``total`` and per part (``forget``, ``head``, ...).
        hparams: the per-run values (``lr``, ``momentum``, ...).
        time: ``compile_s``, ``train_s``, ``steps_per_s``.
        metrics: ``{key: value}`` for the metric keys (``eval/<m>``, ``test/<m>``,
            ``final/test/<m>``, ``final/eval/<m>``).
        gates: ``{<layer>/<gate>/<stat>: value}`` at the end of training (stat ``mean``,
            ``low`` the fraction below 0.1, ``high`` above 0.9; ``gatelab.gates``).
        labels, units, directions: per metric name, what the task says a report should call
            it, its unit (``%``: a fraction shown as a percentage) and its direction.
        task_note: what the task says every report of it must say (empty for most).
        error, traceback: for a failed run.
        extra: keys this version does not know, kept as they were.
    """

    status: str
    variant: str | None = None
    spec: str | None = None
    task: str | None = None
    seed: int | None = None
    hidden: int | None = None
    primary_metric: str | None = None
    direction: str | None = None
    chance: float | None = None
    step: int | None = None
    steps: int | None = None
    best_step: int | None = None
    diverged_step: int | None = None
    params: dict[str, int] = dataclasses.field(default_factory=dict)
    hparams: dict[str, float] = dataclasses.field(default_factory=dict)
    time: dict[str, float] = dataclasses.field(default_factory=dict)
    metrics: dict[str, float | None] = dataclasses.field(default_factory=dict)
    gates: dict[str, float] = dataclasses.field(default_factory=dict)
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    units: dict[str, str] = dataclasses.field(default_factory=dict)
    directions: dict[str, str] = dataclasses.field(default_factory=dict)
    task_note: str | None = None
    error: str | None = None
    traceback: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def failed(cls, error: str, traceback: str, **known: Any) -> Summary:
        """The summary of a run that raised (or was invalid): status ``failed``."""
        return cls("failed", error=error, traceback=traceback, **known)

    def to_json(self) -> dict[str, Any]:
        """The flat dict of ``summary.json``; ``None`` fields are left out."""
        flat: dict[str, Any] = {}
        for name in _SCALARS:
            value = getattr(self, name)
            if value is not None:
                flat[name] = value
        for section in _SECTIONS:
            flat.update({f"{section}/{key}": v for key, v in getattr(self, section).items()})
        flat.update(self.metrics)
        flat.update(self.extra)
        return flat

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Summary:
        """The inverse of ``to_json`` (unknown keys go to ``extra``)."""
        fields: dict[str, Any] = {section: {} for section in _SECTIONS}
        fields.update(metrics={}, extra={})
        for key, value in data.items():
            section, _, rest = key.partition("/")
            if key in _SCALARS:
                fields[key] = value
            elif rest and section in _SECTIONS:
                fields[section][rest] = value
            elif key.startswith(METRIC_SPLITS):
                fields["metrics"][key] = value
            else:
                fields["extra"][key] = value
        fields.setdefault("status", "running")
        return cls(**fields)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def metric(self, key: str) -> float | None:
        """A metric key's value (``None`` when absent or non-finite)."""
        value = self.metrics.get(key)
        return value if value is not None and math.isfinite(value) else None


# On disk, a scalar field is a plain key and a section's entries are ``<section>/<key>``: every
# dict field but ``metrics`` (whose keys already hold a split) and ``extra`` is a section.
_SCALARS = tuple(
    f.name for f in dataclasses.fields(Summary) if f.default_factory is dataclasses.MISSING
)
_SECTIONS = tuple(
    f.name
    for f in dataclasses.fields(Summary)
    if f.default_factory is dict and f.name not in ("metrics", "extra")
)


def gate_columns(columns: Iterable[str]) -> list[tuple[str, str, str, str]]:
    """``(column, layer, gate, stat)`` for the gate statistics among flat summary keys."""
    found = []
    for column in columns:
        section, *rest = column.split("/")
        if section == "gates" and len(rest) == 3:
            found.append((column, *rest))
    return found


def read_summary(workdir: str | Path) -> Summary | None:
    """``workdir/summary.json`` as a ``Summary``, or ``None`` if there is none (or it cannot
    be read)."""
    data = read_json_or_none(Path(workdir) / "summary.json")
    return Summary.from_json(data) if isinstance(data, dict) else None


# ==================================================================================================
# The layout of a directory of runs.
# ==================================================================================================


def group_dir(directory: str | Path, group: str) -> Path:
    """Where a group of ``directory`` keeps its checkpoints (``DIR/groups/<group>``)."""
    return Path(directory) / "groups" / group


def group_name(label: str, key: str, runs: Iterable[str]) -> str:
    """A group's name: its first variant and a hash of its program and its runs, so that the same
    pending runs form the same group (and find its checkpoint) when training resumes."""
    digest = hashlib.sha1((key + "|".join(runs)).encode()).hexdigest()
    return f"{label}-{digest[:10]}"


def group_claimed(directory: str | Path, group: str) -> bool:
    """Whether a process holds the claim on ``group`` of ``directory`` now (``gatelab.locks``)."""
    from gatelab import locks  # stdlib only

    return bool(group) and locks.holder(group_dir(directory, group) / locks.LOCK) is not None


def live_status(summary: Summary | None, claimed: bool) -> str:
    """A run's status as an index states it: its summary's when finished, ``running`` while its
    group is claimed (a failed run being retried too), ``failed``, else ``pending`` (not
    started, or interrupted: a summary that says running with no process behind it)."""
    status = summary.status if summary else "pending"
    if status in FINISHED:
        return status
    if claimed:
        return "running"
    return "failed" if status == "failed" else "pending"


def read_index(directory: str | Path) -> dict[str, Any] | None:
    """``DIR/sweep.json``, or ``None`` without one."""
    path = Path(directory) / INDEX
    return read_json(path) if path.exists() else None


def write_index(directory: str | Path, index: dict[str, Any]) -> None:
    """Replaces ``DIR/sweep.json`` (with the code version added); see ``update_index``."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(directory) / INDEX, {**index, "code_version": code_version()})


def update_index(directory: str | Path, make: Callable[[], dict[str, Any]]) -> None:
    """Writes ``DIR/sweep.json`` as ``make()`` returns it, under ``DIR/.sweep.lock``.

    ``make`` reads the statuses from the run records while the lock is held, so that processes
    sharing the directory each write what the records say at that moment, one at a time, and
    none overwrites a newer index with what it read earlier.
    """
    from gatelab import locks  # stdlib only

    Path(directory).mkdir(parents=True, exist_ok=True)
    with locks.claim(Path(directory) / INDEX_LOCK, wait=True, poll_s=0.05):
        write_index(directory, make())


@dataclasses.dataclass(frozen=True)
class Study:
    """What a directory of records holds.

    Attributes:
        root: the directory whose runs are reported (``DIR/test`` for a two-stage study).
        index: ``root/sweep.json``.
        tune: ``DIR/tune`` of a two-stage study, when it holds an index.
    """

    root: Path
    index: dict[str, Any]
    tune: Path | None = None


def find(directory: str | Path) -> Study:
    """The runs ``directory`` holds: a directory of runs (``DIR/sweep.json``) or a two-stage
    study (``DIR/tune/``, ``DIR/test/``, each a directory of runs: the test stage is the one
    reported, the tune stage beside it).

    Raises:
        FileNotFoundError: when ``directory`` holds neither.
    """
    directory = Path(directory)
    test = read_index(directory / "test")
    if test is not None:
        tune = directory / "tune"
        return Study(directory / "test", test, tune if read_index(tune) is not None else None)
    index = read_index(directory)
    if index is None:
        raise FileNotFoundError(
            f"{directory} holds no records: no {INDEX} (written by gatelab train and gatelab "
            f"sweep) and no test/{INDEX} (a two-stage sweep)"
        )
    return Study(directory, index)


# ==================================================================================================
# The learning rate of each setting, from a finished tune stage.
# ==================================================================================================


@dataclasses.dataclass(frozen=True)
class TunedRate:
    """The learning rate chosen for one setting of a tune stage.

    Attributes:
        setting: the runs' overrides without the learning rate and the seed.
        variant: their variant label.
        lr: the learning rate whose completed runs have the best mean validation primary metric
            (``None`` when no run of the setting completed).
        means: ``{lr: (mean, n)}`` over the completed runs with a finite value.
        tried: every learning rate the setting's runs recorded.
        metric: the validation key compared (``eval/<primary metric>``); direction its direction.
        values: ``{lr: (value, ...)}``, every completed run's validation value (the report's
            figure of the metric against the learning rate).
    """

    setting: dict[str, Any]
    variant: str
    lr: float | None
    means: dict[float, tuple[float, int]]
    tried: tuple[float, ...]
    metric: str
    direction: str
    values: dict[float, tuple[float, ...]] = dataclasses.field(default_factory=dict)


def best_learning_rates(directory: str | Path) -> list[TunedRate]:
    """Per setting of the runs in ``directory`` (a tune stage), the learning rate chosen: the one
    whose completed runs have the best mean validation primary metric. The one place that choice
    is made: the test stage trains at it and the report shows it.

    Raises:
        ValueError: when ``directory`` has no index.
    """
    index = read_index(directory)
    if index is None:
        raise ValueError(f"{directory} holds no {INDEX}: not a finished tune stage")
    settings: dict[str, dict[str, Any]] = {}
    for run in index["runs"]:
        summary = read_summary(Path(directory) / run["name"])
        if summary is None or "lr" not in summary.hparams:
            continue
        setting = {k: v for k, v in run["overrides"].items() if k not in ("optim.lr", "run.seeds")}
        entry = settings.setdefault(
            json.dumps(setting, sort_keys=True),
            {"setting": setting, "variant": summary.variant, "values": {}, "tried": set()},
        )
        lr = summary.hparams["lr"]
        entry["tried"].add(lr)
        value = summary.metric(f"eval/{summary.primary_metric}")
        if summary.status == "completed" and value is not None:
            entry["values"].setdefault(lr, []).append(value)
            entry["metric"] = f"eval/{summary.primary_metric}"
            entry["direction"] = summary.direction
    chosen = []
    for entry in settings.values():
        means = {lr: (float(np.mean(v)), len(v)) for lr, v in sorted(entry["values"].items())}
        direction = entry.get("direction", "max")
        pick = max if direction == "max" else min
        lr = pick(means, key=lambda lr: means[lr][0]) if means else None  # noqa: B023
        chosen.append(
            TunedRate(
                entry["setting"],
                str(entry["variant"]),
                lr,
                means,
                tuple(sorted(entry["tried"])),
                entry.get("metric", ""),
                direction,
                {lr: tuple(v) for lr, v in sorted(entry["values"].items())},
            )
        )
    return chosen


# ==================================================================================================
# A run's files.
# ==================================================================================================


# What may change between starts of the same run, as it does not change what is computed:
# where it is mirrored, and over how many devices its group is sharded.
_MUTABLE_SECTIONS = ("wandb",)
_MUTABLE_KEYS = (("run", "devices"),)


def _fixed(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict without what may change between starts (``_MUTABLE_*``)."""
    fixed = {k: dict(v) if isinstance(v, dict) else v for k, v in config.items()}
    for section in _MUTABLE_SECTIONS:
        fixed.pop(section, None)
    for section, key in _MUTABLE_KEYS:
        if isinstance(fixed.get(section), dict):
            fixed[section].pop(key, None)
    return fixed


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
        stored = self.check(self.workdir, config)  # before anything is written
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "config.json"
        self.metrics_path = self.workdir / "metrics.jsonl"
        self.summary_path = self.workdir / "summary.json"
        if stored is not None:
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

    @staticmethod
    def check(workdir: Path, config: dict[str, Any]) -> dict[str, Any] | None:
        """``workdir/config.json`` (``None`` without one), once its config is ``config``.

        Raises:
            ValueError: for a different config, listing every difference.
        """
        path = Path(workdir) / "config.json"
        if not path.exists():
            return None
        stored = read_json(path)
        old, new = _fixed(stored["config"]), _fixed(config)
        difference = config_difference(old, new)
        if difference:
            raise ValueError(
                f"{workdir} holds a run with a different config; use another workdir or delete "
                "it. Differences (stored -> requested):\n  " + "\n  ".join(difference)
            )
        return stored

    def summary(self) -> Summary | None:
        """The current summary, or ``None`` if there is none (or it cannot be read)."""
        return read_summary(self.workdir)

    def write_summary(self, summary: Summary) -> None:
        write_json_atomic(self.summary_path, summary.to_json())

    def truncate(self, step: int) -> None:
        """Drops every logged line after ``step`` (resuming from a checkpoint at ``step``)."""
        rows = [row for row in read_metrics(self.metrics_path) if row["step"] <= step]
        tmp = self.metrics_path.with_name(".metrics.jsonl.tmp")
        with open(tmp, "w") as f:
            f.writelines(_line(row) for row in rows)
        os.replace(tmp, self.metrics_path)

    def log(self, row: dict[str, Any]) -> None:
        """Appends one line (``row`` holds ``step``) and flushes it to disk."""
        with open(self.metrics_path, "a") as f:
            f.write(_line(row))
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


class RunWriter:
    """A run's local record and its W&B mirror, written together: one call per row."""

    def __init__(self, record: RunRecord, mirror: WandbMirror):
        self.record = record
        self.mirror = mirror

    def log(self, row: dict[str, Any]) -> None:
        """One metrics line (``row`` holds ``step``), in the record and the mirror."""
        self.record.log(row)
        self.mirror.log(row)

    def write(self, summary: Summary) -> None:
        """The summary so far (a running run's), locally."""
        self.record.write_summary(summary)

    def finish(self, summary: Summary) -> None:
        """The final summary, in the record and the mirror, which is then closed."""
        self.record.write_summary(summary)
        self.mirror.finish(summary.to_json())
