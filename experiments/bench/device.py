"""The accelerator form (``python -m experiments.bench --device``): groups of runs on one device.

Training throughput in run-steps per second (runs x optimisation steps / s) for a group of ``R``
independent runs (own parameters and Adam state) of gatelab's ``lstm`` and ``gru``, trained as
one compiled program: ``jax.vmap`` over the run axis, as gatelab's runner trains a group on an
accelerator (``gatelab.train.over_runs`` with ``resolve_execution("auto") == "vmap"``). Against,
on the same device, one run after another of ``jax.experimental.rnn.lstm`` (cuDNN on a GPU) and
of PyTorch ``nn.LSTM`` / ``nn.GRU`` on ``cuda``: their rows at ``R > 1`` are ``R x`` the measured
time of one run (their run-steps/s is the one-run figure), and say so.

A call of every contender is ``chunk`` optimisation steps: for JAX a jitted ``lax.scan`` of the
train step, its state donated; for PyTorch ``chunk`` eager steps. Each call is blocked on
(``block_until_ready``, ``torch.cuda.synchronize``). Compilation and the first call are timed
apart and excluded; the contenders of one ``R`` run in one child process, interleaved over
rounds (``measure.interleave``), and their medians and p10-p90 are reported.

The children, one per group size for JAX and one for PyTorch, have timeouts, and no child starts
once the form's time is spent: a size that runs out of memory, times out or is skipped is a row
that says so, never an estimate. The parent touches no device (a JAX backend started here would
take the GPU's memory from the children).

On the CPU (JAX's default backend, no GPU) the form runs end to end and its header says that it
is not the GPU measurement; ``jax.experimental.rnn.lstm`` has no CPU lowering (jaxlib 0.10:
its abstract evaluation needs the CUDA plugin), so its row times the module's own reference
implementation, ``lstm_ref`` (a ``lax.scan``), and names it.

    python -m experiments.bench --device          # ~3-4 minutes on an H200 (4 on 2 CPU cores)
    python -m experiments.bench --device-smoke    # tiny sizes, for tests: about 30 s on 2 cores
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import traceback
from typing import Any

from experiments.bench.measure import machine_info, run_child

GROUPED = ("lstm", "gru")  # gatelab, R runs as one vmapped program
SEQUENTIAL = ("jax-rnn-lstm", "torch-lstm", "torch-gru")  # one run; R runs one after another
CONTENDERS = GROUPED + SEQUENTIAL
LEARNING_RATE = 1e-3
DESCRIPTION = {
    "lstm": "gatelab GatedRNN(lstm), jax.vmap over the R runs",
    "gru": "gatelab GatedRNN(gru), jax.vmap over the R runs",
    "jax-rnn-lstm": "jax.experimental.rnn.lstm, one run",
    "torch-lstm": "PyTorch nn.LSTM on cuda, one run",
    "torch-gru": "PyTorch nn.GRU on cuda, one run",
}


@dataclasses.dataclass(frozen=True)
class DevicePlan:
    """Sizes and repetitions of the ``--device`` form."""

    batch: int = 64
    seq: int = 100  # sequence length
    features: int = 32
    hidden: int = 128
    groups: tuple[int, ...] = (1, 8, 64, 256)
    chunk: int = 10  # optimisation steps per call
    rounds: int = 5
    block_s: float = 0.3  # seconds of calls per timed block
    budget_s: float = 20.0  # a child's rounds stop past this (after two rounds)
    child_timeout_s: float = 120.0
    total_s: float = 240.0  # every child's timeout ends by then; none starts with under 20 s
    cheap: bool = False  # compile with gatelab.runtime.CHEAP_COMPILE


SMOKE = DevicePlan(
    batch=8,
    seq=10,
    features=4,
    hidden=16,
    groups=(1, 2),
    chunk=2,
    rounds=2,
    block_s=0.02,
    budget_s=5.0,
    child_timeout_s=120.0,
    total_s=180.0,
    cheap=True,
)
MIN_CHILD_S = 20.0


def log(message: str) -> None:
    print(f"[bench device {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _reason(error: BaseException) -> str:
    """A failure in one line, out-of-memory named as such."""
    text = f"{type(error).__name__}: {error}".strip()
    first = text.splitlines()[0][:300]
    if any(s in text for s in ("RESOURCE_EXHAUSTED", "out of memory", "Out of memory")):
        return f"out of memory: {first}"
    return f"failed: {first}"


def _unavailable(name: str, runs: int, reason: str, **extra: Any) -> dict[str, Any]:
    row = {"runs": runs, "name": name, "status": "unavailable", "run_steps_per_s": None}
    return {**row, "reason": reason, **extra}


# ==================================================================================================
# The children: the JAX contenders of one group size, and PyTorch.
# ==================================================================================================


def _shape(plan: DevicePlan):
    from experiments.bench.contenders import Shape

    return Shape(plan.batch, plan.seq, plan.features, plan.hidden, plan.cheap)


def _jax_info() -> dict[str, Any]:
    import jax
    import jaxlib

    devices = jax.devices()
    return {
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "platform_version": getattr(devices[0].client, "platform_version", None),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "default_matmul_precision": jax.config.jax_default_matmul_precision,
    }


def _peak_device_mib() -> float | None:
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**20


def _chunked(step, chunk: int):
    """``chunk`` train steps in one ``lax.scan``: ``(state, x, y) -> (state, losses)``."""
    import jax

    def run(state, x, y):
        return jax.lax.scan(lambda s, _: step(s, x, y), state, None, length=chunk)

    return run


def _prepared(name: str, fn, state, x, y, plan: DevicePlan, flops: float, elements: int):
    """``fn`` jitted (state donated), compiled and called once: a ``Contender`` and its times."""
    import jax

    from experiments.bench.measure import Contender
    from gatelab import runtime

    start = time.perf_counter()
    options = runtime.CHEAP_COMPILE if plan.cheap else None
    compiled = jax.jit(fn, donate_argnums=0).lower(state, x, y).compile(compiler_options=options)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    box = list(compiled(state, x, y))
    jax.block_until_ready(box[1])
    warmup_s = time.perf_counter() - start

    def run(n: int) -> None:
        for _ in range(n):
            box[0], box[1] = compiled(box[0], x, y)
        jax.block_until_ready(box[1])

    contender = Contender(name, run, flops, elements, compile_s)
    return contender, {"compile_s": compile_s, "warmup_s": warmup_s}


def _gatelab(name: str, runs: int, plan: DevicePlan):
    """gatelab's ``name`` for a group of ``runs``: own parameters, Adam state and batch each."""
    import jax

    import gatelab
    from experiments.bench.contenders import _train_step

    shape = _shape(plan)
    module = gatelab.GatedRNN(plan.hidden, gatelab.variant(name))
    step, init = _train_step(module, lambda out: out[1])
    kx, ky, kp = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (runs, plan.batch, plan.seq, plan.features))
    y = jax.random.normal(ky, (runs, plan.batch, plan.seq, plan.hidden))
    state = jax.vmap(init)(jax.random.split(kp, runs), x)
    fn = _chunked(jax.vmap(step), plan.chunk)
    calls = plan.chunk * runs
    contender, extra = _prepared(
        name, fn, state, x, y, plan, calls * shape.flops(name), calls * plan.batch * plan.seq
    )
    return contender, {**extra, "implementation": DESCRIPTION[name]}


