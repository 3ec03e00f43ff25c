"""The W&B sweep equivalent to a study, for teams with a W&B server (``gatelab sweep
--wandb-sweep``): each agent run is one ``gatelab train`` of one seed, logged online."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from gatelab import config as config_lib
from gatelab import study as study_lib
from gatelab import tasks

__all__ = ["wandb_sweep_config"]


def wandb_sweep_config(target: str, overrides: Sequence[str] = ()) -> dict:
    """The W&B sweep of ``target``'s study (``path[:arg]``), as a dict for its YAML.

    Grids and random searches keep their axes and distributions; a plain list becomes a grid over
    the values each key takes. Seeds are enumerated one per run.
    """
    base, study = config_lib.load_study(target, overrides)
    study = study_lib.as_sweep(study)
    parameters = dict(study.parameters)
    if not parameters:
        keys = {k for run in study.runs for k in run if not k.startswith("_")}
        parameters = {
            k: {
                "values": [
                    json.loads(v) for v in sorted({json.dumps(r[k]) for r in study.runs if k in r})
                ]
            }
            for k in keys
        }
    # One seed per agent run: each W&B run mirrors exactly one gatelab run.
    seeds = set(base.run.seeds)
    for value in parameters.pop("run.seeds", {}).get("values", []):
        seeds |= set(value) if isinstance(value, (list, tuple)) else {value}
    parameters["run.seeds"] = {"values": sorted(seeds)}
    task = tasks.TASKS[base.task.name]  # its primary metric, without building its data
    command = ["${env}", "gatelab", "train", target, "--quiet", "wandb.mode=online"]
    command += list(overrides) + ["${args_no_hyphens}"]
    config = {
        "name": Path(config_lib.split_target(target)[0]).stem,
        "method": "random" if study.kind == "random" else "grid",
        "metric": {
            "name": f"eval/{task.primary_metric}",
            "goal": "maximize" if task.direction == "max" else "minimize",
        },
        "parameters": parameters,
        "command": command,
    }
    if study.kind == "random":
        config["run_cap"] = len(study.runs)
    return config
