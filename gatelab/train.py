"""The compiled runner: a typed state, pure functions of one run, and the loop that drives a group.

The training step is written for one run (``train_step``: a module-level pure function a test
can jit on its own). A *group* of runs whose programs are identical (the seeds of a config; in a
sweep also learning rates and other per-run values, ``config.PER_RUN_VALUES``) trains as one
compiled program, each function lifted over the run axis with ``jax.lax.map`` or ``jax.vmap``.
Training runs in compiled chunks, a ``lax.scan`` over ``run.log_every`` steps with batches drawn
inside from each run's PRNG key; between chunks the host only logs, evaluates and checkpoints
(docs/design.md, "The runner").

Notation: ``r`` runs in the group, ``b`` batch, ``t`` time.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from gatelab import config as config_lib
from gatelab import families, gates, locks, models, records, runtime, tasks
from gatelab.checkpoint import Checkpoints
from gatelab.config import Config

__all__ = [
    "Program",
    "TrainState",
    "build_program",
    "init_state",
    "make_optimizer",
    "train_step",
    "train_chunk",
    "eval_sums",
    "gate_sums",
    "select_best",
    "evaluate",
    "Placement",
    "resolve_execution",
    "train_and_evaluate",
    "train_group",
]

Array = jax.Array
GATE_STATS_EXAMPLES = 256  # validation examples the gate statistics are computed on
MASK_STREAM = (
    2  # fold_in(step key, 2): the regularisers' masks (split(step key) gives batch, noise)
)


# ==================================================================================================
# What a group's programs share, and the state of its runs.
# ==================================================================================================


@dataclasses.dataclass(frozen=True, eq=False)
class Program:
    """What every compiled function of a group shares: the config's static part, the task and the
    model (the same for all its runs; per-run values live in the state)."""

    config: Config
    task: tasks.Task
    model: models.SequenceModel

    @property
    def noisy(self) -> bool:
        """Greff et al.'s Gaussian input noise is on (real inputs only)."""
        return self.config.model.input_noise > 0 and self.task.input_kind == "real"

    @property
    def stochastic(self) -> bool:
        """The spec draws training masks (dropout, zoneout, weight drop)."""
        return families.regularise.stochastic(self.config.spec)

    @property
    def param_count(self) -> int:
        """Every run's parameter count, in closed form (``models.model_param_count``)."""
        return models.model_param_count(self.model, self.task.input_size, self.task.seq_len)


def build_program(config: Config) -> Program:
    """The task and the model of ``config`` (its hidden size solved where it matches a count)."""
    task = tasks.get(config.task.name, **config.task.args)
    hidden = models.solve_hidden(config, task) if config.model.match_params else config.model.hidden
    return Program(config, task, models.build_model(config, task, hidden))


@flax.struct.dataclass
class TrainState:
    """One run's state (stacked over the group's runs in the compiled programs).

    The fields are in alphabetical order: the leaf order of a dict of the same keys, which the
    checkpoints of earlier versions hold.
    """

    best_metric: Array  # the best validation primary metric so far
    best_params: Any  # the parameters at best_step (None until init_state's copy)
    best_step: Array  # int32, -1 before the first evaluation
    diverged: Array  # bool: a non-finite loss or update froze the run
    diverged_step: Array  # int32, -1 unless diverged
    opt_state: Any
    params: Any
    rng: Array  # key data of the run's training key (fold_in(step) per step)
    values: dict[str, Array]  # the per-run values (config.PER_RUN_VALUES)


# ==================================================================================================
# Pure functions of one run.
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


def init_state(program: Program, seed: Array, values: dict[str, Array], example: Array):
    """A run's fresh state from its seed (``best_params`` is left for the caller to copy: one
    array returned as two outputs of a compiled program hung XLA's CPU runtime, jaxlib 0.10.2)."""
    key = jax.random.key(seed)
    init_key, train_key = jax.random.split(key)
    params = program.model.init(init_key, example)["params"]
    worst = jnp.inf if program.task.direction == "min" else -jnp.inf
    return TrainState(
        best_metric=jnp.array(worst),
        best_params=None,
        best_step=jnp.array(-1, jnp.int32),
        diverged=jnp.array(False),
        diverged_step=jnp.array(-1, jnp.int32),
        opt_state=make_optimizer(program.config, values).init(params),
        params=params,
        rng=jax.random.key_data(train_key),
        values=values,
    )


