"""Configs: frozen, typed dataclasses; ``configs/<task>.py`` files; strict ``--set`` overrides.

A config file exposes ``get_config(arg=None) -> Config`` (and ``sweep(arg=None)`` for studies);
``configs/mnist1d.py:quick`` on the command line means ``get_config("quick")``. Overrides are
``KEY=VALUE`` with dotted keys (``model.variant=CIFG``, ``optim.lr=3e-3``, ``run.seeds=0,1,2``,
``model.spec.peepholes=false``, ``task.args.length=200``). An unknown key, a value of the wrong
type, an invalid choice or variant is a ``ConfigError`` that names the key and what is allowed,
raised before anything compiles.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal

from gatelab import families, specs, tasks, variants

__all__ = [
    "Config",
    "ConfigError",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "TaskConfig",
    "WandbConfig",
    "apply_overrides",
    "did_you_mean",
    "from_dict",
    "load",
    "load_module",
    "load_study",
    "PER_RUN_VALUES",
    "run_values",
    "static_key",
    "to_dict",
    "validate",
    "variant_label",
]


class ConfigError(ValueError):
    """An invalid config or override; the message names the key and what is allowed."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Input encoder -> stacked GatedRNN layers -> readout -> head (``models.SequenceModel``)."""

    variant: str = "lstm"  # a named variant (`gatelab variants`); case does not matter
    spec: dict[str, Any] = dataclasses.field(default_factory=dict)  # spec field overrides
    hidden: int = 64  # hidden units per layer and direction
    layers: int = 1
    bidirectional: bool = False
    readout: Literal["last", "mean", "flatten"] = "last"  # sequence-level tasks only
    encoder: Literal["auto", "none", "linear", "embedding"] = "auto"  # auto: by input kind
    embed: int = 0  # encoder width; 0 means `hidden`
    input_noise: float = 0.0  # std of Gaussian noise on real inputs while training (Greff)
    match_params: str = ""  # a variant name: solve `hidden` to match its parameter count
    unroll: int = 1  # time steps per scan iteration
    # GatedRNN's backward pass: JAX's autodiff, or the hand-written one (weight gradients as
    # large matmuls after the scan); autodiff measured faster on the CPU (GatedRNN's docstring)
    backward: Literal["autodiff", "fused"] = "autodiff"


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    name: str = "mnist1d"
    args: dict[str, Any] = dataclasses.field(default_factory=dict)  # gatelab.tasks.get(**args)


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    name: Literal["adam", "adamw", "sgd"] = "adam"  # sgd is Nesterov momentum (Greff)
    lr: float = 1e-3
    momentum: float = 0.9  # sgd only
    schedule: Literal["constant", "cosine", "warmup_cosine"] = "constant"
    warmup_steps: int = 0  # warmup_cosine only
    clip: float = 1.0  # global-norm gradient clipping; 0 turns it off
    weight_decay: float = 0.0  # adamw (decoupled) and sgd


@dataclasses.dataclass(frozen=True)
class RunConfig:
    steps: int = 2000
    batch_size: int = 64
    seeds: tuple[int, ...] = (0,)  # trained together as one compiled program
    log_every: int = 100  # steps per compiled chunk; metrics are logged between chunks
    eval_every: int = 500  # a multiple of log_every
    checkpoint_every: int = 500  # a multiple of log_every
    keep_checkpoints: int = 2
    eval_batch_size: int = 1000
    group_execution: Literal["auto", "vmap", "map"] = "auto"  # how the runs of a group run
    devices: int = 0  # the group's runs sharded over this many local devices; 0: all of them
    # (on a CPU, `gatelab train` makes one device per usable core, at most one per run)