def _jax_rnn(plan: DevicePlan):
    """``jax.experimental.rnn.lstm`` for one run (its packed weights, ``init_lstm_weight``);
    where it does not lower (the CPU), the module's reference ``lstm_ref``, named as such."""
    import jax
    import jax.numpy as jnp
    import optax
    from jax.experimental import rnn

    b, t, d, h = plan.batch, plan.seq, plan.features, plan.hidden
    tx = optax.adam(LEARNING_RATE)
    kx, ky, kw = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (b, t, d))
    y = jax.random.normal(ky, (b, t, h))
    zeros = jnp.zeros((1, b, h))
    lengths = jnp.full((b,), t, jnp.int32)

    def cudnn(w, x):
        return rnn.lstm(x, zeros, zeros, w, lengths, d, h, 1, 0.0, False)[0]

    def reference(w, x):
        w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(w, d, h, 1, False)
        return rnn.lstm_ref(x, zeros, zeros, w_ih, w_hh, b_ih, b_hh, lengths, d, h, 1, 0.0, False)[
            0
        ]

    def train_step(forward):
        def step(state, x, y):
            w, opt_state = state
            loss, grads = jax.value_and_grad(lambda w: jnp.mean((forward(w, x) - y) ** 2))(w)
            updates, opt_state = tx.update(grads, opt_state, w)
            return (optax.apply_updates(w, updates), opt_state), loss

        return step

    shape = _shape(plan)
    flops, elements = plan.chunk * shape.flops("lstm"), plan.chunk * b * t

    def build(forward):
        w = rnn.init_lstm_weight(kw, d, h, 1, False)
        fn = _chunked(train_step(forward), plan.chunk)
        return _prepared("jax-rnn-lstm", fn, (w, tx.init(w)), x, y, plan, flops, elements)

    try:
        contender, extra = build(cudnn)
        return contender, {**extra, "implementation": "jax.experimental.rnn.lstm (cuDNN)"}
    except Exception as error:  # noqa: BLE001  (no lowering on this backend: the reference)
        failure = _reason(error)
        log(f"jax.experimental.rnn.lstm: {failure}; timing lstm_ref instead")
    contender, extra = build(reference)
    implementation = (
        "jax.experimental.rnn.lstm_ref, the module's reference lax.scan, NOT cuDNN "
        f"(jax.experimental.rnn.lstm {failure})"
    )
    return contender, {**extra, "implementation": implementation, "cudnn_error": failure}