def loss_fn(program: Program, params, batch: dict[str, Array], key: Array | None = None):
    """The training loss; ``key`` draws the regularisers' masks (dropout, zoneout, weight
    drop), ``None`` for a spec without them."""
    if key is None:
        outputs = program.model.apply({"params": params}, batch["inputs"], batch.get("lengths"))
    else:
        outputs = program.model.apply(
            {"params": params},
            batch["inputs"],
            batch.get("lengths"),
            deterministic=False,
            rngs={"dropout": key},
        )
    return program.task.loss(outputs, batch)


def train_step(program: Program, state: TrainState, step: Array, data: dict[str, Array]):
    """One optimisation step of one run; a non-finite loss or update freezes the run.

    Returns:
        ``(state, {"loss", "grad_norm"})``.
    """
    key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), step)
    batch_key, noise_key = jax.random.split(key)
    batch = program.task.train_batch(data, batch_key, program.config.run.batch_size)
    if program.noisy:  # Greff et al.: Gaussian input noise during training only
        noise = jax.random.normal(noise_key, batch["inputs"].shape, batch["inputs"].dtype)
        batch = {**batch, "inputs": batch["inputs"] + state.values["input_noise"] * noise}
    # The masks' key is folded from the step's, so a resumed run draws the same masks; a spec
    # without regularisers draws nothing and compiles to the program it always had.
    mask_key = jax.random.fold_in(key, MASK_STREAM) if program.stochastic else None
    loss, grads = jax.value_and_grad(functools.partial(loss_fn, program))(
        state.params, batch, mask_key
    )
    grad_norm = optax.global_norm(grads)
    clip = state.values["clip"]
    scale = jnp.where(clip > 0, jnp.minimum(1.0, clip / (grad_norm + 1e-12)), 1.0)
    grads = jax.tree_util.tree_map(lambda g: g * scale, grads)
    tx = make_optimizer(program.config, state.values)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = program.model.constrain(optax.apply_updates(state.params, updates))
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(optax.global_norm(updates))
    ok = finite & ~state.diverged
    state = state.replace(
        params=_tree_where(ok, params, state.params),
        opt_state=_tree_where(ok, opt_state, state.opt_state),
        diverged=state.diverged | ~finite,
        diverged_step=jnp.where(
            ~finite & ~state.diverged, step.astype(jnp.int32), state.diverged_step
        ),
    )
    return state, {"loss": loss, "grad_norm": grad_norm}


def train_chunk(program: Program, state: TrainState, data: dict[str, Array], start: Array):
    """``run.log_every`` steps of one run from step ``start``: (state, per-step metrics)."""
    steps = start + jnp.arange(program.config.run.log_every, dtype=jnp.int32)
    return jax.lax.scan(lambda s, step: train_step(program, s, step, data), state, steps)


def eval_sums(program: Program, params, batch: dict[str, Array], valid: Array):
    """Metric totals and weights of one run on a padded batch (``valid`` marks examples).

    Per example, so that the padding of the last batch can be masked out (every eval batch has
    one shape and the evaluation compiles once); the host sums them in float64, independently of
    how XLA splits reductions over threads.
    """
    outputs = program.model.apply({"params": params}, batch["inputs"], batch.get("lengths"))
    one = lambda x: x[None]  # noqa: E731
    per_example = jax.vmap(
        lambda o, b: program.task.metrics(one(o), jax.tree_util.tree_map(one, b))
    )(outputs, batch)
    return {name: (total * valid, weight * valid) for name, (total, weight) in per_example.items()}


def gate_sums(program: Program, params, batch: dict[str, Array]) -> dict[str, tuple]:
    """Per example, the totals of every live gate's statistics (``gates.example_sums``)."""
    _, captured = program.model.apply(
        {"params": params}, batch["inputs"], batch.get("lengths"), mutable=["gates"]
    )
    valid = tasks.masked_steps(batch, batch["inputs"].shape[1])
    return gates.example_sums(gates.activations(captured.get("gates", {})), valid)