@dataclasses.dataclass(frozen=True)
class WandbConfig:
    mode: Literal["offline", "online", "disabled"] = "offline"
    project: str = "gatelab"
    entity: str = ""
    group: str = ""  # default: the name of the train workdir or of the sweep directory
    tags: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Config:
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    task: TaskConfig = dataclasses.field(default_factory=TaskConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    run: RunConfig = dataclasses.field(default_factory=RunConfig)
    wandb: WandbConfig = dataclasses.field(default_factory=WandbConfig)

    def replace(self, **changes) -> Config:
        """``replace(model={"hidden": 32})`` or ``replace(model=ModelConfig(...))``."""
        updates = {}
        for name, value in changes.items():
            if isinstance(value, dict):
                value = dataclasses.replace(getattr(self, name), **value)
            updates[name] = value
        return dataclasses.replace(self, **updates)

    @property
    def spec(self) -> families.Spec:
        """The resolved spec: the variant's, with ``model.spec`` overrides applied."""
        return variants.variant(self.model.variant).replace(**self.model.spec)


# --------------------------------------------------------------------------------------------------
# Dicts, JSON and loading.
# --------------------------------------------------------------------------------------------------


def to_dict(config: Config) -> dict[str, Any]:
    """A JSON-ready nested dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(data: dict[str, Any]) -> Config:
    """The inverse of ``to_dict`` (strict: unknown keys are errors)."""
    sections = {}
    for name, cls in _hints(Config).items():
        values = dict(data.get(name, {}))
        hints = _hints(cls)
        unknown = set(values) - set(hints)
        if unknown:
            raise ConfigError(f"unknown key(s) {sorted(unknown)} in section {name!r}")
        sections[name] = cls(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        )
    unknown = set(data) - set(sections)
    if unknown:
        raise ConfigError(f"unknown section(s) {sorted(unknown)}; sections: {sorted(sections)}")
    return Config(**sections)


def load_module(path: str | Path) -> types.ModuleType:
    """Imports a config file by path."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    spec = importlib.util.spec_from_file_location(f"gatelab_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def split_target(target: str) -> tuple[str, str | None]:
    """``configs/mnist1d.py:quick`` -> ``("configs/mnist1d.py", "quick")``."""
    path, _, arg = str(target).partition(":")
    return path, (arg or None)


def _call(module: types.ModuleType, path: str, name: str, arg: str | None) -> Any:
    """``module.name(arg)`` (or ``module.name()`` without an argument)."""
    if not hasattr(module, name):
        raise ConfigError(
            f"{path} has no {name}()" + ("; a study needs one" if name == "sweep" else "")
        )
    return getattr(module, name)(arg) if arg is not None else getattr(module, name)()


def _load(target: str, overrides) -> tuple[Config, types.ModuleType, str, str | None]:
    path, arg = split_target(target)
    module = load_module(path)
    config = apply_overrides(_call(module, path, "get_config", arg), list(overrides))
    validate(config)
    return config, module, path, arg


def load(target: str, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Loads ``path[:arg]``, applies ``KEY=VALUE`` overrides and validates the result."""
    return _load(target, overrides)[0]


def load_study(target: str, overrides: list[str] | tuple[str, ...] = ()) -> tuple[Config, Any]:
    """The base config of ``path[:arg]`` (as ``load`` gives it) and what its ``sweep(arg)``
    returns (a ``gatelab.study.Sweep``, or a list of override dicts)."""
    config, module, path, arg = _load(target, overrides)
    return config, _call(module, path, "sweep", arg)


# --------------------------------------------------------------------------------------------------
# What the runs of one compiled program share.
# --------------------------------------------------------------------------------------------------

# Config values that may differ between the runs of one compiled program, by their name in the
# run's state and summary (``hparams/<name>``).
PER_RUN_VALUES: dict[str, tuple[str, str]] = {
    "lr": ("optim", "lr"),
    "weight_decay": ("optim", "weight_decay"),
    "momentum": ("optim", "momentum"),
    "clip": ("optim", "clip"),
    "input_noise": ("model", "input_noise"),
}


def run_values(config: Config) -> dict[str, float]:
    """The per-run values of ``config`` (``PER_RUN_VALUES``)."""
    return {name: getattr(getattr(config, s), k) for name, (s, k) in PER_RUN_VALUES.items()}


def static_key(config: Config) -> str:
    """What must be equal for runs to share one compiled program (seed and values excluded)."""
    data = to_dict(config)
    data["run"].pop("seeds")
    data["run"].pop("devices")  # where a group runs, not what it computes
    data.pop("wandb")
    for section, key in PER_RUN_VALUES.values():
        data[section].pop(key)
    data["model"]["noisy"] = config.model.input_noise > 0  # noise on or off changes the program
    return json.dumps(data, sort_keys=True)


def variant_label(config: Config) -> str:
    """What a report calls the run's cell: the variant, with any spec overrides in brackets
    (``lstm[forget_bias=0.0]``), so that studies of one variant's settings stay apart."""
    overrides = ", ".join(f"{k}={v}" for k, v in sorted(config.model.spec.items()))
    return f"{config.model.variant}[{overrides}]" if overrides else config.model.variant


# --------------------------------------------------------------------------------------------------
# Strict overrides.
# --------------------------------------------------------------------------------------------------


def override_keys() -> list[str]:
    """Every ``--set`` key with its type and default, for ``--help``."""
    lines = []
    default = Config()
    for section, cls in _hints(Config).items():
        for key, hint in _hints(cls).items():
            value = getattr(getattr(default, section), key)
            lines.append(f"{section}.{key} ({_type_name(hint)}, default {value!r})")
    return lines


def _type_name(hint) -> str:
    if typing.get_origin(hint) is Literal:
        return "|".join(str(a) for a in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        return f"comma-separated {typing.get_args(hint)[0].__name__}s"
    if typing.get_origin(hint) is dict:
        return "sub-keys"
    return getattr(hint, "__name__", str(hint))


def _parse(key: str, text: str, hint) -> Any:
    """``text`` as a value of type ``hint``, or a ConfigError naming ``key``."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if text not in choices:
            raise ConfigError(
                f"{key}={text!r} is not allowed; choices: {', '.join(map(str, choices))}"
            )
        return text
    if origin is tuple:
        item = typing.get_args(hint)[0]
        parts = [p for p in text.replace("[", "").replace("]", "").split(",") if p.strip()]
        return tuple(_parse(key, p.strip(), item) for p in parts)
    if hint is bool:
        lowered = text.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ConfigError(f"{key}={text!r} must be true or false")
    if hint is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{key}={text!r} must be an integer") from None
    if hint is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{key}={text!r} must be a number") from None
    if hint is str:
        return text
    return parse_literal(text)


def parse_literal(text: str) -> Any:
    """A free-form value (spec fields, task arguments): JSON-ish, else the string itself."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def did_you_mean(word: str, choices, prefix: str = "") -> str:
    """`` (did you mean <prefix><closest>?)`` for a mistyped name, or nothing."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def apply_overrides(config: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """Applies ``KEY=VALUE`` strings; raises ``ConfigError`` naming the key on any problem."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not KEY=VALUE")
        section, _, rest = key.strip().partition(".")
        sections = _hints(Config)
        if section not in sections:
            raise ConfigError(
                f"unknown key {key!r}{did_you_mean(section, sections)}: the sections are "
                f"{', '.join(sections)} (see `gatelab train --help` for every key)"
            )
        field, _, sub = rest.partition(".")
        fields = _hints(sections[section])
        if field not in fields:
            raise ConfigError(
                f"unknown key {key!r}{did_you_mean(field, fields, section + '.')}; keys of "
                f"{section}: " + ", ".join(f"{section}.{f}" for f in fields)
            )
        hint = fields[field]
        current = getattr(config, section)
        if typing.get_origin(hint) is dict:
            if not sub:
                raise ConfigError(f"{key} takes sub-keys, e.g. {key}.NAME=VALUE")
            value = {**getattr(current, field), sub: parse_literal(text.strip())}
        else:
            if sub:
                raise ConfigError(f"unknown key {key!r}: {section}.{field} has no sub-keys")
            value = _parse(key, text.strip(), hint)
        config = dataclasses.replace(
            config, **{section: dataclasses.replace(current, **{field: value})}
        )
    return config


# --------------------------------------------------------------------------------------------------
# Validation: everything that would otherwise fail after compiling.
# --------------------------------------------------------------------------------------------------


def _check_types(config: Config) -> None:
    for section, cls in _hints(Config).items():
        for key, hint in _hints(cls).items():
            value = getattr(getattr(config, section), key)
            name = f"{section}.{key}"
            origin = typing.get_origin(hint)
            if origin is Literal:
                if value not in typing.get_args(hint):
                    choices = ", ".join(map(str, typing.get_args(hint)))
                    raise ConfigError(f"{name}={value!r} is not allowed; choices: {choices}")
            elif origin is tuple:
                item = typing.get_args(hint)[0]
                if not isinstance(value, tuple) or not all(
                    isinstance(v, item) and not isinstance(v, bool) for v in value
                ):
                    raise ConfigError(f"{name}={value!r} must be a tuple of {item.__name__}")
            elif origin is dict:
                if not isinstance(value, dict):
                    raise ConfigError(f"{name}={value!r} must be a dict")
            elif hint is float:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ConfigError(f"{name}={value!r} must be a number")
                if not math.isfinite(value):
                    raise ConfigError(f"{name}={value!r} must be finite")
            elif not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
                raise ConfigError(f"{name}={value!r} must be a {hint.__name__}")


def _check_regularisers(config: Config) -> None:
    """What the regulariser fields need of the model, before anything is built or written."""
    spec = config.spec
    projection = getattr(spec, "projection", 0)
    if projection and not config.model.match_params and projection >= config.model.hidden:
        raise ConfigError(
            f"model.spec.projection={projection} must be smaller than model.hidden="
            f"{config.model.hidden} (LSTMP projects h to P < H; 0: no projection)"
        )
    if config.model.backward == "fused" and families.regularise.regularised(spec):
        raise ConfigError(
            "model.backward=fused does not take regularisers (model.spec's dropout, zoneout, "
            "weight_drop, layer_norm); allowed: model.backward=autodiff"
        )


def validate(config: Config) -> None:
    """Raises ``ConfigError`` for anything invalid, naming the key and what is allowed."""
    _check_types(config)
    try:
        variants.lookup(config.model.variant)
    except ValueError as error:
        raise ConfigError(f"model.variant: {error}") from None
    base = variants.variant(config.model.variant)
    fields = [f.name for f in specs.ordered_fields(base)]
    unknown = set(config.model.spec) - set(fields)
    regularisers = sorted(unknown & set(families.regularise.FIELDS))
    if regularisers:
        raise ConfigError(
            f"model.spec.{regularisers[0]} does not apply to {type(base).__name__} "
            f"(variant {config.model.variant!r}): the regularisers and the projection are fields "
            "of the LSTM and GRU families (LSTMSpec, GRUSpec); its fields: " + ", ".join(fields)
        )
    if unknown:
        raise ConfigError(
            f"unknown key(s) model.spec.{', model.spec.'.join(sorted(unknown))}"
            f"{did_you_mean(sorted(unknown)[0], fields, 'model.spec.')} for "
            f"{type(base).__name__}; its fields: {', '.join(fields)}"
        )
    try:
        config.spec  # noqa: B018  (validates the overridden spec)
    except ValueError as error:
        raise ConfigError(f"model.spec: {error}") from None
    _check_regularisers(config)
    if config.model.match_params:
        try:
            variants.lookup(config.model.match_params)
        except ValueError as error:
            raise ConfigError(f"model.match_params: {error}") from None
    if config.task.name not in tasks.NAMES:
        raise ConfigError(
            f"task.name={config.task.name!r} is not a task; choices: {', '.join(tasks.NAMES)}"
        )
    try:
        tasks.check_arguments(config.task.name, config.task.args)
    except ValueError as error:
        raise ConfigError(f"task.args: {error}") from None
    positive = {
        "model.hidden": config.model.hidden,
        "model.layers": config.model.layers,
        "model.unroll": config.model.unroll,
        "run.steps": config.run.steps,
        "run.batch_size": config.run.batch_size,
        "run.log_every": config.run.log_every,
        "run.eval_every": config.run.eval_every,
        "run.checkpoint_every": config.run.checkpoint_every,
        "run.keep_checkpoints": config.run.keep_checkpoints,
        "run.eval_batch_size": config.run.eval_batch_size,
        "optim.lr": config.optim.lr,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key}={value!r} must be positive")
    for key in ("steps", "eval_every", "checkpoint_every"):
        value = getattr(config.run, key)
        if value % config.run.log_every:
            raise ConfigError(
                f"run.{key}={value} must be a multiple of run.log_every={config.run.log_every}"
            )
    if not config.run.seeds:
        raise ConfigError("run.seeds is empty; give at least one seed, e.g. run.seeds=0")
    if len(set(config.run.seeds)) != len(config.run.seeds):
        raise ConfigError(f"run.seeds={config.run.seeds} has duplicates")
    if config.optim.name == "adam" and config.optim.weight_decay:
        raise ConfigError("optim.weight_decay needs optim.name=adamw (or sgd), not adam")
    if config.model.input_noise < 0:
        raise ConfigError(f"model.input_noise={config.model.input_noise} must be >= 0")
    if config.run.devices < 0:
        raise ConfigError(
            f"run.devices={config.run.devices} must be >= 0 (0: every local device; 1: one)"
        )
    for key in ("clip", "weight_decay", "momentum"):
        if getattr(config.optim, key) < 0:
            raise ConfigError(f"optim.{key}={getattr(config.optim, key)} must be >= 0")
