"""What the results mean (flags, targets) and the Markdown report that says it.

Every table is ``gatelab.report.tables.markdown``; ``num`` formats the numbers in them.
"""

from __future__ import annotations

import statistics
from typing import Any

from gatelab.report.tables import markdown

BUSY_LOAD = 0.5  # a 1-minute load average above this at the start: someone else is working


def num(value: Any) -> str:
    """A table cell: integers with thousands separators, floats to about three digits."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,d}"
    if isinstance(value, float):
        size = abs(value)
        if size >= 1000:
            return f"{value:,.0f}"
        return f"{value:.0f}" if size >= 100 else f"{value:#.3g}" if size else "0"
    return str(value)


def _table(headers: list[str], rows: list[list[Any]], align: str) -> str:
    return markdown([[num(v) for v in row] for row in rows], headers, align) + "\n\n"


# ==================================================================================================
# Flags and targets.
# ==================================================================================================


def timed_rows(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every timed row, with where it comes from."""
    sections = results["sections"]
    rows = [("throughput", r) for r in sections.get("throughput") or []]
    for lever, lever_rows in (sections.get("design") or {}).items():
        rows += [(f"design/{lever}", r) for r in lever_rows]
    for kind, key in (("allocator", "setting"), ("memory", "contender")):
        for child in sections.get(kind) or []:
            rows += [(f"{kind} ({child[key]})", r) for r in child["rows"]]
    return rows


def flags(results: dict[str, Any]) -> list[str]:
    """Every GFLOP/s figure above the measured peak (a FLOP count or a timing is wrong) and every
    child process that failed. Marks each timed row with its percentage of the peak."""
    out = []
    peak = (results.get("peak") or {}).get("gflops")
    for where, row in timed_rows(results) if peak else []:
        row["percent_of_peak"] = 100 * row["gflops"] / peak
        row["above_peak"] = max(row["gflops"], row["gflops_p90"]) > peak
        if row["above_peak"]:
            out.append(
                f"{where}: {row['name']} at hidden {row['hidden']} reaches {row['gflops']:.1f} "
                f"GFLOP/s (p90 {row['gflops_p90']:.1f}), above the peak of {peak:.1f}"
            )
    sections = results["sections"]
    failed = [(f"allocator child ({c['setting']})", c) for c in sections.get("allocator") or []]
    failed += [(f"memory child ({c['contender']})", c) for c in sections.get("memory") or []]
    failed += [
        (f"grid contender {name}", c)
        for name, c in ((sections.get("grid") or {}).get("contenders") or {}).items()
    ]
    for where, child in failed:
        if child.get("error") or child.get("returncode"):
            last = (child.get("error") or "").strip().splitlines()[-1:] or [""]
            out.append(f"{where} failed: {last[0]}")
    return out


def allocator_ratio(children: list[dict[str, Any]] | None) -> dict[str, float]:
    """Per contender, steps/s tuned over system: the median of each setting's child medians."""
    rates: dict[tuple[str, str], list[float]] = {}
    for child in children or []:
        for row in child["rows"]:
            key = (row["name"], child["setting"])
            rates.setdefault(key, []).append(row["steps_per_s"]["median"])
    return {
        name: statistics.median(rates[name, "tuned"]) / statistics.median(rates[name, "system"])
        for name in ("lstm", "torch-lstm")
        if (name, "tuned") in rates and (name, "system") in rates
    }


def _median(rows: list[dict[str, Any]], name: str, hidden: int) -> float | None:
    return next(
        (r["steps_per_s"]["median"] for r in rows if (r["name"], r["hidden"]) == (name, hidden)),
        None,
    )


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 6's targets, measured."""
    out = []
    rows = results["sections"].get("throughput") or []
    largest = max((r["hidden"] for r in rows), default=None)
    for name in ("NFG", "NIG"):
        mine, vanilla = _median(rows, name, largest), _median(rows, "vanilla", largest)
        if mine and vanilla:
            target = f"{name} at least 1.2x faster than vanilla (hidden {largest})"
            out.append({"target": target, "ratio": mine / vanilla, "met": mine / vanilla >= 1.2})
    grid = (results["sections"].get("grid") or {}).get("contenders", {})
    sweep = grid.get("sweep", {}).get("estimated_s")
    for key, target, factor in (
        ("loop", "the sweep at least 1.5x faster than the gatelab train loop", 1.5),
        ("torch", "the sweep faster than PyTorch serial", 1.0),
    ):
        other = grid.get(key, {}).get("estimated_s")
        if sweep and other:
            out.append({"target": target, "ratio": other / sweep, "met": other / sweep >= factor})
    return out