def select_best(state: TrainState, improved: Array, metric: Array, step: int) -> TrainState:
    """Every run's best parameters, metric and step, where ``improved`` (r,) says so."""
    pick = lambda new, old: _tree_where(  # noqa: E731
        improved.reshape((-1,) + (1,) * (new.ndim - 1)), new, old
    )
    return state.replace(
        best_params=jax.tree_util.tree_map(pick, state.params, state.best_params),
        best_metric=jnp.where(improved, metric, state.best_metric),
        best_step=jnp.where(improved, step, state.best_step),
    )


def _tree_where(condition: Array, new, old):
    return jax.tree_util.tree_map(lambda n, o: jnp.where(condition, n, o), new, old)


# ==================================================================================================
# Over the runs of a group.
# ==================================================================================================


def resolve_execution(choice: str) -> str:
    """``vmap`` or ``map`` for ``run.group_execution``.

    ``auto`` is ``lax.map`` on the CPU, where each run's matmuls are already big enough for a core
    and batching them only adds layout work; ``vmap`` on accelerators, where batching the runs is
    what fills the device (experiments/bench/results/2026-11-27.md, "Group execution: lax.map or
    vmap").
    """
    if choice != "auto":
        return choice
    return "map" if jax.default_backend() == "cpu" else "vmap"


def over_runs(fn: Callable, execution: str, program: Program, shared: int = 0) -> Callable:
    """``fn(program, per_run, *shared)`` lifted to stacked runs, named as ``fn`` in JAX's logs."""
    one = functools.partial(fn, program)
    if execution == "vmap":
        lifted = jax.vmap(one, in_axes=(0,) + (None,) * shared)
    else:

        def lifted(stacked, *args):
            return jax.lax.map(lambda run: one(run, *args), stacked)

    lifted.__name__ = fn.__name__  # train_chunk, ... (tests count their compilations)
    return lifted


def evaluate(eval_fn: Callable, params, dataset: dict[str, np.ndarray], size: int, prefix: str):
    """Every run's metrics on a whole split, in batches of ``size`` (the last one padded).

    Returns:
        One ``{f"{prefix}/{metric}": value}`` per run.
    """
    count = len(dataset["targets"])
    totals: dict[str, list] = {}
    for begin in range(0, count, size):
        real = min(size, count - begin)
        batch = {
            k: jnp.asarray(tasks.pad_examples(v[begin : begin + real], size))
            for k, v in dataset.items()
        }
        valid = jnp.asarray(np.arange(size) < real, jnp.float32)
        for name, (total, weight) in eval_fn(params, batch, valid).items():
            t, w = totals.setdefault(name, [0.0, 0.0])
            totals[name] = [
                t + np.sum(np.asarray(total, np.float64), axis=-1),
                w + np.sum(np.asarray(weight, np.float64), axis=-1),
            ]
    runs = len(next(iter(totals.values()))[0])
    return [
        {f"{prefix}/{k}": float(t[i] / w[i]) for k, (t, w) in totals.items()} for i in range(runs)
    ]


# ==================================================================================================
# The record of a run: its writer and its summary.
# ==================================================================================================


def _writer(
    run: Config, run_dir: Path, resolved: dict, record_root: Path, task
) -> records.RunWriter:
    record = records.RunRecord(run_dir, config_lib.to_dict(run), resolved)
    mirror = records.WandbMirror(
        mode=run.wandb.mode,
        workdir=run_dir,
        run_id=record.wandb_id,
        name=f"{record_root.name}/{run_dir.name}",
        project=run.wandb.project,
        entity=run.wandb.entity,
        group=run.wandb.group or record_root.name,
        tags=[run.model.variant, run.task.name, *run.wandb.tags],
        config={**config_lib.to_dict(run), "seed": run.run.seeds[0], "resolved": resolved},
        primary=(task.primary_metric, task.direction),
    )
    return records.RunWriter(record, mirror)


