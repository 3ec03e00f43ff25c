"""Look inside trained runs: gate activations over time, their distributions, gradient flow.

    gatelab inspect runs/mnist1d/lstm/seed_0                 # one run
    gatelab inspect runs/demo --compare --gate forget        # one gate, every variant, side by side

For one run, ``WORKDIR/inspect/`` receives: ``example<k>.pdf/.png`` (heatmaps, time x unit, of
every gate, the cell state and the hidden state of each layer; a removed gate is drawn as the
constant 1 it is and labelled removed), ``histograms.pdf/.png`` (every gate's activation over the
whole split), ``gradient_flow.pdf/.png`` (the norm of the loss gradient with respect to the
hidden state at each step: how far back the training signal reaches), ``gates.md`` (the
statistics of ``gatelab.gates``: mean, saturation below 0.1 and above 0.9, and the forget gate's
characteristic memory time ``1 / (1 - f)``, Tallec & Ollivier 2018), and ``gates.npz`` (the
captured arrays).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from gatelab import families, gates, records, restore, tasks
from gatelab.report import figures as figure_style

__all__ = ["inspect_run", "inspect_compare", "capture", "capturer", "gradient_flow"]

# What a layer sows besides its gates: states, drawn as states (not in [0, 1]).
STATES = ("cell", "normaliser", "hidden")


def _batch(data: dict[str, np.ndarray], begin: int, end: int) -> dict[str, jax.Array]:
    return {k: jnp.asarray(v[begin:end]) for k, v in data.items()}


def capturer(run: restore.RestoredRun):
    """``run``'s model with gate capture, jitted: build it once and call it on every batch."""
    return jax.jit(
        lambda p, x, lengths: run.model.apply(
            {"params": p}, x, lengths, mutable=["gates", "state"]
        )[1]
    )


def capture(run: restore.RestoredRun, batch: dict[str, jax.Array], apply=None):
    """The gates, cell and hidden states of every layer on ``batch``, with the best parameters.

    ``apply`` is ``capturer(run)``, when already built.

    Returns:
        ``{layer: {name: (b, t, H) array}}`` with the live gates under their names, ``cell``
        (LSTM family) and ``hidden``; padded steps are zero.
    """
    apply = apply or capturer(run)
    captured = apply(run.best_params, batch["inputs"], batch.get("lengths"))
    layers: dict[str, dict[str, np.ndarray]] = {}
    for collection in ("gates", "state"):
        for layer, values in captured.get(collection, {}).items():
            for name, value in values.items():
                value = value[0]
                if isinstance(value, dict):  # gates/activations: {gate: array}
                    for gate, array in value.items():
                        layers.setdefault(layer, {})[gate] = np.asarray(array)
                else:
                    layers.setdefault(layer, {})[name] = np.asarray(value)
    return layers


def gradient_flow(run: restore.RestoredRun, batch: dict[str, jax.Array]) -> dict[str, np.ndarray]:
    """Per layer, the mean over examples of ``|| dL / dh_t ||`` at every step t (shape (t,)).

    The loss is the task's own on ``batch``; the gradient is taken through a zero probe added
    to every step's hidden state, so it includes every path through the recurrence.
    """
    names = [name for name in run.best_params if name.startswith("layer")]
    steps = batch["inputs"].shape[1]
    width = families.output_features(run.model.spec, run.model.hidden)  # P with LSTMP
    probes = {name: jnp.zeros((batch["inputs"].shape[0], steps, width)) for name in names}

    def loss(probes):
        outputs = run.model.apply(
            {"params": run.best_params}, batch["inputs"], batch.get("lengths"), probes
        )
        return run.task.loss(outputs, batch)

    grads = jax.jit(jax.grad(loss))(probes)
    return {name: np.asarray(jnp.linalg.norm(g, axis=-1).mean(axis=0)) for name, g in grads.items()}


def _removed(run: restore.RestoredRun) -> list[str]:
    return [gate for gate in run.model.spec.gates if getattr(run.model.spec, gate) == "open"]


def _sums(captured: dict[str, dict[str, np.ndarray]], valid, real: int) -> dict[str, list]:
    """``gates.example_sums`` of the captured gates (not the states) of the first ``real``
    examples."""
    values = {
        layer: {n: jnp.asarray(v) for n, v in named.items() if n not in STATES}
        for layer, named in captured.items()
    }
    return {
        name: [np.asarray(part)[:real] for part in parts]
        for name, parts in gates.example_sums(values, valid).items()
    }