def _timed(built: list, extras: dict[str, dict], runs: int, plan: DevicePlan) -> list[dict]:
    """The built contenders interleaved; rows in run-steps/s (calls x chunk x runs / s)."""
    from experiments.bench.measure import interleave

    if not built:
        return []
    rows = []
    for row in interleave(built, plan.rounds, plan.block_s, plan.budget_s):
        rate = row.pop("steps_per_s")
        scale = plan.chunk * (runs if row["name"] in GROUPED else 1)
        row["run_steps_per_s"] = {
            k: v * scale if k != "n" else v for k, v in rate.items()
        }  # per call, to per run and optimisation step
        rows.append({"runs": runs, "status": "measured", **row, **extras[row["name"]]})
    return rows


def jax_child(plan: DevicePlan, runs: int) -> dict[str, Any]:
    """The gatelab contenders for a group of ``runs`` (and ``jax-rnn-lstm`` at one run)."""
    from gatelab import runtime

    runtime.tune_allocator()
    info = _jax_info()
    log(f"jax child R={runs} on {info['backend']} ({info['device_kind']})")
    names = [*GROUPED, *(["jax-rnn-lstm"] if runs == 1 else [])]
    built, extras, rows = [], {}, []
    for name in names:
        log(f"R={runs} {name}: compiling")
        try:
            contender, extra = (
                _jax_rnn(plan) if name == "jax-rnn-lstm" else _gatelab(name, runs, plan)
            )
        except Exception as error:  # noqa: BLE001  (one size or contender failing: a row)
            rows.append(_unavailable(name, runs, _reason(error)))
            log(f"R={runs} {name}: {rows[-1]['reason']}\n{traceback.format_exc()}")
            continue
        built.append(contender)
        extras[name] = extra
    log(f"R={runs}: timing {[c.name for c in built]}")
    try:
        rows += _timed(built, extras, runs, plan)
    except Exception as error:  # noqa: BLE001
        rows += [_unavailable(c.name, runs, _reason(error), **extras[c.name]) for c in built]
    return {"jax": info, "rows": rows, "peak_device_mib": _peak_device_mib()}