def _base_summary(program: Program, run: Config, params: dict[str, int]) -> records.Summary:
    """What a run's summary says from its start: the run, its task and its parameters."""
    task = program.task
    info = task.metric_info
    return records.Summary(
        status="running",
        variant=config_lib.variant_label(run),
        spec=repr(run.spec),
        task=task.name,
        seed=run.run.seeds[0],
        hidden=program.model.hidden,
        primary_metric=task.primary_metric,
        direction=task.direction,
        chance=task.chance,
        steps=run.run.steps,
        params=params,
        hparams=config_lib.run_values(run),
        labels={name: m.label for name, m in info.items()},
        units={name: m.unit for name, m in info.items()},
        directions={name: m.direction for name, m in info.items()},
        task_note=task.note or None,
    )


def _summary(base: records.Summary, state: TrainState, i: int, step: int, timing: dict, status):
    """Run ``i``'s summary at ``step`` (``status`` running, completed or diverged)."""
    diverged = bool(state.diverged[i])
    return dataclasses.replace(
        base,
        status=status,
        step=step,
        best_step=int(state.best_step[i]),
        diverged_step=int(state.diverged_step[i]) if diverged else None,
        time={
            "compile_s": timing["compile_s"],
            "train_s": timing["train_s"],
            "steps_per_s": timing["steps"] / max(timing["train_s"], 1e-9),
        },
    )


def _final_summary(summary, writer, best_step, test_best, test_final, latest_eval):
    """The final summary: the validation metrics at the best step (from the record), the test
    metrics there and at the end, and the gate statistics of the last evaluation."""
    lines = records.read_metrics(writer.record.metrics_path)
    best = next((row for row in lines if row["step"] == best_step), {})
    metrics = {k: v for k, v in best.items() if k.startswith("eval/")}
    metrics.update(test_best)
    metrics.update({f"final/{k}": v for k, v in test_final.items()})
    metrics.update({f"final/{k}": v for k, v in latest_eval.items()})
    statistics = {
        k.removeprefix("gates/"): v for k, v in lines[-1].items() if k.startswith("gates/")
    }
    return dataclasses.replace(summary, metrics=metrics, gates=statistics)


# ==================================================================================================
# The loop.
# ==================================================================================================


def train_and_evaluate(config: Config, workdir: str | Path, *, quiet: bool = False) -> list[dict]:
    """Trains every seed of ``config`` as one compiled program; records under ``workdir``.

    ``workdir`` is a directory of runs (``records``' layout: a sweep of one group) with one run
    per seed, ``workdir/seed_<k>/``, and the group's checkpoints in ``workdir/groups/<group>/``.
    Seeds that finished in an earlier call are kept; the others train (or resume).

    Returns:
        Every seed's summary (``summary.json``'s dict).
    """
    config_lib.validate(config)
    workdir = Path(workdir)
    runs = {f"seed_{seed}": config.replace(run={"seeds": (seed,)}) for seed in config.run.seeds}
    for name, run in runs.items():  # a workdir with another config is refused, finished or not
        records.RunRecord.check(workdir / name, config_lib.to_dict(run))
    finished = {name for name in runs if (s := records.read_summary(workdir / name)) and s.finished}
    pending = [name for name in runs if name not in finished]
    group = records.group_name(config.model.variant, config_lib.static_key(config), pending)
    _write_index(workdir, runs, {name: group for name in pending})
    if pending:
        train_group(
            [runs[name] for name in pending],
            records.group_dir(workdir, group),
            [workdir / name for name in pending],
            quiet=quiet,
        )
        _write_index(workdir, runs, {name: group for name in pending})
    return [records.read_json(workdir / name / "summary.json") for name in runs]


def _write_index(workdir: Path, runs: dict[str, Config], groups: dict[str, str]) -> None:
    """A train workdir's index: every seed's run, its group and its status so far (``running``
    while its group is claimed), read from the records under the index's lock."""

    def make() -> dict[str, Any]:
        entries = []
        for name, run in runs.items():
            summary = records.read_summary(workdir / name)
            stored = records.read_json_or_none(workdir / name / "config.json") or {}
            group = groups.get(name) or stored.get("resolved", {}).get("group", "")
            status = records.live_status(summary, records.group_claimed(workdir, group))
            entries.append(
                {
                    "name": name,
                    "overrides": {},
                    "seed": run.run.seeds[0],
                    "group": group,
                    "status": status,
                }
            )
        return {"kind": "train", "runs": entries}

    records.update_index(workdir, make)