def _statistics(sums: list[np.ndarray], entries: np.ndarray, gate: str) -> dict[str, float]:
    """``gates.statistics`` of one gate's per-example totals, and ``gates.memory`` of its
    valid ``entries``."""
    stats = gates.statistics({gate: sums})
    return {**{k.split("/")[-1]: v for k, v in stats.items()}, **gates.memory(gate, entries)}


# --------------------------------------------------------------------------------------------------
# One run.
# --------------------------------------------------------------------------------------------------


def inspect_run(
    directory: str | Path, split: str = "test", examples: int = 4, out: Path | None = None
) -> Path:
    """Writes the heatmaps, histograms, gradient flow and ``gates.md`` of one run.

    Returns:
        The output directory (``<run>/inspect`` by default).
    """
    run_dir = restore.resolve_run(directory)
    run = restore.restore_run(run_dir)
    out = Path(out or run_dir / "inspect")
    out.mkdir(parents=True, exist_ok=True)
    data = run.task.eval_set(split)
    size = len(data["targets"])
    removed = _removed(run)
    count = min(examples, size)
    shown = _batch(data, 0, count)

    # Distributions over the whole split, in batches of one shape (one compilation; the last
    # batch is padded and its padding dropped); the shown examples are the first batch's first.
    apply = capturer(run)
    step = max(min(run.config.run.eval_batch_size, size), count)
    pooled: dict[tuple[str, str], list[np.ndarray]] = {}
    totals: dict[str, list[list[np.ndarray]]] = {}
    layers: dict[str, dict[str, np.ndarray]] = {}
    for begin in range(0, size, step):
        real = min(step, size - begin)
        batch = {
            k: jnp.asarray(tasks.pad_examples(v[begin : begin + real], step))
            for k, v in data.items()
        }
        captured = capture(run, batch, apply)
        if begin == 0:
            layers = {
                layer: {name: value[:count] for name, value in values.items()}
                for layer, values in captured.items()
            }
        steps = tasks.masked_steps(batch, batch["inputs"].shape[1])
        for name, parts in _sums(captured, steps, real).items():
            totals.setdefault(name, []).append(parts)
        valid = np.ones(batch["inputs"].shape[:2], bool) if steps is None else np.asarray(steps) > 0
        for layer, values in captured.items():
            for name, value in values.items():
                if name not in STATES:
                    pooled.setdefault((layer, name), []).append(value[:real][valid[:real]].ravel())
    flow = gradient_flow(run, _batch(data, 0, min(64, size)))

    np.savez_compressed(
        out / "gates.npz",
        **{
            f"{layer}/{name}": value
            for layer, values in layers.items()
            for name, value in values.items()
        },
        **{
            f"{layer}/{gate}": np.ones_like(values["hidden"])
            for layer, values in layers.items()
            for gate in removed
        },
    )
    summary = {
        "run": str(run_dir),
        "variant": run.config.model.variant,
        "spec": repr(run.model.spec),
        "split": split,
        "examples": int(shown["targets"].shape[0]),
        "removed": removed,
        "layers": {
            layer: {
                gate: _statistics(
                    [np.concatenate(part) for part in zip(*totals[f"{layer}/{gate}"], strict=True)],
                    np.concatenate(chunks),
                    gate,
                )
                for (lay, gate), chunks in pooled.items()
                if lay == layer
            }
            for layer in layers
        },
        "gradient_flow": {name: values.tolist() for name, values in flow.items()},
    }
    records.write_json_atomic(out / "gates.json", summary)
    (out / "gates.md").write_text(_gates_markdown(summary))
    _draw_run(run, layers, shown, removed, pooled, flow, out)
    return out