# ==================================================================================================
# Markdown.
# ==================================================================================================


def _timed(rows: list[dict[str, Any]], first: str, ratio: bool = False) -> str:
    """Timed rows, a table per hidden size; ``ratio``: steps/s over the table's first row's."""
    out = ""
    for hidden in sorted({r["hidden"] for r in rows}):
        group = [r for r in rows if r["hidden"] == hidden]
        body = []
        for row in group:
            rate, percent = row["steps_per_s"], row.get("percent_of_peak")
            body.append(
                [row["name"], row["compile_s"], rate["median"], _range(rate)]
                + [row["elements_per_s"], row["gflops"]]
                + ["" if percent is None else f"{percent:.1f}%" + " ABOVE PEAK" * row["above_peak"]]
                + [f"{rate['median'] / group[0]['steps_per_s']['median']:.2f}x"] * ratio
            )
        headers = [first, "compile s", "steps/s", "p10–p90", "elements/s", "GFLOP/s", "% peak"]
        out += f"hidden {hidden}:\n\n"
        out += _table(headers + ["vs first"] * ratio, body, "lrrrrrr" + "r" * ratio)
        done, planned = group[0]["steps_per_s"]["n"], group[0]["rounds_planned"]
        if done < planned:
            out += f"{done} of {planned} rounds: the rest did not fit the time budget.\n\n"
    return out


def _range(rate: dict[str, float]) -> str:
    return f"{num(rate['p10'])}–{num(rate['p90'])}"