def train_group(
    runs: list[Config],
    group_dir: Path,
    run_dirs: list[Path],
    *,
    quiet: bool = False,
    progress_label: str = "",
    wait: bool = True,
    on_claimed: Callable[[], None] | None = None,
) -> list[dict]:
    """Trains runs that share one program (one seed each) together; see ``train_and_evaluate``.

    The group is claimed first (``locks.claim`` on ``group_dir/lock``), so that no two processes
    ever train it at once: another process's claim is waited for (``wait``; its runs are then
    usually finished, and returned as they are) or raises ``locks.Busy``. ``on_claimed()`` is
    called once the claim is held (a sweep writes its index then, which says ``running``).

    Returns:
        Every run's summary (``summary.json``'s dict).
    """
    program = build_program(_check_group(runs))  # a bad config fails before any wait
    place = Placement.of(program.config.run.devices, len(runs))

    def waiting(holder: dict) -> None:
        if not quiet:
            print(f"{Path(group_dir).name} is being trained by {locks.describe(holder)}; waiting")

    with locks.claim(Path(group_dir) / locks.LOCK, wait=wait, on_wait=waiting):
        if on_claimed is not None:
            on_claimed()
        return _train_claimed(
            program, place, runs, Path(group_dir), run_dirs, quiet, progress_label
        )


def _train_claimed(
    program: Program,
    place: Placement,
    runs: list[Config],
    group_dir: Path,
    run_dirs: list[Path],
    quiet: bool,
    progress_label: str,
) -> list[dict]:
    """``train_group``'s work, once the group is claimed."""
    # ---------------------------------------------------------------------------------- setup --
    config, task, r = program.config, program.task, len(runs)
    group_dir = Path(group_dir)
    writers, record_root = _writers(program, runs, run_dirs, group_dir, place.devices)
    summaries = [writer.record.summary() for writer in writers]
    if all(s and s.finished for s in summaries):
        return [s.to_json() for s in summaries]  # nothing left to do
    seeds = [run.run.seeds[0] for run in runs]
    values = {
        name: jnp.array([config_lib.run_values(run)[name] for run in runs], jnp.float32)
        for name in config_lib.PER_RUN_VALUES
    }
    inputs = _Inputs.of(program)
    checkpoints = Checkpoints(group_dir / "checkpoints", keep=config.run.keep_checkpoints)
    state, start, execution = _start(program, checkpoints, seeds, values, inputs.example)
    for writer in writers:  # lines logged after the checkpoint (or before any) are redone
        writer.record.truncate(start)
    state = place.spread(state)
    data, gate_batch = place.replicate(inputs.data), place.replicate(inputs.gate_batch)
    chunk_fn = jax.jit(place.over_runs(train_chunk, execution, program, 2), donate_argnums=0)
    eval_fn = jax.jit(place.over_runs(eval_sums, execution, program, 2))
    gates_fn = jax.jit(place.over_runs(gate_sums, execution, program, 1))
    best_fn = jax.jit(select_best, donate_argnums=0)
    bases = [_base_summary(program, run, _param_counts(program, state)) for run in runs]

    # ---------------------------------------------------------------------------- the loop ----
    steps, chunk = config.run.steps, config.run.log_every
    timing = {"compile_s": 0.0, "train_s": 0.0, "steps": 0}
    t0 = time.perf_counter()
    compiled_chunk = chunk_fn.lower(state, data, jnp.int32(start)).compile()
    timing["compile_s"] = time.perf_counter() - t0
    label = progress_label or f"{config.model.variant} x{r}"
    bar = tqdm(
        total=steps, initial=start, disable=quiet, desc=label, unit="step", dynamic_ncols=True
    )
    step, latest_eval = start, [{} for _ in range(r)]
    try:
        while step < steps:
            t_chunk = time.perf_counter()
            state, metrics = compiled_chunk(state, data, jnp.int32(step))
            losses = np.asarray(metrics["loss"], np.float64)[:r]  # (r, chunk); blocks until done
            elapsed = time.perf_counter() - t_chunk
            timing["train_s"] += elapsed
            timing["steps"] += chunk
            step += chunk
            diverged = np.asarray(state.diverged)[:r]
            grad_norms = np.asarray(metrics["grad_norm"], np.float64)[:r]
            rows = _rows(step, losses, grad_norms, diverged, elapsed)
            if step % config.run.eval_every == 0 or step == steps:
                evaluation = evaluate(eval_fn, state.params, inputs.validation, inputs.size, "eval")
                latest_eval = evaluation[:r]  # the padding runs' (if any) are dropped
                primary = np.array([e[f"eval/{task.primary_metric}"] for e in evaluation])
                best = np.asarray(state.best_metric)
                better = primary < best if task.direction == "min" else primary > best
                improved = better & np.isfinite(primary) & ~np.asarray(state.diverged)
                improved[r:] = False
                state = best_fn(
                    state, jnp.asarray(improved), jnp.asarray(primary, jnp.float32), step
                )
                sums = jax.device_get(gates_fn(state.params, gate_batch))
                for i, row in enumerate(rows):
                    statistics = gates.statistics({k: [v[i] for v in s] for k, s in sums.items()})
                    row.update(
                        {**latest_eval[i], **{f"gates/{k}": v for k, v in statistics.items()}}
                    )
            for writer, row in zip(writers, rows, strict=True):
                writer.log(row)
            live = losses[~diverged].mean() if (~diverged).any() else math.nan
            bar.update(chunk)
            bar.set_postfix(
                loss=f"{live:.4g}", steps_s=f"{chunk / elapsed:.1f}", diverged=int(diverged.sum())
            )
            if step % config.run.checkpoint_every == 0 or step == steps:
                note = {"step": step, "seeds": seeds, "execution": execution}
                checkpoints.save(step, place.gather(state), {**note, "devices": place.devices})
                for i, writer in enumerate(writers):
                    writer.write(_summary(bases[i], state, i, step, timing, "running"))
    finally:
        bar.close()
        checkpoints.close()  # never leave a save half-written behind an exception

    # ------------------------------------------------------------------------------ the end ----
    test_best = evaluate(eval_fn, state.best_params, inputs.test, inputs.size, "test")
    test_final = evaluate(eval_fn, state.params, inputs.test, inputs.size, "test")
    for length, dataset in inputs.lengths.items():  # length generalisation: test/<m>@<T>
        at = evaluate(eval_fn, state.best_params, dataset, inputs.size, "test")
        for i in range(r):
            test_best[i].update({f"{k}@{length}": v for k, v in at[i].items()})
    out = []
    for i, writer in enumerate(writers):
        status = "diverged" if bool(state.diverged[i]) else "completed"
        summary = _summary(bases[i], state, i, step, timing, status)
        summary = _final_summary(
            summary, writer, int(state.best_step[i]), test_best[i], test_final[i], latest_eval[i]
        )
        writer.finish(summary)
        out.append(summary.to_json())
    if not quiet:
        _report(out, run_dirs, task.primary_metric, record_root)
    return out


