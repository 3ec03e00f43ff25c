"""Both cores for one run (GitHub issue 15): one training step with its batch split over two CPU
devices, against one device and against PyTorch's ``nn.LSTM`` / ``nn.GRU`` on two threads.

    python -m experiments.bench.cores               # about 5 minutes on 2 cores
    python -m experiments.bench.cores --rounds 3    # about 3 minutes

Writes ``OUT/cores.md`` and ``.json`` (``OUT`` defaults to ``experiments/bench/results``).

Every row is one child process, because XLA's CPU devices and threads are fixed when a process
starts. In each child the gatelab contender and PyTorch (2 threads) are interleaved
(``measure.interleave``), so every ratio compares two rates measured side by side:

``one device``
    today's program: ``GatedRNN`` on the one CPU device (default flags).
``batch over 2 devices``
    ``--xla_force_host_platform_device_count=2``: the batch sharded over a 1-D mesh, the
    parameters and Adam's state replicated, the gradient averaged with ``lax.pmean`` before the
    update (``jax.shard_map``); each device keeps XLA's multi-threaded Eigen pool.
``batch over 2 devices, 1 thread each``
    the same with ``--xla_cpu_multi_thread_eigen=false``: one thread per device, so two devices
    use the two cores without oversubscribing them.

The child also checks the split step against the one-device step from the same state: the
largest difference of the parameters after one step is reported (float reduction order only).
The problem is the suite's: 1 layer, input 32, sequence 100, batch 64, Adam 1e-3, MSE of all
outputs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from experiments.bench.measure import ROOT, machine_info, run_child

RESULTS = ROOT / "experiments" / "bench" / "results"

MODES = {
    "one device": "",
    "batch over 2 devices": "--xla_force_host_platform_device_count=2",
    "batch over 2 devices, 1 thread each": (
        "--xla_force_host_platform_device_count=2 --xla_cpu_multi_thread_eigen=false"
    ),
}
CASES = [("lstm", 32), ("lstm", 128), ("lstm", 512), ("gru", 128)]


def _child(mode: str, kind: str, hidden: int, rounds: int) -> dict:
    """Measures one mode at one shape (run in a fresh process with the mode's XLA flags)."""
    from gatelab import runtime

    runtime.tune_allocator()
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    import torch

    import gatelab
    from experiments.bench import contenders
    from experiments.bench.measure import Contender, interleave

    torch.set_num_threads(2)
    shape = contenders.Shape(batch=64, steps=100, features=32, hidden=hidden)
    module = gatelab.GatedRNN(hidden, gatelab.variant(kind))
    step, init = contenders._train_step(module, lambda out: out[1])
    x, y = (jnp.asarray(a) for a in contenders._data(shape))
    state = init(jax.random.key(0), x)
    one = jax.jit(step)
    check = None
    if mode == "one device":
        compiled = jax.jit(step, donate_argnums=0)
        inputs = (x, y)
        start_state = jax.tree_util.tree_map(jnp.copy, state)
    else:
        from jax.sharding import Mesh, NamedSharding
        from jax.sharding import PartitionSpec as P

        mesh = Mesh(np.array(jax.local_devices()[:2]), ("batch",))

        def local(state, x, y):
            params, opt_state = state
            tx = optax.adam(contenders.LEARNING_RATE)
            loss_fn = lambda p: jnp.mean((module.apply({"params": p}, x)[1] - y) ** 2)  # noqa: E731
            loss, grads = jax.value_and_grad(loss_fn)(params)
            grads, loss = jax.lax.pmean((grads, loss), "batch")
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        split = jax.shard_map(
            local,
            mesh=mesh,
            in_specs=(P(), P("batch"), P("batch")),
            out_specs=(P(), P()),
            check_vma=False,
        )
        compiled = jax.jit(split, donate_argnums=0)
        batch = NamedSharding(mesh, P("batch"))
        inputs = (jax.device_put(x, batch), jax.device_put(y, batch))
        replicated = NamedSharding(mesh, P())
        start_state = jax.device_put(jax.tree_util.tree_map(jnp.copy, state), replicated)
        fresh = jax.device_put(jax.tree_util.tree_map(jnp.copy, state), replicated)
        (split_params, _), _ = compiled(fresh, *inputs)
        (one_params, _), _ = one(state, x, y)
        check = max(
            float(jnp.max(jnp.abs(a - b)))
            for a, b in zip(
                jax.tree_util.tree_leaves(split_params),
                jax.tree_util.tree_leaves(one_params),
                strict=True,
            )
        )
    box = [start_state]

    def run(n: int) -> None:
        for _ in range(n):
            box[0], loss = compiled(box[0], *inputs)
        jax.block_until_ready(loss)

    gate = Contender(f"gatelab {kind}", run, shape.flops(kind), shape.batch * shape.steps)
    reference = contenders._torch(f"torch nn.{kind.upper()}", kind, shape)
    rows = interleave([gate, reference], rounds=rounds, block_s=0.5)
    return {
        "mode": mode,
        "kind": kind,
        "hidden": hidden,
        "devices": len(jax.local_devices()),
        "gatelab": rows[0]["steps_per_s"],
        "torch": rows[1]["steps_per_s"],
        "max_param_diff_after_one_step": check,
    }


def _table(rows: list[dict]) -> str:
    lines = [
        "| cell | hidden | mode | gatelab steps/s (p10-p90) | PyTorch steps/s | gatelab / PyTorch "
        "| param diff after 1 step |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['kind']} | {r['hidden']} | {r['mode']} | {r['error']} | | | |")
            continue
        g, t = r["gatelab"], r["torch"]
        diff = r["max_param_diff_after_one_step"]
        lines.append(
            f"| {r['kind']} | {r['hidden']} | {r['mode']} | {g['median']:.1f} "
            f"({g['p10']:.1f}-{g['p90']:.1f}) | {t['median']:.1f} | "
            f"{g['median'] / t['median']:.2f}x | {'' if diff is None else f'{diff:.1e}'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where cores.md/.json go")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "KIND", "HIDDEN"), help="internal")
    args = parser.parse_args(argv)
    if args.child:
        mode, kind, hidden = args.child
        print(json.dumps(_child(mode, kind, int(hidden), args.rounds)))
        return 0
    rows = []
    for kind, hidden in CASES:
        for mode, flags in MODES.items():
            command = [
                sys.executable,
                "-m",
                "experiments.bench.cores",
                "--rounds",
                str(args.rounds),
            ]
            child = run_child(
                command + ["--child", mode, kind, str(hidden)],
                env={"XLA_FLAGS": flags},
                timeout_s=600,
            )
            error = child.error(lines=200)
            if error:  # the line that says why (XLA's own fatal line, else the last one)
                lines = [x for x in error.splitlines() if x.strip() and not x.startswith("    @")]
                fatal = [x for x in lines if x.startswith("F") or "Error" in x]
                error = (fatal or lines or ["failed"])[-1][:300].replace("|", "/")
                rows.append({"mode": mode, "kind": kind, "hidden": hidden, "error": error})
            else:
                rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
            print(_table(rows[-1:]).splitlines()[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    (args.out / "cores.json").write_text(json.dumps({"machine": info, "rows": rows}, indent=1))
    (args.out / "cores.md").write_text(
        "# Both cores for one run\n\n"
        f"Machine: {info['cpu']}, {info['cores_usable']} usable cores, "
        f"jax {info['versions']['jax']}, torch {info['versions']['torch']}, git {info['git']}, "
        f"{info['date']}. Medians of {args.rounds} interleaved rounds; the ratio compares rates "
        "measured side by side in one process (see the module docstring of "
        "`experiments/bench/cores.py`).\n\n" + _table(rows) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