def _header(results: dict[str, Any]) -> str:
    m, plan = results["machine"], results["plan"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    threads = ", ".join(f"{k}={v}" for k, v in m["threads"].items())
    out = (
        f"# gatelab benchmark{' (quick form)' * results['quick']}\n\n"
        f"`{results['command']}`: {results['elapsed_s']:.0f} s, {m['date']}\n\n"
        f"- machine: {m['cpu']} ({', '.join(m['simd'])}), {m['cores']} cores "
        f"({m['cores_usable']} usable), {m['memory_gib']} GiB; load average "
        f"{m['load_average']} at the start, {results['load_average_end']} at the end\n"
        f"- versions: Python {m['python']}, {versions}; git {m['git']} "
        f"({m['git_changed_files']} files changed)\n"
        f"- allocator: {m['allocator']}; threads: {threads}\n"
        f"- problem: batch {plan['batch']}, {plan['steps']} steps, {plan['features']} inputs, "
        f"float32, 1 layer, MSE on all outputs, Adam 1e-3; {plan['rounds']} rounds of blocks of "
        f"~{plan['block_s']} s\n"
        "- FLOPs: a multiply-add per parameter (gatelab.param_count) per sequence element, a "
        "training step 3x the forward pass\n"
        "- timing: blocked on results, warm-up excluded, compile time apart; the contenders of "
        "a table in one process, round-robin, median and p10–p90 over rounds\n"
    )
    if m["load_average"][0] > BUSY_LOAD:
        out += (
            f"\n**The machine was busy** (load average {m['load_average'][0]} at the start): "
            "every figure is lower than the machine's, PyTorch's by far the most.\n"
        )
    return out


def _peak(peak: dict[str, Any]) -> str:
    rows = [
        [when, fw, measured[fw]["best"], measured[fw]["median"]]
        for when, measured in peak["measurements"].items()
        for fw in ("jax", "torch")
    ]
    return (
        "## Matmul peak\n\n"
        + _table(["when", "framework", "best GFLOP/s", "median GFLOP/s"], rows, "llrr")
        + f"float32 {peak['size']}×{peak['size']}, best and median of 5; the peak is the best of "
        f"all, **{peak['gflops']:.1f} GFLOP/s**, and percentages are of it."
    )


DESIGN = {
    "projection": "Input projection: inside the scan or hoisted (a plain LSTM)",
    "gates": "Gate blocks: one matmul (GatedRNN) or one per gate (nn.RNN(GatedCell)), lstm",
    "unroll": "Unrolling: GatedRNN(unroll=...), lstm",
    "runs": "Group execution: 8 runs of lstm, each on its own batch, as vmap, lax.map or calls",
    "regularisers": "Regularisers: lstm in training with each spec field of regularise.py",
}


def _design(sections: dict[str, Any], allocator_ratio: dict[str, float]) -> str:
    out = "## Design rows\n\n"
    for lever, title in DESIGN.items():
        if (sections.get("design") or {}).get(lever):
            out += f"### {title}\n\n" + _timed(sections["design"][lever], "form", True)
    throughput = sections.get("throughput") or []
    backward = [
        [h, a, b, f"{b / a:.2f}x"]
        for h in sorted({r["hidden"] for r in throughput})
        if (a := _median(throughput, "lstm", h)) and (b := _median(throughput, "lstm:fused", h))
    ]
    if backward:
        out += "### Backward pass: autodiff or hand-written (lstm, the throughput rows)\n\n"
        headers = ["hidden", "autodiff steps/s", "fused steps/s", "fused vs autodiff"]
        out += _table(headers, backward, "rrrr")
    if sections.get("allocator"):
        rows = []
        for c in sections["allocator"]:
            for r in c["rows"]:
                rate = r["steps_per_s"]
                rows.append(
                    [c["setting"], r["name"], rate["median"], _range(rate), c["peak_rss_mib"]]
                )
            if c.get("error"):
                rows.append([c["setting"], "failed", None, c["error"].splitlines()[-1], None])
        headers = ["allocator", "contender", "steps/s", "p10–p90", "peak RSS MiB"]
        out += (
            f"### Allocator: glibc's default or tuned (child processes, hidden {c['hidden']})\n\n"
        )
        out += _table(headers, rows, "llrrr") + "steps/s tuned ÷ system (medians): "
        out += ", ".join(f"{k} {v:.2f}x" for k, v in allocator_ratio.items()) or "n/a"
    return out


GRID = {
    "sweep": "gatelab sweep --workers 2",
    "loop": "gatelab train, one process per run",
    "torch": "PyTorch, one run after another",
    "inprocess": "train_and_evaluate per run, one process",
}


def _grid(grid: dict[str, Any]) -> str:
    c, n = grid["contenders"], grid["runs"]
    sweep_s = c["sweep"]["estimated_s"]
    rows = []
    for key, label in GRID.items():
        estimate = c[key]["estimated_s"]
        rows.append(
            [label, c[key]["runs_measured"], c[key]["wall_s"], estimate]
            + [estimate / n if estimate else None]
            + [f"{estimate / sweep_s:.2f}x" if estimate and sweep_s else ""]
            + [c[key]["peak_rss_mib"], c[key]["test_accuracy"]]
            + ["failed" if c[key]["error"] else "ok"]
        )
    headers = ["contender", "runs measured", "wall s", f"s for all {n}", "s per run"]
    headers += ["sweep's speed-up", "peak RSS MiB", "test acc.", "status"]
    out = "## A whole grid\n\n" + _table(headers, rows, "lrrrrrrrl")
    out += (
        f"{', '.join(grid['variants'])} × {len(grid['seeds'])} seed(s) on MNIST-1D, hidden "
        f"{grid['hidden']}, {grid['steps']} steps of batch {grid['batch']} (`{grid['config']}`), "
        "the contenders in the table's order. Wall times include process start-up; every gatelab "
        "contender starts with an empty JAX compilation cache of its own (a variant's later "
        "seeds reuse its first seed's program). "
    )
    if len(grid["sampled"]) < n:
        out += (
            f"The serial contenders ran {', '.join(grid['sampled'])}; their time for all {n} "
            "runs is estimated: a run not measured counts at its variant's second seed where "
            "measured, else at the mean of the measured first seeds (cold cache) or later seeds "
            "(warm). The sample leaves out FGR, the costliest variant. "
        )
    out += "PyTorch's runs are all nn.LSTM (it has no Greff variants), with its initialisation."
    for key, entry in c.items():
        if entry["error"]:
            out += f"\n\n{key} failed:\n\n```\n{entry['error']}\n```"
    return out


def _compile_and_memory(results: dict[str, Any]) -> str:
    sections = results["sections"]
    grid = (sections.get("grid") or {}).get("contenders", {})
    out = "## Compile time and memory\n\n"
    if grid:
        groups: dict[str, list[dict[str, Any]]] = {}
        for run in grid["sweep"]["per_run"]:
            groups.setdefault(run["run"].split("/")[0], []).append(run)
        rows = [
            [variant, len(runs), runs[0]["time/compile_s"], runs[0]["time/train_s"]]
            for variant, runs in groups.items()
        ]
        out += "### Compile time per sweep group (time/compile_s of the runs' summaries)\n\n"
        out += _table(["variant", "runs", "compile s", "train s"], rows, "lrrr")
        loop = {r["run"]: r for r in grid["loop"]["per_run"]}
        one = {r["run"]: r for r in grid["inprocess"]["per_run"]}
        rows = [
            [run, r.get("time/compile_s"), r.get("wall_s"), r.get("peak_rss_mib")]
            + [one.get(run, {}).get("time/compile_s"), one.get(run, {}).get("wall_s")]
            for run, r in loop.items()
        ]
        headers = ["run", "loop: compile s", "wall s", "peak RSS MiB", "one process: compile s"]
        out += "### Compile time per run: the gatelab train loop and one process\n\n"
        out += _table([*headers, "wall s"], rows, "lrrrrr")
    memory = sections.get("memory") or []
    base = next((c["peak_rss_mib"] for c in memory if c["contender"] == "none"), None)
    rows = [["this process (throughput and design)", None, results["self_rss_mib"], None]]
    for c in memory:
        rate = c["rows"][0]["steps_per_s"]["median"] if c["rows"] else None
        above = None if base is None else c["peak_rss_mib"] - base
        label = f"{c['contender']} at hidden {c['hidden']}" + " (imports only)" * (
            c["contender"] == "none"
        )
        rows.append([f"child: {label}", rate, c["peak_rss_mib"], above])
    out += "### Peak RSS per process (ru_maxrss, each process on its own)\n\n"
    out += _table(["process", "steps/s", "peak RSS MiB", "above imports-only"], rows, "lrrr")
    return out + (
        "Every child of the suite imports JAX, Flax and PyTorch, so a contender's own memory is "
        "the column above the imports-only child. The grid's processes are in its table (the "
        "sweep's with its workers, the loop's at its largest)."
    )


def render(results: dict[str, Any]) -> str:
    """The report: the machine and the method, then each section that ran."""
    sections = results["sections"]
    parts = [_header(results)]
    if results["flags"]:
        parts.append("## Flags\n\n" + "".join(f"- **{f}**\n" for f in results["flags"]))
    if results.get("peak"):
        parts.append(_peak(results["peak"]))
    if sections.get("throughput"):
        parts.append(
            "## Training-step throughput\n\n"
            + _timed(sections["throughput"], "contender")
            + "`lstm:fused` is GatedRNN(backward='fused'), the hand-written backward pass; the "
            "rest of gatelab differentiates with autodiff. PyTorch is eager, with "
            f"{results['machine']['threads'].get('torch')} threads."
        )
    if sections.get("design") or sections.get("allocator"):
        parts.append(_design(sections, results["allocator_ratio"]))
    if sections.get("grid"):
        parts.append(_grid(sections["grid"]))
    if sections.get("grid") or sections.get("memory"):
        parts.append(_compile_and_memory(results))
    if results["targets"]:
        rows = [[t["target"], f"{t['ratio']:.2f}x", t["met"]] for t in results["targets"]]
        parts.append("## Targets\n\n" + _table(["target", "measured", "met"], rows, "lrl"))
    parts += [f"## Error in {name}\n\n```\n{e}\n```" for name, e in results["errors"].items()]
    times = ", ".join(
        f"{name} {s:.0f} s (1-minute load {results['load_average'][name]:.1f})"
        for name, s in results["section_s"].items()
    )
    parts.append(f"Section times: {times}.")
    return "\n\n".join(part.strip("\n") for part in parts) + "\n"