# ==================================================================================================
# The parts train_group is made of.
# ==================================================================================================


def _check_group(runs: list[Config]) -> Config:
    """The group's config (its first run's), once every run is valid and shares its program."""
    for run in runs:
        config_lib.validate(run)
        if len(run.run.seeds) != 1:
            raise ValueError("train_group takes one seed per run")
        if config_lib.static_key(run) != config_lib.static_key(runs[0]):
            raise ValueError("the runs of a group must differ only in seed and per-run values")
    return runs[0]


def _writers(program: Program, runs, run_dirs, group_dir: Path, devices: int = 1):
    """Every run's writer (its record and W&B mirror), and the directory of runs they are in."""
    task = program.task
    resolved = {
        "spec": repr(program.config.spec),
        "hidden": program.model.hidden,
        "params": program.param_count,
        "devices": devices,  # the group's runs sharded over this many (Placement)
        "machine": _machine(),
    }
    checkpoint_dir = (group_dir / "checkpoints").absolute()
    # W&B runs are grouped and named by the directory of runs, so that a sweep is one W&B group.
    parents = {Path(d).parent for d in run_dirs}
    record_root = parents.pop() if len(parents) == 1 else group_dir
    writers = []
    for i, (run, run_dir) in enumerate(zip(runs, run_dirs, strict=True)):
        where = {
            # Where this run's parameters live: row `index` of the group's checkpoint.
            "checkpoints": os.path.relpath(checkpoint_dir, Path(run_dir).absolute()),
            "index": i,
            "group": group_dir.name,
        }
        writers.append(_writer(run, Path(run_dir), {**resolved, **where}, record_root, task))
    return writers, record_root