def torch_child(plan: DevicePlan) -> dict[str, Any]:
    """PyTorch ``nn.LSTM`` / ``nn.GRU`` on ``cuda``, one run each, or why not."""
    import torch

    info: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda}
    names = ("torch-lstm", "torch-gru")
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else "no CUDA device visible"
        reason = f"unavailable: torch.cuda.is_available() is False (torch {torch.__version__}, "
        reason += f"{build})"
        return {"torch": info, "rows": [_unavailable(n, 1, reason) for n in names]}
    info |= {
        "device_name": torch.cuda.get_device_name(0),
        "cudnn": torch.backends.cudnn.version(),
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }
    from experiments.bench.measure import Contender

    shape, device = _shape(plan), torch.device("cuda")
    built, extras, rows = [], {}, []
    for name in names:
        kind = name.removeprefix("torch-")
        try:
            torch.manual_seed(0)
            layer = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
            model = layer(plan.features, plan.hidden, batch_first=True).to(device)
            optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
            x = torch.randn(plan.batch, plan.seq, plan.features, device=device)
            y = torch.randn(plan.batch, plan.seq, plan.hidden, device=device)

            def run(n: int, model=model, optimizer=optimizer, x=x, y=y) -> None:
                for _ in range(n * plan.chunk):
                    optimizer.zero_grad(set_to_none=True)
                    torch.nn.functional.mse_loss(model(x)[0], y).backward()
                    optimizer.step()
                torch.cuda.synchronize()

            start = time.perf_counter()
            run(1)
            warmup_s = time.perf_counter() - start
        except Exception as error:  # noqa: BLE001
            rows.append(_unavailable(name, 1, _reason(error)))
            continue
        flops, elements = plan.chunk * shape.flops(kind), plan.chunk * plan.batch * plan.seq
        built.append(Contender(name, run, flops, elements))
        extras[name] = {"warmup_s": warmup_s, "implementation": DESCRIPTION[name]}
    try:
        rows += _timed(built, extras, 1, plan)
    except Exception as error:  # noqa: BLE001
        rows += [_unavailable(c.name, 1, _reason(error), **extras[c.name]) for c in built]
    info["peak_device_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return {"torch": info, "rows": rows}


# ==================================================================================================
# The parent: the children in turn, the derived rows, the report.
# ==================================================================================================


def _children(plan: DevicePlan) -> list[tuple[str, int]]:
    """Cheapest first, so the largest group is the one a spent time budget skips."""
    return [("jax", plan.groups[0]), ("torch", 1), *(("jax", r) for r in plan.groups[1:])]


def _names(kind: str, runs: int, plan: DevicePlan) -> list[str]:
    if kind == "torch":
        return ["torch-lstm", "torch-gru"]
    return [*GROUPED, *(["jax-rnn-lstm"] if runs == 1 else [])]


def _derived(rows: list[dict[str, Any]], plan: DevicePlan) -> list[dict[str, Any]]:
    """The sequential contenders at every ``R > 1``: ``R x`` the measured time of one run."""
    out = []
    for name in SEQUENTIAL:
        one = next((r for r in rows if r["name"] == name and r["runs"] == 1), None)
        for runs in plan.groups:
            if runs == 1:
                continue
            if one is None or one["status"] != "measured":
                reason = one["reason"] if one else "no row"
                out.append(_unavailable(name, runs, f"R=1 {reason}"))
                continue
            row = {k: v for k, v in one.items() if k not in ("compile_s", "warmup_s")}
            row |= {"runs": runs, "status": f"{runs} x one run"}
            row["basis"] = f"{runs} x the measured time of one run (R=1): run-steps/s unchanged"
            out.append(row)
    return out


def collect(plan: DevicePlan) -> dict[str, Any]:
    """Runs every child within the plan's time; the rows, the device, the children."""
    begin = time.perf_counter()
    rows: list[dict[str, Any]] = []
    children, info = [], {"jax": None, "torch": None}
    for kind, runs in _children(plan):
        names = _names(kind, runs, plan)
        label = f"{kind} R={runs}" if kind == "jax" else "torch"
        left = plan.total_s - (time.perf_counter() - begin)
        if left < MIN_CHILD_S:
            reason = f"skipped: the form's {plan.total_s:.0f} s were spent before this child"
            rows += [_unavailable(n, runs, reason) for n in names]
            children.append({"child": label, "skipped": True})
            log(f"{label}: {reason}")
            continue
        timeout = min(plan.child_timeout_s, left)
        log(f"{label}: child (timeout {timeout:.0f} s)")
        command = [sys.executable, "-m", "experiments.bench.device", "--child", kind]
        command += ["--runs", str(runs), "--plan", json.dumps(dataclasses.asdict(plan))]
        child = run_child(command, None, timeout)
        record = {"child": label, "returncode": child.returncode, "wall_s": child.wall_s}
        killed = child.returncode == -9  # its launcher too: no peak RSS
        record["peak_rss_mib"] = None if killed else child.peak_rss_mib
        record["stderr_tail"] = child.stderr[-3000:]
        result = None
        for line in reversed(child.stdout.strip().splitlines()):
            try:
                result = json.loads(line)
                break
            except json.JSONDecodeError:
                continue
        if killed:
            reason = f"timed out: the child was killed after {timeout:.0f} s"
        elif result is None:
            last = (child.error() or "no JSON from the child").strip().splitlines()[-1:]
            reason = f"failed: the child exited {child.returncode}: {last[0] if last else ''}"
            record["error"] = child.error() or "no JSON from the child"
        if result is None:
            rows += [_unavailable(n, runs, reason) for n in names]
            log(f"{label}: {reason}")
        else:
            rows += result["rows"]
            record["peak_device_mib"] = result.get("peak_device_mib")
            info[kind] = info[kind] or result.get(kind)
            if kind == "torch" and result.get("torch"):
                record["peak_device_mib"] = result["torch"].get("peak_device_mib")
        children.append(record)
    rows += _derived(rows, plan)
    order = {name: i for i, name in enumerate(CONTENDERS)}
    rows.sort(key=lambda r: (r["runs"], order[r["name"]]))
    return {"rows": rows, "device": info, "children": children}


def _num(value: Any) -> str:
    from experiments.bench.report import num

    return num(value)


def render(results: dict[str, Any]) -> str:
    """The Markdown report of ``results``."""
    from gatelab.report.tables import markdown

    m, plan = results["machine"], results["plan"]
    jx, tc = results["device"]["jax"], results["device"]["torch"]
    title = "# gatelab on one accelerator: groups of runs"
    out = f"{title}{' (smoke form)' * results['smoke']}\n\n"
    if results["on_cpu"]:
        out += (
            "**Ran on the CPU: JAX's default backend here is `cpu`, so this is NOT the GPU "
            "measurement.** The figures only show that the form runs end to end; on the CPU "
            "gatelab's runner would train a group with `lax.map`, not `vmap`.\n\n"
        )
    elif jx is None:
        out += "**The JAX device is unknown: no JAX child reported (see the children).**\n\n"
    out += f"`{results['command']}`: {results['elapsed_s']:.0f} s, {m['date']}\n\n"
    if jx:
        out += (
            f"- device: **{jx['device_kind']}** (JAX backend `{jx['backend']}`, "
            f"{jx['device_count']} device(s), {jx['platform_version']}); jax {jx['jax']}, "
            f"jaxlib {jx['jaxlib']}\n"
        )
    if tc:
        if tc.get("device_name"):
            out += (
                f"- PyTorch {tc['torch']} (CUDA {tc['cuda']}, cuDNN {tc['cudnn']}) on "
                f"{tc['device_name']}; cudnn.allow_tf32={tc['cudnn_allow_tf32']}, "
                f"matmul.allow_tf32={tc['matmul_allow_tf32']}, "
                f"cudnn.benchmark={tc['cudnn_benchmark']} (defaults)\n"
            )
        else:
            out += f"- PyTorch {tc['torch']} (CUDA {tc['cuda']}): no CUDA device\n"
    out += (
        f"- host: {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), "
        f"{m['memory_gib']} GiB; git {m['git']} ({m['git_changed_files']} files changed)\n"
        f"- problem: hidden {plan['hidden']}, batch {plan['batch']}, sequence {plan['seq']}, "
        f"{plan['features']} inputs, float32, 1 layer, MSE on all outputs, Adam 1e-3; each run "
        "its own parameters, Adam state and batch\n"
        f"- a call: {plan['chunk']} optimisation steps (JAX: a jitted `lax.scan` of the train "
        "step, state donated; PyTorch: eager steps), blocked on (`block_until_ready`, "
        "`torch.cuda.synchronize`)\n"
        "- matmul precision: each framework's default (JAX "
        f"`jax_default_matmul_precision={jx['default_matmul_precision'] if jx else '?'}`; "
        "`jax.experimental.rnn.lstm` without `precision` lets cuDNN use TF32)\n"
        f"- timing: compile and the first call apart and excluded; the contenders of one R in "
        f"one child process, interleaved over {plan['rounds']} rounds of ~{plan['block_s']} s "
        "blocks, median and p10–p90 over rounds\n"
        "- run-steps/s: runs x optimisation steps per second; group steps/s = run-steps/s / R; "
        "GFLOP/s counted as in the suite (a multiply-add per parameter per sequence element, "
        "a training step 3x the forward)\n\n"
    )
    out += "## Run-steps per second\n\n"
    body = []
    for row in results["rows"]:
        rate = row["run_steps_per_s"]
        base = next(
            (
                r
                for r in results["rows"]
                if r["name"] == "jax-rnn-lstm" and r["runs"] == row["runs"]
            ),
            None,
        )
        ratio = ""
        if rate and base and base["run_steps_per_s"]:
            ratio = f"{rate['median'] / base['run_steps_per_s']['median']:.2f}x"
        how = row["status"] if row["status"] != "unavailable" else row["reason"]
        if row.get("cudnn_error") and rate:
            how += " (lstm_ref, NOT cuDNN)"
        body.append(
            [row["runs"], row["name"], how]
            + (
                [rate["median"], f"{_num(rate['p10'])}–{_num(rate['p90'])}"]
                + [rate["median"] / row["runs"], row["gflops"], ratio]
                if rate
                else [""] * 5
            )
            + [row.get("compile_s"), row.get("warmup_s")]
        )
    headers = ["R", "contender", "how", "run-steps/s", "p10–p90", "group steps/s", "GFLOP/s"]
    headers += ["vs jax-rnn-lstm", "compile s", "first call s"]
    out += markdown([[_num(v) for v in r] for r in body], headers, "rllrrrrrrr") + "\n\n"
    out += (
        "`lstm`, `gru`: the R runs as one program (`jax.vmap` over the run axis). "
        "`jax-rnn-lstm`, `torch-*`: measured for one run; at R > 1 the row is R x that time "
        "(R runs one after another), so its run-steps/s is the one-run figure, not a second "
        "measurement. `vs jax-rnn-lstm`: run-steps/s over that row's at the same R.\n\n"
    )
    implementations = {
        r["name"]: r["implementation"] for r in results["rows"] if r.get("implementation")
    }
    out += "Contenders:\n\n" + "".join(f"- `{k}`: {v}\n" for k, v in implementations.items())
    children = [
        [
            c["child"],
            "skipped" if c.get("skipped") else c["returncode"],
            c.get("wall_s"),
            c.get("peak_rss_mib"),
            c.get("peak_device_mib"),
        ]
        for c in results["children"]
    ]
    out += "\n## Children\n\n" + markdown(
        [[_num(v) for v in r] for r in children],
        ["child", "exit", "wall s", "peak RSS MiB", "peak device MiB"],
        "lrrrr",
    )
    out += (
        f"\n\nEach child's timeout: {plan['child_timeout_s']:.0f} s, and none past "
        f"{plan['total_s']:.0f} s from the start (exit -9: killed at its timeout).\n"
    )
    return out


def main(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    """``python -m experiments.bench --device`` (``--device-smoke``): writes ``OUT/device.md``
    and ``.json`` (``device-smoke.*``) and prints the Markdown."""
    start = time.perf_counter()
    smoke = bool(args.device_smoke or args.quick)
    plan = SMOKE if smoke else DevicePlan()
    results: dict[str, Any] = {
        "command": " ".join(
            ["python -m experiments.bench", *(sys.argv[1:] if argv is None else argv)]
        ),
        "smoke": smoke,
        "machine": machine_info(),
        "plan": dataclasses.asdict(plan),
        "contenders": list(CONTENDERS),
    }
    results |= collect(plan)
    jx = results["device"]["jax"]
    results["on_cpu"] = jx is None or jx["backend"] == "cpu"
    results["errors"] = [c["error"] for c in results["children"] if c.get("error")]
    results["elapsed_s"] = time.perf_counter() - start
    markdown = render(results)
    stem = args.out / ("device-smoke" if smoke else "device")
    args.out.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".md").write_text(markdown)
    stem.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
    print(markdown)
    log(f"wrote {stem}.md and .json in {results['elapsed_s']:.0f} s")
    return 1 if results["errors"] else 0


def _child_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench.device")
    parser.add_argument("--child", choices=["jax", "torch"], required=True)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--plan", required=True, help="a DevicePlan as JSON")
    args = parser.parse_args(argv)
    fields = json.loads(args.plan)
    fields["groups"] = tuple(fields["groups"])
    plan = DevicePlan(**fields)
    result = jax_child(plan, args.runs) if args.child == "jax" else torch_child(plan)
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
