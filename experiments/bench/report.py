"""What the benchmark's results mean, and the Markdown that says it.

``check_peak`` flags every GFLOP/s figure above the measured matmul peak, ``targets`` measures
the issue's targets, ``render`` writes the report (sections in the issue's order of reading: the
peak first, since every other table refers to it).
"""

from __future__ import annotations

import statistics
from typing import Any

from experiments.bench.measure import fmt, markdown_table

__all__ = ["check_peak", "targets", "allocator_ratio", "child_errors", "render"]

BUSY_LOAD = 0.5  # a 1-minute load average above this at the start: someone else is working
LARGE = 256  # hidden sizes from which the suite times fewer rounds (one step takes ~1 s)

# The figures from another machine (2-core x86-64 with AVX-512, about 450 GFLOP/s).
REFERENCE = (
    "Issue 6's figures on another machine (2-core x86-64 with AVX-512, ~450 GFLOP/s matmul), "
    "lstm at hidden 128: PyTorch nn.LSTM eager 38 steps/s (glibc malloc) / 63 (tcmalloc); "
    "Flax nn.RNN(OptimizedLSTMCell) jit 33 / 46."
)


# ==================================================================================================
# Checks and targets.
# ==================================================================================================


def _all_rows(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every timed row with a GFLOP/s figure, with where it comes from."""
    sections = results["sections"]
    rows = [("throughput", r) for r in sections.get("throughput") or []]
    for lever, lever_rows in (sections.get("design") or {}).items():
        rows += [(f"design/{lever}", r) for r in lever_rows]
    for child in sections.get("allocator") or []:
        rows += [(f"allocator ({child['setting']})", r) for r in child["rows"]]
    for child in sections.get("memory") or []:
        rows += [(f"memory ({child['contender']})", r) for r in child["rows"]]
    return rows


def check_peak(results: dict[str, Any]) -> list[str]:
    """Flags every GFLOP/s figure above the measured peak: a FLOP count or a timing is wrong."""
    peak = (results.get("peak") or {}).get("gflops")
    flags = []
    if not peak:
        return flags
    for where, row in _all_rows(results):
        row["percent_of_peak"] = 100 * row["gflops"] / peak
        row["above_peak"] = row["gflops"] > peak or row["gflops_p90"] > peak
        if row["above_peak"]:
            flags.append(
                f"{where}: {row['name']} at hidden {row['hidden']} reaches "
                f"{row['gflops']:.1f} GFLOP/s (p90 {row['gflops_p90']:.1f}), above the peak of "
                f"{peak:.1f}: a bug in its FLOP count or its timing"
            )
    return flags


def allocator_ratio(children: list[dict[str, Any]] | None) -> dict[str, float]:
    """Per contender, steps/s tuned over system: the median of each setting's child medians."""
    out: dict[str, float] = {}
    children = children or []
    for name in ("lstm", "torch-lstm"):
        rates = {
            setting: [
                row["steps_per_s"]["median"]
                for child in children
                if child["setting"] == setting
                for row in child["rows"]
                if row["name"] == name
            ]
            for setting in ("tuned", "system")
        }
        if rates["tuned"] and rates["system"]:
            out[name] = statistics.median(rates["tuned"]) / statistics.median(rates["system"])
    return out


def _median(rows: list[dict[str, Any]], name: str, hidden: int) -> float | None:
    for row in rows:
        if row["name"] == name and row["hidden"] == hidden:
            return row["steps_per_s"]["median"]
    return None


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, measured."""
    out = []
    rows = results["sections"].get("throughput") or []
    if rows:
        largest = max(r["hidden"] for r in rows)
        vanilla = _median(rows, "vanilla", largest)
        for name in ("NFG", "NIG"):
            mine = _median(rows, name, largest)
            if vanilla and mine:
                out.append(
                    {
                        "target": f"{name} at least 1.2x faster than vanilla (hidden {largest})",
                        "measured": f"{mine / vanilla:.2f}x",
                        "met": mine / vanilla >= 1.2,
                    }
                )
    grid = (results["sections"].get("grid") or {}).get("contenders", {})
    sweep = grid.get("sweep", {})
    if sweep.get("wall_s") and not sweep.get("returncode"):
        for key, target, factor in (
            ("loop", "the sweep at least 1.5x faster than the gatelab train loop", 1.5),
            ("torch", "the sweep faster than PyTorch serial", 1.0),
        ):
            entry = grid.get(key, {})
            other = None if entry.get("returncode") else entry.get("estimated_s")
            if other:
                ratio = other / sweep["wall_s"]
                out.append({"target": target, "measured": f"{ratio:.2f}x", "met": ratio >= factor})
    return out


# ==================================================================================================
# Markdown.
# ==================================================================================================


def _range(rate: dict[str, float]) -> str:
    return f"{fmt(rate['p10'])}–{fmt(rate['p90'])}"


def _pct(row: dict[str, Any]) -> str:
    value = row.get("percent_of_peak")
    if value is None:
        return ""
    return f"{value:.1f}%" + (" ABOVE PEAK" if row.get("above_peak") else "")


def _timed_table(rows: list[dict[str, Any]], first: str = "contender", ratio: bool = False) -> str:
    headers = [first, "compile s", "steps/s", "p10–p90", "elements/s", "GFLOP/s", "% peak"]
    headers += ["vs first"] if ratio else []
    base = rows[0]["steps_per_s"]["median"]
    body = []
    for row in rows:
        line = [
            row["name"],
            row["compile_s"],
            row["steps_per_s"]["median"],
            _range(row["steps_per_s"]),
            row["elements_per_s"],
            row["gflops"],
            _pct(row),
        ]
        line += [f"{row['steps_per_s']['median'] / base:.2f}x"] if ratio else []
        body.append(line)
    table = markdown_table(headers, body)
    done, planned = rows[0]["steps_per_s"]["n"], rows[0]["rounds_planned"]
    if done < planned:
        table += f"\n\n{done} of {planned} rounds: the rest did not fit the table's time budget."
    return table


def _grid_table(grid: dict[str, Any]) -> str:
    c = grid["contenders"]
    sweep_s = c["sweep"]["wall_s"] if "sweep" in c and not c["sweep"]["returncode"] else None
    labels = {
        "sweep": "gatelab sweep --workers 2",
        "loop": "gatelab train, one process per run",
        "torch": "PyTorch, one run after another",
        "inprocess": "train_and_evaluate per run, one process",
    }
    rows = []
    for key, label in labels.items():
        if key not in c:
            continue
        entry = c[key]
        estimate = entry.get("estimated_s")
        rows.append(
            [
                label,
                entry["runs_measured"],
                entry["wall_s"],
                estimate,
                estimate / grid["runs"] if estimate else None,
                f"{estimate / sweep_s:.2f}x" if estimate and sweep_s else "",
                entry["peak_rss_mib"],
                entry.get("test_accuracy"),
                "failed" if entry.get("returncode") else "ok",
            ]
        )
    headers = ["contender", "runs measured", "wall s measured", f"s for all {grid['runs']}"]
    headers += ["s per run", "sweep's speed-up", "peak RSS MiB", "test acc.", "status"]
    return markdown_table(headers, rows)


def _by_hidden(rows: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(row["hidden"], []).append(row)
    return out


def render(results: dict[str, Any]) -> str:
    """The report: a header on the machine and the method, then each section that ran."""
    parts = [
        _header(results),
        _flags(results),
        _peak(results),
        _throughput(results),
        _design(results),
        _grid(results),
        _compile_and_memory(results),
        _targets(results),
        _errors(results),
        _section_times(results),
    ]
    return "\n".join(part for part in parts if part)


def _section_times(results: dict[str, Any]) -> str:
    load = results["load_average"]
    times = [
        f"{name} {seconds:.0f} s" + (f" (1-minute load {load[name]:.1f})" if name in load else "")
        for name, seconds in results["section_s"].items()
    ]
    return "Section times: " + ", ".join(times) + "\n"


def _header(results: dict[str, Any]) -> str:
    m, plan = results["machine"], results["plan"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    threads = ", ".join(f"{k}={v}" for k, v in m["threads"].items())
    git = m["git"]
    busy = ""
    if m["load_average"][0] > BUSY_LOAD:
        busy = (
            f"\n**The machine was busy** (load average {m['load_average'][0]} at the start): "
            "every figure is lower than the machine's, PyTorch's by far the most.\n"
        )
    return f"""# gatelab benchmark{" (quick form)" if results["quick"] else ""}

`{results["command"]}` — {results["elapsed_s"]:.0f} s, {m["date"]}

- machine: {m["cpu"]} ({", ".join(m["simd"])}), {m["cores"]} cores ({m["cores_usable"]} usable), \
{m["memory_gib"]} GiB; load average {m["load_average"]} at the start, \
{results["load_average_end"]} at the end
- versions: Python {m["python"]}, {versions}; git {git["commit"]} \
({git["changed_files"]} files changed)
- allocator: {m["allocator"]}; threads: {threads}
- problem: batch {plan["batch"]}, {plan["steps"]} steps, {plan["features"]} inputs, float32, \
1 layer, MSE on all outputs, Adam 1e-3; {plan["rounds"]} rounds ({plan["rounds_large"]} at \
hidden >= {LARGE}) of blocks of ~{plan["block_s"]} s
- FLOPs are counted by hand: matmuls only, forward 2·b·t·(d·k + r·k) with k = live blocks × H \
and r = H (H + G·H with full gate recurrence, 0 for the min family), a training step 3× the \
forward (backward ~2× forward); elementwise work is not counted.
- timing: blocked on results, warm-up excluded, compile apart; the contenders of a table in one \
process, round-robin, median and p10–p90 over rounds.
{busy}"""


def _flags(results: dict[str, Any]) -> str:
    if not results["flags"]:
        return ""
    return "## Flags\n\n" + "".join(f"- **{flag}**\n" for flag in results["flags"])


def _peak(results: dict[str, Any]) -> str:
    peak = results.get("peak")
    if not peak:
        return ""
    rows = [
        [when, framework, measured[framework]["best_gflops"], measured[framework]["median_gflops"]]
        for when, measured in peak["measurements"].items()
        for framework in ("jax", "torch")
    ]
    return (
        "## 4. Matmul peak\n\n"
        + markdown_table(["when", "framework", "best GFLOP/s", "median GFLOP/s"], rows)
        + f"\n\nfloat32 {peak['size']}×{peak['size']} matmul, best and median of 5; the peak is "
        f"the best of all: **{peak['gflops']:.1f} GFLOP/s**. Percentages below are of it.\n"
    )


def _throughput(results: dict[str, Any]) -> str:
    rows = results["sections"].get("throughput")
    if not rows:
        return ""
    out = "## 1. Training-step throughput\n\n"
    for hidden, group in _by_hidden(rows).items():
        out += f"### hidden {hidden}\n\n{_timed_table(group)}\n\n"
    threads = results["machine"]["threads"].get("torch_intra_op")
    return out + (
        "`lstm:fused` is GatedRNN(backward='fused'), the hand-written backward pass; the rest of "
        f"gatelab uses autodiff. PyTorch is eager with {threads} threads. {REFERENCE}\n"
    )


DESIGN_TITLES = {
    "projection": "Input projection: inside the scan vs hoisted (a standalone LSTM)",
    "gates": "One matmul for all gates (GatedRNN) vs one per gate (nn.RNN(GatedCell)), lstm",
    "unroll": "GatedRNN(unroll=...), lstm",
    "runs": "A group of 8 runs of lstm, each on its own batch: vmap vs lax.map vs 8 calls",
}


def _design(results: dict[str, Any]) -> str:
    design = results["sections"].get("design")
    allocator = results["sections"].get("allocator")
    if not (design or allocator):
        return ""
    design = design or {}
    out = "## 5. Design rows\n\n"
    for lever, title in DESIGN_TITLES.items():
        if design.get(lever):
            out += f"### {title}\n\n"
            for hidden, rows in _by_hidden(design[lever]).items():
                out += f"hidden {hidden}:\n\n{_timed_table(rows, 'form', ratio=True)}\n\n"
    throughput = results["sections"].get("throughput") or []
    backward = [
        [h, a, b, f"{b / a:.2f}x"]
        for h in sorted({r["hidden"] for r in throughput})
        if (a := _median(throughput, "lstm", h)) and (b := _median(throughput, "lstm:fused", h))
    ]
    if backward:
        out += "### Backward pass: autodiff vs hand-written (lstm, from the throughput rows)\n\n"
        headers = ["hidden", "autodiff steps/s", "fused steps/s", "fused vs autodiff"]
        out += markdown_table(headers, backward) + "\n\n"
    if allocator:
        out += "### Allocator: glibc's default vs tuned (child processes, alternating)\n\n"
        rows = []
        for child in allocator:
            for row in child["rows"]:
                rate = row["steps_per_s"]
                rows.append(
                    [child["setting"], row["name"], row["hidden"], row["compile_s"]]
                    + [rate["median"], _range(rate), row["gflops"], _pct(row)]
                    + [child["peak_rss_mib"]]
                )
            if child.get("error"):
                rows.append([child["setting"], "failed", "", "", "", child["error"], "", "", ""])
        headers = ["allocator", "contender", "hidden", "compile s", "steps/s", "p10–p90"]
        headers += ["GFLOP/s", "% peak", "peak RSS MiB"]
        out += markdown_table(headers, rows) + "\n"
        ratio = results.get("allocator_ratio")
        if ratio:
            out += "\nsteps/s tuned ÷ system (the median of each setting's children): "
            out += ", ".join(f"{k} {v:.2f}x" for k, v in ratio.items()) + "\n"
    return out


def _grid(results: dict[str, Any]) -> str:
    grid = results["sections"].get("grid")
    if not grid:
        return ""
    measured = grid["measured_by_serial_contenders"]
    sample = ""
    if len(measured) < grid["runs"]:
        sample = (
            f"The three serial contenders ran {len(measured)} of the {grid['runs']} runs "
            f"({', '.join(measured)}) and their time for the grid is estimated: a run not "
            "measured counts at its variant's second seed where measured, else at the mean of "
            "the measured first seeds (cold cache) or later seeds (warm). The sample leaves out "
            "FGR, the costliest variant, so the estimate errs towards a faster loop "
            "(`--grid-full` measures every run). "
        )
    out = "## 2. A whole grid\n\n" + _grid_table(grid) + "\n\n"
    out += (
        f"{', '.join(grid['variants'])} × {len(grid['seeds'])} seed(s) on MNIST-1D: hidden "
        f"{grid['hidden']}, {grid['steps']} steps of batch {grid['batch']}, one evaluation and "
        "one checkpoint at the end, W&B off (`experiments/bench/grid_config.py`); the "
        "contenders ran in the order of the table. Wall times include process start-up. Every "
        "gatelab contender starts with an empty JAX compilation cache of its own (on, as for a "
        "researcher: a variant's later seeds reuse its first seed's program). "
        f"{sample}PyTorch has no Greff variants: all its runs are nn.LSTM with PyTorch's "
        "initialisation (hence its different accuracy).\n"
    )
    for key, entry in grid["contenders"].items():
        if entry.get("error"):
            out += f"\n{key} failed:\n\n```\n{entry['error']}\n```\n"
    return out


def _compile_and_memory(results: dict[str, Any]) -> str:
    sections = results["sections"]
    grid, memory, allocator = (
        sections.get("grid"),
        sections.get("memory"),
        sections.get("allocator"),
    )
    if not (grid or memory or allocator or sections.get("design")):
        return ""
    out = "## 3. Compile time and memory\n\n"
    contenders = (grid or {}).get("contenders", {})
    groups = contenders.get("sweep", {}).get("groups", {})
    if groups:
        out += "### Compile time per sweep group (time/compile_s of the runs' summary.json)\n\n"
        rows = [
            [name, g.get("variant"), g["runs"], g.get("compile_s"), g.get("train_s")]
            + [g.get("steps_per_s")]
            for name, g in groups.items()
        ]
        headers = ["group", "variant", "runs", "compile s", "train s", "group steps/s"]
        out += markdown_table(headers, rows) + "\n\n"
    for key, label in (("loop", "gatelab train loop"), ("inprocess", "in one process")):
        per_run = contenders.get(key, {}).get("per_run", [])
        if per_run:
            loop = key == "loop"
            out += f"### Compile time per run, {label}\n\n"
            rows = [
                [r["run"], r.get("compile_s"), r.get("train_s"), r["wall_s"]]
                + ([r["peak_rss_mib"]] if loop else [])
                for r in per_run
            ]
            headers = ["run", "compile s", "train s", "wall s"] + (["peak RSS MiB"] if loop else [])
            out += markdown_table(headers, rows) + "\n\n"

    rows = [["this process (the suite; throughput and design run here)", None]]
    rows[0] += [results["self_peak_rss_mib"], None]
    base = next((c["peak_rss_mib"] for c in memory or [] if c["contender"] == "none"), None)
    hidden = results["plan"]["memory_hidden"]
    for child in memory or []:
        name = child["contender"]
        rate = child["rows"][0]["steps_per_s"]["median"] if child["rows"] else None
        label = f"child: {name} at hidden {hidden}" + (" (imports only)" if name == "none" else "")
        above = child["peak_rss_mib"] - base if base is not None else None
        rows.append([label, rate, child["peak_rss_mib"], above])
    for child in allocator or []:
        label = f"child: allocator {child['setting']} (lstm, torch-lstm)"
        rows.append([label, None, child["peak_rss_mib"], None])
    for key, label in (
        ("sweep", "gatelab sweep (its workers included)"),
        ("torch", "PyTorch serial"),
        ("inprocess", "gatelab in one process"),
    ):
        if key in contenders:
            rows.append([f"grid: {label}", None, contenders[key]["peak_rss_mib"], None])
    if "loop" in contenders:
        loop = contenders["loop"]
        for stat in ("median", "peak"):
            label = f"grid: gatelab train processes, {stat} of {loop['processes']}"
            rows.append([label, None, loop[f"{stat}_rss_mib"], None])
    out += "### Peak RSS per process (ru_maxrss, each process on its own)\n\n"
    out += markdown_table(["process", "steps/s", "peak RSS MiB", "above imports-only"], rows)
    out += (
        "\nEvery child loads JAX, Flax and PyTorch (the contenders' module imports them), so its "
        "own cost is the column above the imports-only child.\n"
    )
    return out + "\n"


def _targets(results: dict[str, Any]) -> str:
    if not results["targets"]:
        return ""
    rows = [[t["target"], t["measured"], t["met"]] for t in results["targets"]]
    return "## Targets\n\n" + markdown_table(["target", "measured", "met"], rows) + "\n"


def _errors(results: dict[str, Any]) -> str:
    if not results["errors"]:
        return ""
    return "## Errors\n\n" + "".join(
        f"{section}:\n\n```\n{error}\n```\n\n" for section, error in results["errors"].items()
    )


def child_errors(results: dict[str, Any]) -> list[tuple[str, str]]:
    """Child processes that failed, with the end of what they said."""
    out = []
    sections = results["sections"]
    for child in sections.get("allocator") or []:
        if child.get("returncode") or child.get("error"):
            out.append((f"allocator child ({child['setting']})", child.get("error", "")))
    for child in sections.get("memory") or []:
        if child.get("returncode") or child.get("error"):
            out.append((f"memory child ({child['contender']})", child.get("error", "")))
    for key, entry in ((sections.get("grid") or {}).get("contenders") or {}).items():
        if entry.get("returncode"):
            error = entry.get("error") or next(
                (r.get("error", "") for r in entry.get("per_run", []) if r.get("error")), ""
            )
            out.append((f"grid contender {key}", error))
    return out