def _machine() -> str:
    """What computed the run, for its record: the backend's device (on a CPU, the CPU and its
    vector instructions, records.host_cpu) and jaxlib's version, both of which move the numbers
    a seed gives."""
    device = jax.devices()[0]
    where = f"{device.platform} {device.device_kind}, host " if device.platform != "cpu" else ""
    return f"{where}{records.host_cpu()}; jaxlib {importlib.metadata.version('jaxlib')}"


@dataclasses.dataclass(frozen=True)
class _Inputs:
    """What the loop feeds the compiled programs: the training data (device arrays), the fixed
    evaluation sets, the gate statistics' batch and the evaluation batch size."""

    data: dict[str, Array]
    validation: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    gate_batch: dict[str, Array]
    size: int
    lengths: dict[int, dict[str, np.ndarray]]  # test sets at other lengths (task.eval_lengths)

    @property
    def example(self) -> Array:
        return jnp.asarray(self.validation["inputs"][:1])

    @classmethod
    def of(cls, program: Program) -> _Inputs:
        task = program.task
        validation, test = task.eval_set("validation"), task.eval_set("test")
        largest = max(len(validation["targets"]), len(test["targets"]))
        return cls(
            data=task.train_data(),
            validation=validation,
            test=test,
            gate_batch={k: jnp.asarray(v[:GATE_STATS_EXAMPLES]) for k, v in validation.items()},
            size=min(program.config.run.eval_batch_size, largest),
            lengths={
                length: task.at_length(length).eval_set("test")
                for length in getattr(task, "eval_lengths", ())
            },
        )


def _fresh_states(init: Callable) -> Callable:
    """Every run's fresh state, one run after another (``lax.map``), not ``vmap``: the
    orthogonal initialiser's QR decomposition, batched over the runs, parallelises over XLA's
    CPU thread pool from inside a task of that pool, and with every thread waiting on another
    it deadlocked (jaxlib 0.10.2: about one ``gatelab train`` of 4 seeds in 4 hung before its
    first step). One run at a time gives the same bits (tests/test_train.py)."""
    return lambda seeds, values: jax.lax.map(lambda args: init(*args), (seeds, values))


