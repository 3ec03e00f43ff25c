"""train_and_evaluate: the compiled runner (DESIGN.md, "Runs, groups and the compiled loop").

The training step is written for one run. A *group* of runs whose programs are identical (the
seeds of a config; in a sweep also learning rates and other per-run values) trains as one
compiled program, the step lifted over the run axis with ``jax.vmap`` (or ``lax.map``). Training
runs in compiled chunks, a ``lax.scan`` over ``run.log_every`` steps with batches drawn inside
from each run's PRNG key; between chunks the host only logs, evaluates and checkpoints.

Notation: ``r`` runs in the group, ``b`` batch, ``t`` time.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from gatelab import config as config_lib
from gatelab import models, records, runtime, tasks
from gatelab.checkpoint import Checkpoints
from gatelab.config import Config

__all__ = [
    "RestoredRun",
    "pad_examples",
    "resolve_run",
    "restore_run",
    "train_and_evaluate",
    "train_group",
    "static_key",
    "PER_RUN_VALUES",
    "make_optimizer",
    "resolve_execution",
]

Array = jax.Array
State = dict[str, Any]

# Config values that may differ between the runs of one compiled program.
PER_RUN_VALUES = {
    "optim.lr": ("optim", "lr"),
    "optim.weight_decay": ("optim", "weight_decay"),
    "optim.momentum": ("optim", "momentum"),
    "optim.clip": ("optim", "clip"),
    "model.input_noise": ("model", "input_noise"),
}
GATE_STATS_EXAMPLES = 256  # validation examples the gate statistics are computed on


def static_key(config: Config) -> str:
    """What must be equal for runs to share one compiled program (seed and values excluded)."""
    data = config_lib.to_dict(config)
    data["run"].pop("seeds")
    data.pop("wandb")
    for section, key in PER_RUN_VALUES.values():
        data[section].pop(key)
    data["model"]["noisy"] = config.model.input_noise > 0  # noise on or off changes the program
    return json.dumps(data, sort_keys=True)


# ==================================================================================================
# The optimizer, from per-run values.
# ==================================================================================================


def make_optimizer(config: Config, values: dict[str, Array]) -> optax.GradientTransformation:
    """The optax chain of ``config.optim`` with per-run ``values`` (arrays, one run's).

    The learning rate multiplies a schedule of the step (constant, cosine, or linear warmup then
    cosine, all to ``run.steps``); gradient clipping happens before, in ``train_step``.
    """
    optim, steps = config.optim, config.run.steps
    match optim.schedule:
        case "constant":
            schedule = optax.constant_schedule(1.0)
        case "cosine":
            schedule = optax.cosine_decay_schedule(1.0, steps)
        case "warmup_cosine":
            schedule = optax.warmup_cosine_decay_schedule(
                0.0, 1.0, max(optim.warmup_steps, 1), steps
            )
    match optim.name:
        case "adam":
            core = optax.scale_by_adam()
        case "adamw":
            core = optax.chain(
                optax.scale_by_adam(), optax.add_decayed_weights(values["weight_decay"])
            )
        case "sgd":
            core = optax.chain(
                optax.add_decayed_weights(values["weight_decay"]),
                optax.trace(decay=values["momentum"], nesterov=True),
            )
    return optax.chain(core, optax.scale_by_schedule(schedule), optax.scale(-values["lr"]))


def _tree_where(condition: Array, new, old):
    return jax.tree_util.tree_map(lambda n, o: jnp.where(condition, n, o), new, old)


# ==================================================================================================
# Group execution: vmap or lax.map over the run axis.
# ==================================================================================================


def resolve_execution(choice: str, runs: int) -> str:
    """``vmap`` or ``map`` for ``run.group_execution``.

    ``auto`` is ``lax.map`` on the CPU, where it measured faster than ``vmap``: 8 runs of an
    LSTM 1.16x (hidden 32) and 1.54x (hidden 128) in experiments/bench, and 1.10-1.16x for
    ``configs/mnist1d.py:demo``'s 5 seeds, pinned to one core or not; there each run's matmuls
    are already big enough for a core, and batching them only adds layout work. On
    accelerators ``vmap``: batching the runs is what fills the device.
    """
    if choice != "auto":
        return choice
    return "map" if jax.default_backend() == "cpu" else "vmap"


def _over_runs(fn: Callable, execution: str, shared: tuple = ()) -> Callable:
    """Lifts ``fn(per_run, *shared)`` to stacked runs."""
    if execution == "vmap":
        return jax.vmap(fn, in_axes=(0,) + (None,) * len(shared))

    @functools.wraps(fn)  # keeps the name (train_chunk, ...) in JAX's compilation logs
    def mapped(stacked, *args):
        return jax.lax.map(lambda one: fn(one, *args), stacked)

    return mapped


# ==================================================================================================
# The run.
# ==================================================================================================


def train_and_evaluate(config: Config, workdir: str | Path, *, quiet: bool = False) -> list[dict]:
    """Trains every seed of ``config`` as one compiled program; records under ``workdir``.

    Each seed's record is ``workdir/seed_<k>/``; the group's stacked checkpoint is
    ``workdir/checkpoints/``. A workdir with a checkpoint resumes from it.

    Returns:
        The seeds' summaries.
    """
    config_lib.validate(config)
    workdir = Path(workdir)
    runs = [
        dataclasses.replace(config, run=dataclasses.replace(config.run, seeds=(s,)))
        for s in config.run.seeds
    ]
    return train_group(
        runs, workdir, [workdir / f"seed_{s}" for s in config.run.seeds], quiet=quiet
    )


def train_group(
    runs: list[Config],
    group_dir: Path,
    run_dirs: list[Path],
    *,
    quiet: bool = False,
    progress_label: str = "",
) -> list[dict]:
    """Trains runs that share one program (one seed each) together; see ``train_and_evaluate``."""
    # ---------------------------------------------------------------------------------- setup --
    config = runs[0]
    for run in runs:
        config_lib.validate(run)
        if len(run.run.seeds) != 1:
            raise ValueError("train_group takes one seed per run")
        if static_key(run) != static_key(config):
            raise ValueError("the runs of a group must differ only in seed and per-run values")
    group_dir = Path(group_dir)
    # Where the records live: a train workdir, or a sweep's directory (whose groups are below
    # it). W&B runs are grouped and named by it, so that a sweep is one W&B group.
    parents = {Path(d).parent for d in run_dirs}
    record_root = parents.pop() if len(parents) == 1 else group_dir
    task = tasks.get(config.task.name, **config.task.args)
    hidden = models.solve_hidden(config, task) if config.model.match_params else config.model.hidden
    model = models.build_model(config, task, hidden)
    seeds = [run.run.seeds[0] for run in runs]
    r = len(runs)
    n_params = models.model_param_count(model, task.input_size, task.seq_len)
    resolved = {"spec": repr(config.spec), "hidden": hidden, "params": n_params}
    checkpoint_dir = (group_dir / "checkpoints").absolute()
    recs = [
        records.RunRecord(
            d,
            config_lib.to_dict(run),
            {
                **resolved,
                # Where this run's parameters live: row `index` of the group's checkpoint.
                "checkpoints": os.path.relpath(checkpoint_dir, Path(d).absolute()),
                "index": i,
                "group": group_dir.name,
            },
        )
        for i, (d, run) in enumerate(zip(run_dirs, runs, strict=True))
    ]
    summaries = [rec.summary() for rec in recs]
    if all(s and s.get("status") in ("completed", "diverged") for s in summaries):
        return summaries  # nothing left to do

    steps, chunk = config.run.steps, config.run.log_every
    if steps % chunk:
        raise config_lib.ConfigError(
            f"run.steps={steps} must be a multiple of run.log_every={chunk}"
        )
    values = {
        name.split(".")[1]: jnp.array([getattr(getattr(run, s), k) for run in runs], jnp.float32)
        for name, (s, k) in PER_RUN_VALUES.items()
    }
    noisy = config.model.input_noise > 0 and task.input_kind == "real"
    data = task.train_data()
    example = task.eval_set("validation")
    example_inputs = jnp.asarray(example["inputs"][:1])

    # ------------------------------------------------------------------------------- programs --
    def init_one(seed: Array, run_values: dict[str, Array]) -> State:
        key = jax.random.key(seed)
        init_key, train_key = jax.random.split(key)
        params = model.init(init_key, example_inputs)["params"]
        return {
            "params": params,
            "opt_state": make_optimizer(config, run_values).init(params),
            "rng": jax.random.key_data(train_key),
            "values": run_values,
            "diverged": jnp.array(False),
            "diverged_step": jnp.array(-1, jnp.int32),
            "best_metric": jnp.array(jnp.inf if task.direction == "min" else -jnp.inf),
            "best_step": jnp.array(-1, jnp.int32),
        }

    def loss_fn(params, batch: dict[str, Array]) -> Array:
        outputs = model.apply({"params": params}, batch["inputs"], batch.get("lengths"))
        return task.loss(outputs, batch)

    def train_step(state: State, step: Array, data: dict[str, Array]):
        """One optimisation step of one run; a non-finite loss or update freezes the run."""
        key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), step)
        batch_key, noise_key = jax.random.split(key)
        batch = task.train_batch(data, batch_key, config.run.batch_size)
        if noisy:  # Greff et al.: Gaussian input noise during training only
            noise = jax.random.normal(noise_key, batch["inputs"].shape, batch["inputs"].dtype)
            batch = {**batch, "inputs": batch["inputs"] + state["values"]["input_noise"] * noise}
        loss, grads = jax.value_and_grad(loss_fn)(state["params"], batch)
        grad_norm = optax.global_norm(grads)
        clip = state["values"]["clip"]
        scale = jnp.where(clip > 0, jnp.minimum(1.0, clip / (grad_norm + 1e-12)), 1.0)
        grads = jax.tree_util.tree_map(lambda g: g * scale, grads)
        tx = make_optimizer(config, state["values"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        finite = (
            jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(optax.global_norm(updates))
        )
        ok = finite & ~state["diverged"]
        state = {
            **state,
            "params": _tree_where(ok, params, state["params"]),
            "opt_state": _tree_where(ok, opt_state, state["opt_state"]),
            "diverged": state["diverged"] | ~finite,
            "diverged_step": jnp.where(
                ~finite & ~state["diverged"], step.astype(jnp.int32), state["diverged_step"]
            ),
        }
        return state, {"loss": loss, "grad_norm": grad_norm}

    def train_chunk(state: State, data: dict[str, Array], start: Array):
        """``run.log_every`` steps of one run from step ``start``: (state, per-step metrics)."""
        return jax.lax.scan(
            lambda s, step: train_step(s, step, data),
            state,
            start + jnp.arange(chunk, dtype=jnp.int32),
        )

    def eval_one(params, batch: dict[str, Array], valid: Array) -> dict[str, tuple[Array, Array]]:
        """Metric totals and weights of one run on a padded batch (``valid`` marks examples)."""
        outputs = model.apply({"params": params}, batch["inputs"], batch.get("lengths"))
        # Per example, so that the padding of the last batch can be masked out: every eval
        # batch has one shape and the evaluation compiles once.
        one = lambda x: x[None]  # noqa: E731
        per_example = jax.vmap(lambda o, b: task.metrics(one(o), jax.tree_util.tree_map(one, b)))(
            outputs, batch
        )
        # Summed on the host in float64: independent of how XLA splits reductions over threads.
        return {
            name: (total * valid, weight * valid) for name, (total, weight) in per_example.items()
        }

    def gates_one(params, batch: dict[str, Array]) -> dict[str, Array]:
        """Per example: the summed activation, counts below 0.1 and above 0.9, and the count of
        valid entries of every live gate. The host sums over examples in float64, so the
        statistics do not depend on how XLA splits a reduction over threads."""
        _, captured = model.apply(
            {"params": params}, batch["inputs"], batch.get("lengths"), mutable=["gates"]
        )
        valid = tasks.masked_steps(batch, batch["inputs"].shape[1])
        sums = {}
        for layer, collection in captured.get("gates", {}).items():
            for gate, value in collection["activations"][0].items():
                steps = jnp.ones(value.shape[:2]) if valid is None else valid
                weight = steps[..., None] * jnp.ones_like(value)
                per_example = lambda v: jnp.sum(v * weight, axis=(1, 2))  # noqa: E731, B023
                sums[f"gates/{layer}/{gate}"] = (
                    per_example(value),
                    per_example((value < 0.1).astype(value.dtype)),
                    per_example((value > 0.9).astype(value.dtype)),
                    per_example(jnp.ones_like(value)),
                )
        return sums

    def gate_statistics(params) -> list[dict[str, float]]:
        """``gates/<layer>/<gate>/{mean,low,high}`` of every run on the gate batch."""
        sums = jax.device_get(gates_fn(params, gate_batch))
        stats = [{} for _ in range(r)]
        for prefix, (value, low, high, count) in sums.items():
            for i in range(r):
                total = np.sum(count[i], dtype=np.float64)
                stats[i][f"{prefix}/mean"] = float(np.sum(value[i], dtype=np.float64) / total)
                stats[i][f"{prefix}/low"] = float(np.sum(low[i], dtype=np.float64) / total)
                stats[i][f"{prefix}/high"] = float(np.sum(high[i], dtype=np.float64) / total)
        return stats

    execution = resolve_execution(config.run.group_execution, r)
    checkpoints = Checkpoints(group_dir / "checkpoints", keep=config.run.keep_checkpoints)

    def init_state(seeds: Array, values: dict[str, Array]) -> State:
        """Every run's fresh state. The best parameters start as a copy made outside the
        compiled init: one array returned as two outputs of a compiled program (XLA elides
        any copy inside) hung XLA's CPU runtime here (jaxlib 0.10.2, hidden 64, 2 runs)."""
        state = runtime.compile_cheap(jax.vmap(init_one), seeds, values)(seeds, values)
        return {**state, "best_params": jax.tree_util.tree_map(jnp.array, state["params"])}

    abstract = jax.eval_shape(jax.vmap(init_one), jnp.array(seeds), values)
    abstract = {**abstract, "best_params": abstract["params"]}
    start_step = checkpoints.latest_step()
    if start_step is not None:
        note = checkpoints.note(start_step)
        if note.get("seeds") != seeds:
            raise ValueError(
                f"{group_dir / 'checkpoints'} belongs to seeds {note.get('seeds')}, not {seeds}"
            )
        execution = note["execution"]  # the program that wrote it continues it
        state, note = checkpoints.restore(start_step, abstract)
    else:
        start_step = 0
        state = init_state(jnp.array(seeds), values)

    for rec in recs:  # lines logged after the checkpoint (or before any) are redone
        rec.truncate(start_step)
    chunk_fn = jax.jit(_over_runs(train_chunk, execution, (None, None)), donate_argnums=0)
    eval_fn = jax.jit(_over_runs(eval_one, execution, (None, None)))
    gates_fn = jax.jit(_over_runs(gates_one, execution, (None,)))

    def select_best(state: State, improved: Array, metric: Array, step: int) -> State:
        pick = lambda new, old: _tree_where(  # noqa: E731
            improved.reshape((-1,) + (1,) * (new.ndim - 1)), new, old
        )
        return {
            **state,
            "best_params": jax.tree_util.tree_map(pick, state["params"], state["best_params"]),
            "best_metric": jnp.where(improved, metric, state["best_metric"]),
            "best_step": jnp.where(improved, step, state["best_step"]),
        }

    select_best_fn = jax.jit(select_best, donate_argnums=0)

    eval_sets = {split: task.eval_set(split) for split in ("validation", "test")}
    gate_batch = {
        k: jnp.asarray(v[:GATE_STATS_EXAMPLES]) for k, v in eval_sets["validation"].items()
    }

    sizes = {split: len(data["targets"]) for split, data in eval_sets.items()}
    eval_size = min(config.run.eval_batch_size, max(sizes.values()))

    def evaluate(params, split: str) -> list[dict[str, float]]:
        """Every run's metrics on the whole split, in batches of one shape (the last padded)."""
        dataset = eval_sets[split]
        totals: dict[str, list] = {}
        for begin in range(0, sizes[split], eval_size):
            count = min(eval_size, sizes[split] - begin)
            batch = {
                k: jnp.asarray(pad_examples(v[begin : begin + count], eval_size))
                for k, v in dataset.items()
            }
            valid = jnp.asarray(np.arange(eval_size) < count, jnp.float32)
            for name, (total, weight) in eval_fn(params, batch, valid).items():
                t, w = totals.setdefault(name, [0.0, 0.0])
                totals[name] = [
                    t + np.sum(np.asarray(total, np.float64), axis=-1),
                    w + np.sum(np.asarray(weight, np.float64), axis=-1),
                ]
        return [
            {f"{split_name(split)}/{k}": float(t[i] / w[i]) for k, (t, w) in totals.items()}
            for i in range(r)
        ]

    # ------------------------------------------------------------------------- W&B mirrors ----
    mirrors = [
        records.WandbMirror(
            mode=run.wandb.mode,
            workdir=d,
            run_id=rec.wandb_id,
            name=f"{record_root.name}/{d.name}",
            project=run.wandb.project,
            entity=run.wandb.entity,
            group=run.wandb.group or record_root.name,
            tags=[run.model.variant, run.task.name, *run.wandb.tags],
            config={**config_lib.to_dict(run), "seed": run.run.seeds[0], "resolved": resolved},
            primary=(task.primary_metric, task.direction),
        )
        for run, d, rec in zip(runs, run_dirs, recs, strict=True)
    ]

    def base_summary(i: int) -> dict[str, Any]:
        one_run = jax.tree_util.tree_map(lambda x: x.shape[1:], abstract["params"])
        param_parts = models.param_parts(one_run)
        return {
            "variant": variant_label(runs[i]),
            "spec": resolved["spec"],
            "task": task.name,
            "seed": seeds[i],
            "hidden": hidden,
            "primary_metric": task.primary_metric,
            "direction": task.direction,
            "chance": task.chance,
            "params/total": n_params,
            **{f"params/{k}": v for k, v in param_parts.items()},
            **{
                f"hparams/{key}": getattr(getattr(runs[i], section), key)
                for section, key in PER_RUN_VALUES.values()
            },
        }

    # ---------------------------------------------------------------------------- the loop ----
    timing = {"compile_s": 0.0, "train_s": 0.0, "steps": 0}
    t0 = time.perf_counter()
    compiled_chunk = chunk_fn.lower(state, data, jnp.int32(start_step)).compile()
    timing["compile_s"] = time.perf_counter() - t0
    bar = tqdm(
        total=steps,
        initial=start_step,
        disable=quiet,
        desc=progress_label or f"{config.model.variant} x{r}",
        unit="step",
        dynamic_ncols=True,
    )
    step = start_step
    latest_eval: list[dict[str, float]] = [{} for _ in range(r)]
    try:
        while step < steps:
            t_chunk = time.perf_counter()
            state, metrics = compiled_chunk(state, data, jnp.int32(step))
            losses = np.asarray(metrics["loss"], np.float64)  # (r, chunk); blocks until done
            grad_norms = np.asarray(metrics["grad_norm"], np.float64)
            elapsed = time.perf_counter() - t_chunk
            timing["train_s"] += elapsed
            timing["steps"] += chunk
            step += chunk
            diverged = np.asarray(state["diverged"])
            rows = [
                {
                    "step": step,
                    "train/loss": float(losses[i].mean()) if not diverged[i] else math.nan,
                    "train/grad_norm": float(grad_norms[i].mean()) if not diverged[i] else math.nan,
                    "time/steps_per_s": chunk / elapsed,
                }
                for i in range(r)
            ]
            if step % config.run.eval_every == 0 or step == steps:
                latest_eval = evaluate(state["params"], "validation")
                primary = np.array([e[f"eval/{task.primary_metric}"] for e in latest_eval])
                better = (
                    primary < np.asarray(state["best_metric"])
                    if task.direction == "min"
                    else (primary > np.asarray(state["best_metric"]))
                )
                improved = better & np.isfinite(primary) & ~diverged
                state = select_best_fn(
                    state, jnp.asarray(improved), jnp.asarray(primary, jnp.float32), step
                )
                gate_stats = gate_statistics(state["params"])
                for i in range(r):
                    rows[i].update(latest_eval[i])
                    rows[i].update(gate_stats[i])
            for i in range(r):
                recs[i].log(rows[i])
                mirrors[i].log(rows[i])
            live = losses[~diverged].mean() if (~diverged).any() else math.nan
            bar.update(chunk)
            bar.set_postfix(
                loss=f"{live:.4g}", steps_s=f"{chunk / elapsed:.1f}", diverged=int(diverged.sum())
            )
            if step % config.run.checkpoint_every == 0 or step == steps:
                checkpoints.save(
                    step, state, {"step": step, "seeds": seeds, "execution": execution}
                )
                for i in range(r):
                    recs[i].write_summary(
                        _summary(
                            base_summary(i),
                            state,
                            i,
                            step,
                            steps,
                            latest_eval[i],
                            timing,
                            "running",
                        )
                    )
    finally:
        bar.close()
        checkpoints.wait()  # never leave a save half-written behind an exception

    # ------------------------------------------------------------------------------ the end ----
    test_best = evaluate(state["best_params"], "test")
    test_final = evaluate(state["params"], "test")
    checkpoints.close()
    out = []
    diverged = np.asarray(state["diverged"])
    for i in range(r):
        status = "diverged" if diverged[i] else "completed"
        summary = _summary(base_summary(i), state, i, step, steps, latest_eval[i], timing, status)
        best_eval = _best_eval(recs[i], int(state["best_step"][i]))
        summary.update(best_eval)
        summary.update(test_best[i])
        summary.update({f"final/{k}": v for k, v in test_final[i].items()})
        summary.update({f"final/{k}": v for k, v in latest_eval[i].items()})
        last_row = records.read_metrics(recs[i].metrics_path)[-1]
        summary.update({k: v for k, v in last_row.items() if k.startswith("gates/")})
        recs[i].write_summary(summary)
        mirrors[i].finish(summary)
        out.append(summary)
    if not quiet:
        done = [s for s in out if s["status"] == "completed"]
        metric = f"test/{task.primary_metric}"
        text = ", ".join(
            f"{d.name}: {s.get(metric, math.nan):.4g}"
            for d, s in zip(run_dirs, out, strict=True)
            if s["status"] == "completed"
        )
        print(f"{len(done)}/{r} completed ({metric} at best validation: {text})")
        for d, s in zip(run_dirs, out, strict=True):
            if s["status"] == "diverged":
                step_ = s["diverged_step"]
                print(f"{d.name} diverged at step {step_}; frozen there, the rest went on")
        print(f"records in {record_root}")
    return out


@dataclasses.dataclass(frozen=True)
class RestoredRun:
    """A trained run read back from its record and its group's checkpoint."""

    config: Config
    task: tasks.Task
    model: models.SequenceModel
    best_params: Any  # the parameters of the best validation step
    params: Any  # the parameters at the checkpoint's step
    step: int
    summary: dict[str, Any]


def resolve_run(directory: str | Path) -> Path:
    """A run's directory: ``directory`` itself, or its only run (``seed_0`` of a train workdir).

    Raises:
        ValueError: for a directory that holds several runs (naming them) or none.
    """
    directory = Path(directory)
    if (directory / "config.json").exists():
        return directory
    runs = sorted(p.parent for p in directory.glob("*/config.json"))
    if len(runs) == 1:
        return runs[0]
    if not runs:
        raise ValueError(f"{directory} holds no run (no config.json in it or below it)")
    names = ", ".join(r.name for r in runs[:6]) + (", ..." if len(runs) > 6 else "")
    raise ValueError(
        f"{directory} holds {len(runs)} runs ({names}): pass one run's directory, "
        "or --compare to put every variant side by side"
    )


def restore_run(run_dir: str | Path) -> RestoredRun:
    """Loads a run's config, task, model and parameters from its workdir.

    Raises:
        FileNotFoundError: when the workdir has no record or its group no checkpoint.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run's workdir (no config.json)")
    stored = records.read_json(config_path)
    config = config_lib.from_dict(stored["config"])
    resolved = stored["resolved"]
    if "checkpoints" not in resolved:
        raise FileNotFoundError(f"{run_dir}'s record does not say where its checkpoint is")
    checkpoints = Checkpoints((run_dir / resolved["checkpoints"]).resolve())
    step = checkpoints.latest_step()
    if step is None:
        raise FileNotFoundError(f"no checkpoint for {run_dir} in {checkpoints.directory}")
    state, _ = checkpoints.restore(step, None)
    checkpoints.close()
    index = resolved["index"]
    row = lambda tree: jax.tree_util.tree_map(lambda x: jnp.asarray(x[index]), tree)  # noqa: E731
    task = tasks.get(config.task.name, **config.task.args)
    return RestoredRun(
        config=config,
        task=task,
        model=models.build_model(config, task, resolved["hidden"]),
        best_params=row(state["best_params"]),
        params=row(state["params"]),
        step=step,
        summary=records.RunRecord.read_summary(run_dir),
    )


def pad_examples(values: np.ndarray, size: int) -> np.ndarray:
    """``values`` with its last example repeated up to ``size`` examples."""
    missing = size - len(values)
    if not missing:
        return values
    return np.concatenate([values, np.repeat(values[-1:], missing, axis=0)])


def variant_label(config: Config) -> str:
    """What a report calls the run's cell: the variant, with any spec overrides in brackets
    (``lstm[forget_bias=0.0]``), so that studies of one variant's settings stay apart."""
    overrides = ", ".join(f"{k}={v}" for k, v in sorted(config.model.spec.items()))
    return f"{config.model.variant}[{overrides}]" if overrides else config.model.variant


def split_name(split: str) -> str:
    return {"validation": "eval", "test": "test"}[split]


def _best_eval(record: records.RunRecord, best_step: int) -> dict[str, float]:
    """The validation metrics logged at the best step (``eval/<m>`` of the summary)."""
    for row in records.read_metrics(record.metrics_path):
        if row["step"] == best_step:
            return {k: v for k, v in row.items() if k.startswith("eval/")}
    return {}


def _summary(base, state, i, step, steps, latest_eval, timing, status) -> dict[str, Any]:
    summary = dict(base)
    summary.update(
        {
            "status": status,
            "step": step,
            "steps": steps,
            "best_step": int(state["best_step"][i]),
            "time/compile_s": timing["compile_s"],
            "time/train_s": timing["train_s"],
            "time/steps_per_s": timing["steps"] / max(timing["train_s"], 1e-9),
        }
    )
    if bool(state["diverged"][i]):
        summary["diverged_step"] = int(state["diverged_step"][i])
    return summary


def failure_summary(error: BaseException) -> dict[str, Any]:
    """The summary of a run that raised: status ``failed`` with the traceback."""
    return {
        "status": "failed",
        "error": f"{type(error).__name__}: {error}",
        "traceback": "".join(traceback.format_exception(error)),
    }