def _gates_markdown(summary: dict) -> str:
    lines = [
        f"# Gates of {summary['variant']} (`{summary['spec']}`)",
        "",
        f"- Run: `{summary['run']}`; statistics over the whole {summary['split']} split, "
        "valid steps only.",
        "- low / high: the fraction of activations below 0.1 / above 0.9 (saturation).",
        "- memory: the characteristic time `1 / (1 - kept)` in steps, where kept is the fraction "
        "of the state kept per step (the forget gate, or `1 - update` for the GRU family): its "
        "median over activations, and its value at the mean (Tallec & Ollivier 2018).",
    ]
    if summary["removed"]:
        lines.append(
            f"- Removed gates (the constant 1, no parameters): {', '.join(summary['removed'])}."
        )
    lines += ["", "| layer | gate | mean | low | high | memory (median) | memory (at mean) |"]
    lines.append("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for layer, named in summary["layers"].items():
        for gate, s in named.items():
            memory = (
                (f"{s['memory_median']:.1f}", f"{s['memory_of_mean']:.1f}")
                if "memory_median" in s
                else ("", "")
            )
            lines.append(
                f"| {layer} | {gate} | {s['mean']:.3f} | {s['low']:.1%} | {s['high']:.1%} | "
                f"{memory[0]} | {memory[1]} |"
            )
        for gate in summary["removed"]:
            lines.append(f"| {layer} | {gate} | removed: constant 1 | | | | |")
    lines += ["", "Figures: `example<k>.png`, `histograms.png`, `gradient_flow.png` (and PDF)."]
    return "\n".join(lines) + "\n"


def _draw_run(run, layers, shown, removed, pooled, flow, out: Path) -> None:
    with figure_style.style():
        order = lambda values: [  # noqa: E731
            *[g for g in run.model.spec.gates if g in values or g in removed],
            *[n for n in STATES if n in values],
        ]
        for k in range(shown["targets"].shape[0]):
            length = int(shown["lengths"][k]) if "lengths" in shown else shown["inputs"].shape[1]
            panels = [
                (layer, name, None if name in removed else values[name][k, :length])
                for layer, values in layers.items()
                for name in order(values)
            ]
            figure = Figure(
                figsize=(figure_style.WIDTH * 2, 1.3 * len(panels) + 0.4), layout="constrained"
            )
            axes = figure.subplots(len(panels), 1, squeeze=False, sharex=True)[:, 0]
            for axis, (layer, name, value) in zip(axes, panels, strict=True):
                axis.grid(False)
                if value is None:  # removed: the constant it is
                    value = np.ones((length, run.model.hidden))
                    title = f"{layer}: {name} (removed: constant 1)"
                else:
                    title = f"{layer}: {name}"
                gate = name not in STATES
                bound = float(np.abs(value).max()) or 1.0
                image = axis.imshow(
                    value.T,
                    aspect="auto",
                    interpolation="nearest",
                    cmap="viridis" if gate else "RdBu_r",
                    vmin=0.0 if gate else -bound,
                    vmax=1.0 if gate else bound,
                )
                axis.set_title(title, loc="left")
                axis.set_ylabel("unit")
                figure.colorbar(image, ax=axis, pad=0.01)
            axes[-1].set_xlabel("time step")
            figure.suptitle(f"{run.config.model.variant}, example {k}", x=0.01, ha="left")
            figure_style.save(figure, out / f"example{k}")

        keys = sorted(pooled, key=lambda k: (k[0], run.model.spec.gates.index(k[1])))
        figure = Figure(
            figsize=(figure_style.WIDTH, 1.1 * max(len(keys) + len(removed), 1) + 0.4),
            layout="constrained",
        )
        axes = figure.subplots(max(len(keys) + len(removed), 1), 1, squeeze=False)[:, 0]
        for axis, (layer, gate) in zip(axes, keys, strict=False):
            axis.hist(np.concatenate(pooled[(layer, gate)]), bins=50, range=(0, 1), color="#0072B2")
            axis.set_title(f"{layer}: {gate}", loc="left")
            axis.set_ylabel("count")
        for axis, gate in zip(axes[len(keys) :], removed, strict=False):
            axis.axvline(1.0, color="#D55E00", linewidth=2)
            axis.set_xlim(0, 1.05)
            axis.set_yticks([])
            axis.set_title(f"{gate}: removed (constant 1)", loc="left")
        axes[-1].set_xlabel("activation")
        figure_style.save(figure, out / "histograms")

        figure = Figure(figsize=(figure_style.WIDTH, 2.4), layout="constrained")
        axis = figure.subplots()
        for name, values in flow.items():
            axis.semilogy(np.arange(len(values)), values, label=name)
        axis.set_xlabel("time step t")
        axis.set_ylabel("mean ||dL/dh_t||")
        axis.legend(frameon=False)
        figure_style.save(figure, out / "gradient_flow")


# --------------------------------------------------------------------------------------------------
# Every variant of a sweep, side by side.
# --------------------------------------------------------------------------------------------------


def _one_run_per_variant(directory: Path) -> dict[str, Path]:
    """The completed run with the lowest seed of every variant, in the report's variant order
    (for a two-stage sweep, its test stage)."""
    from gatelab.report import load, stats

    runs = load.load_runs(directory)
    done = runs[runs["status"] == "completed"]
    if done.empty:
        raise ValueError(f"{directory} has no completed runs to compare")
    return {
        variant: Path(done[done["variant"] == variant].sort_values("seed")["path"].iloc[0])
        for variant in stats.variant_order(done)
    }


def inspect_compare(
    directory: str | Path,
    gate: str = "forget",
    split: str = "test",
    example: int = 0,
    out: Path | None = None,
) -> Path:
    """The same gate of every variant on the same example, and every variant's gradient flow.

    Returns:
        The output directory (``DIR/inspect`` by default).
    """
    directory = Path(directory)
    out = Path(out or directory / "inspect")
    out.mkdir(parents=True, exist_ok=True)
    chosen = _one_run_per_variant(directory)
    panels, flows, rows, task_name = [], {}, [], None
    for variant, run_dir in chosen.items():
        run = restore.restore_run(run_dir)
        if task_name not in (None, run.task.name):
            raise ValueError(f"{directory} mixes tasks ({task_name}, {run.task.name})")
        task_name = run.task.name
        data = run.task.eval_set(split)
        shown = _batch(data, example, example + 1)
        layers = capture(run, shown)
        first = next(iter(layers))
        length = int(shown["lengths"][0]) if "lengths" in shown else shown["inputs"].shape[1]
        spec = run.model.spec
        if gate not in spec.gates:
            state, value = f"no {gate} gate in {type(spec).__name__}", None
        elif getattr(spec, gate) == "open":
            state, value = "removed: constant 1", np.ones((length, run.model.hidden))
        else:
            state, value = getattr(spec, gate), layers[first][gate][0, :length]
        panels.append((variant, state, value))
        flows[variant] = gradient_flow(run, _batch(data, 0, min(64, len(data["targets"]))))[first]
        stats = None
        if value is not None and state != "removed: constant 1":
            sums = _sums({first: {gate: value[None]}}, None, 1)[f"{first}/{gate}"]
            stats = _statistics(sums, value.ravel(), gate)
        rows.append((variant, state, stats, str(run_dir)))
    _draw_compare(panels, flows, gate, out)
    lines = [
        f"# The {gate} gate of every variant ({task_name}, {split} example {example})",
        "",
        "One run per variant: the completed run with the lowest seed. Figures: "
        f"`compare_{gate}.png`, `gradient_flow.png` (and PDF).",
        "",
        "| variant | mode | mean | low | high | memory (median) | run |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for variant, state, stats, path in rows:
        if stats is None:
            lines.append(f"| {variant} | {state} | | | | | `{path}` |")
        else:
            memory = f"{stats['memory_median']:.1f}" if "memory_median" in stats else ""
            lines.append(
                f"| {variant} | {state} | {stats['mean']:.3f} | {stats['low']:.1%} | "
                f"{stats['high']:.1%} | {memory} | `{path}` |"
            )
    (out / f"compare_{gate}.md").write_text("\n".join(lines) + "\n")
    (out / "gradient_flow.json").write_text(json.dumps({k: v.tolist() for k, v in flows.items()}))
    return out


def _draw_compare(panels, flows, gate: str, out: Path) -> None:
    with figure_style.style():
        figure = Figure(
            figsize=(figure_style.WIDTH * 2, 1.2 * len(panels) + 0.4), layout="constrained"
        )
        axes = figure.subplots(len(panels), 1, squeeze=False, sharex=True)[:, 0]
        for axis, (variant, state, value) in zip(axes, panels, strict=True):
            axis.grid(False)
            axis.set_title(f"{variant}: {gate} ({state})", loc="left")
            axis.set_ylabel("unit")
            if value is None:
                axis.text(0.5, 0.5, state, ha="center", va="center", transform=axis.transAxes)
                axis.set_xticks([])
                axis.set_yticks([])
                continue
            image = axis.imshow(
                value.T, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0, vmax=1
            )
            figure.colorbar(image, ax=axis, pad=0.01)
        axes[-1].set_xlabel("time step")
        figure_style.save(figure, out / f"compare_{gate}")

        figure = Figure(figsize=(figure_style.WIDTH, 3.4), layout="constrained")
        axis = figure.subplots()
        styles = figure_style.variant_styles(list(flows))
        for variant, values in flows.items():
            style = styles[variant]
            axis.semilogy(
                np.arange(len(values)),
                values,
                label=variant,
                color=style["color"],
                linestyle=style["linestyle"],
            )
        axis.set_xlabel("time step t")
        axis.set_ylabel("mean ||dL/dh_t|| (first layer)")
        # As many columns as the width holds (11 variants' labels overflowed 4 fixed columns).
        figure_style.legend(figure, axis.get_legend_handles_labels()[0], 4)
        figure_style.save(figure, out / "gradient_flow")