def _start(program: Program, checkpoints: Checkpoints, seeds, values, example):
    """``(state, step, execution)``: from the newest checkpoint that restores (damaged newer
    ones are set aside), or every run's fresh state."""
    init = functools.partial(init_state, program, example=example)

    def check(note: dict) -> None:
        if note.get("seeds") != seeds:
            raise ValueError(
                f"{checkpoints.directory} belongs to seeds {note.get('seeds')}, not {seeds}"
            )

    abstract = jax.eval_shape(jax.vmap(init), jnp.array(seeds), values)
    found = checkpoints.restore_latest(abstract.replace(best_params=abstract.params), check)
    if found is not None:
        step, state, note = found
        return state, step, note["execution"]  # the program that wrote it continues it
    state = runtime.compile_cheap(_fresh_states(init), jnp.array(seeds), values)(
        jnp.array(seeds), values
    )
    best = jax.tree_util.tree_map(jnp.array, state.params)
    return state.replace(best_params=best), 0, resolve_execution(program.config.run.group_execution)


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a group's runs live: on one device, or with the run axis sharded over a mesh of
    ``devices`` local devices (axis ``runs``), each device training its share of the runs with
    no communication between devices (``jax.shard_map``).

    A group is padded to a multiple of the device count with copies of its first run, which are
    never recorded, logged or checkpointed: ``gather`` drops them (and brings the runs onto one
    device) before a checkpoint is written, so a checkpoint restores onto any device count.
    """

    runs: int
    mesh: jax.sharding.Mesh | None = None

    @classmethod
    def of(cls, requested: int, runs: int) -> Placement:
        """``run.devices`` resolved: 0 is every local device of the default backend; never
        more devices than runs."""
        available = jax.local_devices()
        if requested > len(available):
            hint = (
                " (on the CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N makes N)"
                if available[0].platform == "cpu"
                else ""
            )
            raise config_lib.ConfigError(
                f"run.devices={requested}, but this process has {len(available)} "
                f"{available[0].platform} device(s){hint}; 0 uses all of them"
            )
        count = min(requested or len(available), runs)
        if count <= 1:
            return cls(runs)
        return cls(runs, jax.sharding.Mesh(np.array(available[:count]), ("runs",)))

    @property
    def devices(self) -> int:
        return 1 if self.mesh is None else self.mesh.size

    @property
    def padded(self) -> int:
        return -(-self.runs // self.devices) * self.devices

    def _sharding(self, spec: jax.sharding.PartitionSpec):
        return jax.sharding.NamedSharding(self.mesh, spec)

    def spread(self, state: TrainState) -> TrainState:
        """The runs' state (stacked, on one device), padded and sharded over the mesh."""
        if self.mesh is None:
            return state
        extra = self.padded - self.runs

        def pad(x):
            return jnp.concatenate([x, jnp.repeat(x[:1], extra, axis=0)]) if extra else x

        runs = self._sharding(jax.sharding.PartitionSpec("runs"))
        return jax.device_put(jax.tree_util.tree_map(pad, state), runs)

    def replicate(self, tree):
        """Inputs every run reads (the training data, the gate batch): on every device once,
        instead of copied there at every call."""
        if self.mesh is None:
            return tree
        return jax.device_put(tree, self._sharding(jax.sharding.PartitionSpec()))

    def gather(self, state: TrainState) -> TrainState:
        """The real runs' state on the first device (what a checkpoint holds)."""
        if self.mesh is None:
            return state
        first = jax.sharding.SingleDeviceSharding(self.mesh.devices.flat[0])
        return jax.device_put(jax.tree_util.tree_map(lambda x: x[: self.runs], state), first)

    def over_runs(self, fn: Callable, execution: str, program: Program, shared: int) -> Callable:
        """``over_runs(fn, ...)`` with the stacked runs sharded over the mesh (each device
        lifting ``fn`` over its share) and the ``shared`` arguments replicated."""
        local = over_runs(fn, execution, program, shared)
        if self.mesh is None:
            return local
        spec = jax.sharding.PartitionSpec
        lifted = jax.shard_map(
            local,
            mesh=self.mesh,
            in_specs=(spec("runs"),) + (spec(),) * shared,
            out_specs=spec("runs"),
            # No collectives: a device's runs never meet another's. (With the check on, every
            # scan's zero initial carry would need a pcast to "varying" along the run axis.)
            check_vma=False,
        )
        lifted.__name__ = local.__name__
        return lifted


def _param_counts(program: Program, state: TrainState) -> dict[str, int]:
    """``total`` (closed form) and per part, from the stacked parameters' shapes."""
    one_run = jax.tree_util.tree_map(lambda x: x.shape[1:], state.params)
    return {"total": program.param_count, **models.param_parts(one_run)}


def _rows(step: int, losses, grad_norms, diverged, elapsed: float) -> list[dict[str, Any]]:
    """Every run's metrics line of a chunk: mean loss and gradient norm (NaN once diverged)."""
    return [
        {
            "step": step,
            "train/loss": float(losses[i].mean()) if not diverged[i] else math.nan,
            "train/grad_norm": float(grad_norms[i].mean()) if not diverged[i] else math.nan,
            "time/steps_per_s": len(losses[i]) / elapsed,
        }
        for i in range(len(losses))
    ]


def _report(summaries: list[dict], run_dirs: list[Path], metric: str, root: Path) -> None:
    done = [s for s in summaries if s["status"] == "completed"]
    key = f"test/{metric}"
    text = ", ".join(
        f"{Path(d).name}: {s.get(key, math.nan):.4g}"
        for d, s in zip(run_dirs, summaries, strict=True)
        if s["status"] == "completed"
    )
    print(f"{len(done)}/{len(summaries)} completed ({key} at best validation: {text})")
    for d, s in zip(run_dirs, summaries, strict=True):
        if s["status"] == "diverged":
            step = s["diverged_step"]
            print(f"{Path(d).name} diverged at step {step}; frozen there, the rest went on")
    print(f"records in {root}")
