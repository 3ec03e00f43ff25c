"""``gatelab report``: numbers against a hand computation, counts, views, tables, figures, W&B.

Records are synthesised on disk through the record's schema (``gatelab.records.Summary``, with the
words the task gives its metrics): known metric values, so every number of the report can be
checked by hand.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import scipy.stats

from gatelab import records, report, tasks
from gatelab.report import load, stats
from gatelab.report.metric import Metric, format_p

ROOT = Path(__file__).parents[1]

# Every test shares the module's reports: one worker builds them once.
pytestmark = pytest.mark.xdist_group("report")

# Test accuracy of the completed runs, seeds 0..4 (fractions, as the runner records them).
ACCURACY = {
    "vanilla": [0.880, 0.885, 0.890, 0.875, 0.892],
    "NFG": [0.700, 0.720, 0.710, 0.730, 0.690],
    "CIFG": [0.881, 0.889, 0.878, 0.887, 0.883],
}
PARAMS = {"vanilla": 4522, "NFG": 3658, "CIFG": 3658, "NOG": 3658}
GATES = {
    "vanilla": ("input", "forget", "output"),
    "NFG": ("input", "output"),
    "CIFG": ("input", "forget", "output"),
    "NOG": ("input", "forget"),
}
STEPS = 400


def loss_of(accuracy: float) -> float:
    """A test loss that is a known function of the accuracy (lower is better)."""
    return round(2.0 - 2.0 * accuracy, 6)


def write_run(
    root: Path,
    name: str,
    variant: str,
    seed: int,
    status: str = "completed",
    test: float | None = None,
    valid: float | None = None,
    lr: float = 3e-3,
    hidden: int = 32,
    params: int | None = None,
    machine: str | None = None,
) -> None:
    """One run's workdir: config.json, metrics.jsonl and summary.json as the runner writes them."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    params = params if params is not None else PARAMS[variant]
    config = {
        "model": {"variant": variant, "spec": {}, "hidden": hidden, "layers": 1},
        "task": {"name": "mnist1d", "args": {}},
        "optim": {"name": "adam", "lr": lr},
        "run": {"steps": STEPS, "batch_size": 100, "seeds": [seed]},
        "wandb": {"mode": "disabled"},
    }
    (run_dir / "config.json").write_text(
        json.dumps(
            {
                "config": config,
                "resolved": {
                    "spec": f"LSTMSpec({variant})",
                    "hidden": hidden,
                    "params": params,
                    **({"machine": machine} if machine else {}),
                },
                "code_version": "gatelab 0.1.0 (abc1234)",
                "wandb_id": f"id{seed}{variant}",
            }
        )
    )
    if status == "failed":
        failure = records.Summary.failed(
            "RuntimeError: boom\nsecond line", "…", variant=variant, seed=seed, task="mnist1d"
        )
        (run_dir / "summary.json").write_text(json.dumps(failure.to_json()))
        return
    valid = test if valid is None else valid
    gates = {}
    for gate in GATES[variant]:
        level = {"input": 0.45, "forget": 0.8, "output": 0.55}[gate] + 0.01 * seed
        gates.update(
            {
                f"gates/layer0/{gate}/mean": level,
                f"gates/layer0/{gate}/low": 0.05,
                f"gates/layer0/{gate}/high": 0.1 + 0.02 * seed,
            }
        )
    with open(run_dir / "metrics.jsonl", "w") as f:
        for step in range(50, STEPS + 1, 50):
            row = {
                "step": step,
                "train/loss": None if status == "diverged" and step > 300 else 2.0 - step / 400,
                "train/grad_norm": 1.0,
                "time/steps_per_s": 80.0,
            }
            if step % 200 == 0:
                row.update({"eval/accuracy": valid * step / STEPS, "eval/loss": 1.0, **gates})
            f.write(json.dumps(row) + "\n")
    summary = summary_of(
        status=status,
        variant=variant,
        spec=f"LSTMSpec({variant})",
        seed=seed,
        hidden=hidden,
        params={"total": params, "head": 330},
        hparams={"lr": lr},
        step=STEPS,
        steps=STEPS,
        best_step=STEPS,
        diverged_step=350 if status == "diverged" else None,
        metrics={
            "eval/accuracy": valid,
            "eval/loss": 1.0,
            "test/accuracy": test,
            "test/loss": loss_of(test),
            "final/test/accuracy": test,
        },
        gates={key.removeprefix("gates/"): value for key, value in gates.items()},
    )
    (run_dir / "summary.json").write_text(json.dumps(summary.to_json()))


def summary_of(task: str = "mnist1d", **fields) -> records.Summary:
    """A summary as the runner writes it for ``task``: with its primary metric, direction,
    chance and the words it gives its metrics."""
    info = tasks.TASKS[task].metric_info
    return records.Summary(
        task=task,
        primary_metric=tasks.TASKS[task].primary_metric,
        direction=tasks.TASKS[task].direction,
        chance=0.1,
        labels={name: m.label for name, m in info.items()},
        units={name: m.unit for name, m in info.items()},
        directions={name: m.direction for name, m in info.items()},
        **fields,
    )


def write_sweep(root: Path, entries: list[dict], kind: str = "grid", stage: str = "all") -> Path:
    """``sweep.json`` with ``entries`` (name, variant, seed, status, overrides)."""
    root.mkdir(parents=True, exist_ok=True)
    sweep = {
        "config": "configs/mnist1d.py",
        "arg": "quick",
        "stage": stage,
        "kind": kind,
        "overrides": ["run.steps=400"],
        "runs": [
            {
                "name": e["name"],
                "overrides": {"model.variant": e["variant"], "optim.lr": e.get("lr", 3e-3)},
                "seed": e["seed"],
                "group": f"g-{e['variant']}",
                "status": e["status"],
            }
            for e in entries
        ],
        "code_version": "gatelab 0.1.0 (abc1234)",
    }
    (root / "sweep.json").write_text(json.dumps(sweep))
    return root


def grid_sweep(root: Path, variants=("vanilla", "NFG", "CIFG")) -> Path:
    """Variants x 5 seeds, plus NFG seed 5 diverged (its test value must not count), CIFG seed 5
    failed, and vanilla seed 5 pending (in sweep.json, no directory)."""
    entries = []
    for variant in variants:
        for seed, value in enumerate(ACCURACY[variant]):
            name = f"{variant}__lr=0.003__s{seed}"
            write_run(root, name, variant, seed, test=value)
            entries.append({"name": name, "variant": variant, "seed": seed, "status": "completed"})
    extra = [("NFG", "diverged"), ("CIFG", "failed"), ("vanilla", "pending")]
    for variant, status in extra:
        if variant not in variants:
            continue
        name = f"{variant}__lr=0.003__s5"
        if status != "pending":
            write_run(root, name, variant, 5, status=status, test=0.5)
        entries.append({"name": name, "variant": variant, "seed": 5, "status": status})
    return write_sweep(root, entries)


def random_sweep(root: Path) -> tuple[Path, dict[str, list[tuple[float, float]]]]:
    """20 random-search trials of vanilla and NOG: (validation, test) accuracies per variant."""
    rng = np.random.default_rng(7)
    entries, values = [], {"vanilla": [], "NOG": []}
    for trial in range(20):
        for variant, offset in (("vanilla", 0.0), ("NOG", -0.05)):
            valid = round(float(rng.uniform(0.3, 0.9)) + offset, 4)
            test = round(valid - float(rng.uniform(0.0, 0.03)), 4)
            hidden = int(rng.integers(20, 200))
            name = f"{variant}__t{trial}"
            lr = float(10 ** rng.uniform(-4, -2))
            params = hidden * hidden * 4  # a random search over sizes: params vary
            write_run(
                root,
                name,
                variant,
                trial,
                test=test,
                valid=valid,
                lr=lr,
                hidden=hidden,
                params=params,
            )
            entries.append(
                {"name": name, "variant": variant, "seed": trial, "status": "completed", "lr": lr}
            )
            values[variant].append((valid, test))
    return write_sweep(root, entries, kind="random"), values


def holm_by_hand(pvalues: list[float]) -> list[float]:
    """Sorted p-values times (m - rank), cumulative maximum, clipped at 1; in the input order."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, (m - rank) * pvalues[i])
        adjusted[i] = min(running, 1.0)
    return adjusted


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    root = grid_sweep(tmp_path_factory.mktemp("grid") / "sweep")
    report.build_report(root)
    return root


@pytest.fixture(scope="module")
def grid_text(grid) -> str:
    return (grid / "report" / "report.md").read_text()


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------


def test_load_runs_one_row_per_run_in_sweep_order(grid):
    runs = report.load_runs(grid)
    assert len(runs) == 18
    assert list(runs["name"][:2]) == ["vanilla__lr=0.003__s0", "vanilla__lr=0.003__s1"]
    counts = runs["status"].value_counts().to_dict()
    assert counts == {"completed": 15, "diverged": 1, "failed": 1, "pending": 1}
    failed = runs[runs["status"] == "failed"].iloc[0]
    assert failed["variant"] == "CIFG" and failed["seed"] == 5
    assert failed["error"].startswith("RuntimeError: boom")
    pending = runs[runs["status"] == "pending"].iloc[0]
    assert pending["variant"] == "vanilla" and math.isnan(pending["test/accuracy"])
    assert runs["override/optim.lr"].iloc[0] == 3e-3
    assert runs["config/model.hidden"].iloc[0] == 32
    assert runs["test/accuracy"].dtype == float


def test_load_curves_long_table(grid):
    curves = report.load_curves(grid)
    assert set(curves.columns) == {"run", "variant", "seed", "status", "step", "key", "value"}
    one = curves[(curves["run"] == "NFG__lr=0.003__s1") & (curves["key"] == "eval/accuracy")]
    assert list(one["step"]) == [200, 400]
    np.testing.assert_allclose(one["value"], [0.72 / 2, 0.72])
    diverged = curves[(curves["run"] == "NFG__lr=0.003__s5") & (curves["key"] == "train/loss")]
    assert diverged["value"].isna().sum() == 2  # null (non-finite) after step 300 reads as NaN
    assert not curves["key"].str.startswith("gates/").any()


def test_a_train_workdir_is_a_sweep_of_one_group(tmp_path):
    entries = []
    for seed in (0, 1, 10):
        write_run(tmp_path, f"seed_{seed}", "vanilla", seed, test=ACCURACY["vanilla"][seed % 5])
        entries.append({"name": f"seed_{seed}", "variant": "vanilla", "seed": seed})
    (tmp_path / "groups" / "vanilla-0123456789" / "checkpoints").mkdir(parents=True)  # not a run
    index = {
        "kind": "train",
        "runs": [{**e, "overrides": {}, "status": "completed"} for e in entries],
    }
    records.write_index(tmp_path, index)
    runs = report.load_runs(tmp_path)
    assert list(runs["name"]) == ["seed_0", "seed_1", "seed_10"]
    assert list(runs["seed"]) == [0, 1, 10]
    assert records.find(tmp_path).index["kind"] == "train"
    text = report.build_report(tmp_path, figures=False).read_text()
    assert "- Runs: 3 (3 completed)" in text and "- Sweep:" not in text


def test_the_report_names_the_machine_and_flags_a_study_run_on_several(tmp_path):
    """XLA compiles for the host's vector instructions, so runs from two kinds of CPU differ by
    more than their seeds: the report says which machines its runs come from."""
    old, new = "AMD EPYC (x86_64, avx2); jaxlib 0.10.2", "AMD EPYC (x86_64, avx512); jaxlib 0.10.2"
    for machines in ([old] * 4, [old, old, new, new]):
        root = tmp_path / str(len(set(machines)))
        entries = []
        for seed, machine in enumerate(machines):
            variant = ("vanilla", "NFG")[seed % 2]
            name = f"{variant}__s{seed}"
            write_run(root, name, variant, seed, test=0.9, machine=machine)
            entries.append({"name": name, "variant": variant, "seed": seed, "status": "completed"})
        text = report.build_report(write_sweep(root, entries), figures=False).read_text()
        several = "**Runs from several machines** (" + old + "; " + new + ")"
        assert (several in text) == (len(set(machines)) == 2), text
        assert (f"- Machine: {old}\n" in text) == (len(set(machines)) == 1), text


def test_no_records_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no records"):
        report.load_runs(tmp_path)


# ----------------------------------------------------------------------------------------------
# Statistics against a hand computation
# ----------------------------------------------------------------------------------------------


def test_holm_against_hand_computation():
    pvalues = [0.01, 0.04, 0.03, 0.5, 0.002]
    np.testing.assert_allclose(stats.holm(pvalues), holm_by_hand(pvalues))
    # By hand: sorted 0.002, 0.01, 0.03, 0.04, 0.5 times 5, 4, 3, 2, 1 = 0.01, 0.04, 0.09,
    # 0.08 -> 0.09 (cumulative maximum), 0.5.
    np.testing.assert_allclose(stats.holm(pvalues), [0.04, 0.09, 0.09, 0.5, 0.01])
    # Clipped at 1; a test not made (NaN) stays NaN and does not count in m.
    np.testing.assert_allclose(stats.holm([0.6, float("nan"), 0.7]), [1.0, float("nan"), 1.0])


def test_table_numbers_equal_hand_computation(grid):
    table = pd.read_csv(grid / "report" / "table.csv").set_index("variant")
    assert list(table.index) == ["vanilla", "NFG", "CIFG"]  # baseline first, then sweep order
    base = np.array(ACCURACY["vanilla"])
    raw = {}
    for variant, values in ACCURACY.items():
        v = np.array(values)  # the diverged NFG run (0.5) and failed CIFG run are left out
        row = table.loc[variant]
        assert row["n"] == 5
        assert row["mean"] == pytest.approx(v.mean(), rel=1e-9)
        assert row["std"] == pytest.approx(v.std(ddof=1), rel=1e-9)
        assert row["median"] == pytest.approx(np.median(v), rel=1e-9)
        assert row["best"] == pytest.approx(v.max(), rel=1e-9)
        assert row["diff"] == pytest.approx(v.mean() - base.mean(), abs=1e-12)
        if variant != "vanilla":
            raw[variant] = scipy.stats.ttest_ind(v, base, equal_var=False).pvalue
            assert row["p"] == pytest.approx(raw[variant], rel=1e-9)
    assert math.isnan(table.loc["vanilla", "p"])  # the baseline is not tested against itself
    adjusted = dict(zip(raw, holm_by_hand(list(raw.values())), strict=True))
    for variant, p in adjusted.items():
        assert table.loc[variant, "p_holm"] == pytest.approx(p, rel=1e-9)
    assert bool(table.loc["NFG", "significant"]) and table.loc["NFG", "verdict"] == "worse"
    assert not bool(table.loc["CIFG", "significant"])
    counts = table[["runs", "completed", "diverged", "failed", "pending"]]
    assert counts.loc["NFG"].tolist() == [6, 5, 1, 0, 0]
    assert counts.loc["CIFG"].tolist() == [6, 5, 0, 1, 0]
    assert counts.loc["vanilla"].tolist() == [6, 5, 0, 0, 1]
    assert table.loc["NFG", "params"] == PARAMS["NFG"]


def test_variant_with_one_run_gets_no_test(tmp_path):
    root = tmp_path / "sweep"
    entries = []
    for variant, values in (("vanilla", ACCURACY["vanilla"]), ("NFG", [0.7])):
        for seed, value in enumerate(values):
            write_run(root, f"{variant}{seed}", variant, seed, test=value)
            entry = {"name": f"{variant}{seed}", "variant": variant, "seed": seed}
            entries.append({**entry, "status": "completed"})
    write_sweep(root, entries)
    runs = report.load_runs(root)
    table = stats.compare(runs, report.resolve_metric(runs), "vanilla")
    assert math.isnan(table.loc["NFG", "p"]) and math.isnan(table.loc["NFG", "std"])
    assert not table["significant"].any()
    headers, rows, _ = report.tables.comparison_rows(table, report.resolve_metric(runs), "vanilla")
    assert rows[1][headers.index("p (Welch)")] == "n/a"
    # The whole report still comes, saying why NFG has no interval.
    text = report.build_report(root, figures=False).read_text()
    interval_row = next(line for line in text.splitlines() if line.startswith("| NFG | 1 | "))
    assert interval_row.endswith("| one run: no interval |")


def test_report_has_intervals_improvement_and_the_budget(grid, grid_text, tmp_path):
    table = pd.read_csv(grid / "report" / "table.csv").set_index("variant")
    nfg = np.array(ACCURACY["NFG"])
    # NFG's every run is below every vanilla run: P(NFG > vanilla) is 0, its interval [0, 0].
    assert table.loc["NFG", ["poi", "poi_lo", "poi_hi"]].tolist() == [0.0, 0.0, 0.0]
    assert table.loc["NFG", "iqm"] == pytest.approx(scipy.stats.trim_mean(nfg, 0.25))
    assert table.loc["NFG", "mean_lo"] < nfg.mean() < table.loc["NFG", "mean_hi"]
    assert bool(table.loc["NFG", "still_improving"])  # the grid's curves rise to the end
    assert "## Interval estimates" in grid_text and "P(X > vanilla) [95% CI]" in grid_text
    assert "| NFG | 5 | 71.0% [" in grid_text
    assert "## Convergence and budget" in grid_text
    assert "**Still improving at 400 steps**: vanilla, NFG, CIFG (3 of 3 variants)" in grid_text
    assert "These verdicts hold only at this budget: NFG against vanilla." in grid_text
    for name in ("intervals", "profile"):
        assert (grid / "report" / "figures" / f"{name}.pdf").exists()
    # Made again, the same bytes (the bootstrap is seeded).
    report.build_report(grid, figures=False, out=tmp_path)
    assert (tmp_path / "table.csv").read_bytes() == (grid / "report" / "table.csv").read_bytes()


# ----------------------------------------------------------------------------------------------
# report.md
# ----------------------------------------------------------------------------------------------


def test_report_md_counts_and_sentences(grid_text):
    text = grid_text
    assert "# gatelab report: mnist1d" in text
    assert "- Runs: 18 (15 completed, 1 diverged, 1 failed, 1 pending)" in text
    assert "1 diverged, 1 failed, 1 pending: counted in the tables, left out of every mean" in text
    assert "configs/mnist1d.py" in text and "gatelab 0.1.0 (abc1234)" in text
    assert "Metric: test accuracy (`test/accuracy`, higher is better); chance level 10.0%" in text
    assert "- Baseline: vanilla" in text
    # The sentence, built by hand: means and sample stds in percent, the Holm-adjusted p.
    nfg, van = np.array(ACCURACY["NFG"]) * 100, np.array(ACCURACY["vanilla"]) * 100
    p = {
        v: scipy.stats.ttest_ind(ACCURACY[v], ACCURACY["vanilla"], equal_var=False).pvalue
        for v in ("NFG", "CIFG")
    }
    p_holm = dict(zip(p, holm_by_hand(list(p.values())), strict=True))
    sentence = (
        f"NFG is significantly worse than vanilla on mnist1d: {nfg.mean():.1f} ± "
        f"{nfg.std(ddof=1):.1f}% vs {van.mean():.1f} ± {van.std(ddof=1):.1f}%, "
        f"p = {format_p(p_holm['NFG'])} (Holm-adjusted); NFG was still improving at 400 steps: "
        "the difference may reflect speed of learning, not capacity."
    )
    assert sentence in text  # the grid's curves rise to the last step: every variant improving
    assert f"CIFG (p = {format_p(p_holm['CIFG'])})" in text
    assert "CIFG is significantly" not in text
    # The runs left out, with their reasons.
    assert "| `NFG__lr=0.003__s5` | NFG | 5 | diverged | loss non-finite at step 350 |" in text
    assert "| `CIFG__lr=0.003__s5` | CIFG | 5 | failed | RuntimeError: boom |" in text
    assert "| `vanilla__lr=0.003__s5` | vanilla | 5 | pending | never started |" in text
    for figure in ("box", "curves", "gates", "params"):
        assert f"](figures/{figure}.png)" in text
    assert "95% t-interval" in text
    assert "chorales" not in text


def test_report_md_table_rows(grid_text):
    # § marks a variant still improving at the end of its budget (the grid's curves rise).
    row = next(line for line in grid_text.splitlines() if line.startswith("| NFG § |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "3,658"
    assert cells[2] == "6 (5 / 1 / 0)"
    assert cells[3] == "5"
    assert cells[4] == "71.0 ± 1.6%"
    assert cells[5] == "71.0%" and cells[6] == "73.0%"
    assert cells[-1] == "worse ↓"


def test_report_md_gate_table(grid_text):
    row = next(line for line in grid_text.splitlines() if line.startswith("| NFG | "))
    assert row  # the comparison row; the gate table's NFG row has no forget gate:
    gate_rows = [
        line for line in grid_text.split("## Gate statistics")[1].splitlines() if "| NFG |" in line
    ]
    assert gate_rows[0].count("—") == 1  # NFG has no forget gate
    assert "0.47 (5% / 14%)" in gate_rows[0]  # input mean over seeds 0..4: 0.45 + 0.02


# ----------------------------------------------------------------------------------------------
# table.csv and table.tex
# ----------------------------------------------------------------------------------------------


def test_table_csv_one_row_per_variant(grid):
    table = pd.read_csv(grid / "report" / "table.csv")
    assert list(table["variant"]) == ["vanilla", "NFG", "CIFG"]
    assert set(table["metric"]) == {"test/accuracy"} and set(table["direction"]) == {"max"}
    for column in ("mean", "std", "median", "best", "p", "p_holm", "significant", "params"):
        assert column in table


def test_table_tex_booktabs_bold_and_dagger(grid):
    tex = (grid / "report" / "table.tex").read_text()
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert tex.count(rule) == 1
    assert tex.index(r"\toprule") < tex.index(r"\midrule") < tex.index(r"\bottomrule")
    # vanilla has the best mean accuracy (88.4%) and is bold; NFG is significant (dagger).
    vanilla = next(line for line in tex.splitlines() if line.startswith("vanilla"))
    assert r"\textbf{88.4 $\pm$ 0.7}" in vanilla
    nfg = next(line for line in tex.splitlines() if line.startswith("NFG"))
    assert r"$^{\dagger}$" in nfg and r"\textbf" not in nfg and "5 (1d/0f)" in nfg
    assert r"significantly different from vanilla" in tex
    assert tex.count(r"\textbf{") == 1
    assert "Test accuracy (\\%)" in tex


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------


def test_figures_exist_open_and_are_deterministic(grid, tmp_path):
    figures = grid / "report" / "figures"
    names = ("box", "curves", "gates", "params", "intervals", "profile")
    for name in names:
        image = matplotlib.image.imread(figures / f"{name}.png")
        assert image.ndim == 3 and image.shape[1] > 900  # 3.4 in at 300 dpi
        assert (figures / f"{name}.pdf").read_bytes().startswith(b"%PDF")
    again = tmp_path / "again"
    report.build_report(grid, out=again)
    for name in names:
        for suffix in (".png", ".pdf"):
            first = (figures / name).with_suffix(suffix).read_bytes()
            second = (again / "figures" / name).with_suffix(suffix).read_bytes()
            assert first == second, f"{name}{suffix} differs between two builds"
    assert (grid / "report" / "report.md").read_text().replace(str(grid / "report"), "") == (
        again / "report.md"
    ).read_text().replace(str(again), "")


def test_figure_widths_fit_a_column(grid):
    from PIL import Image

    for name in ("box", "curves", "gates", "params", "intervals", "profile"):
        with Image.open(grid / "report" / "figures" / f"{name}.png") as image:
            width, _ = image.size
            dpi = image.info.get("dpi", (300, 300))[0]
        assert 3.2 <= width / dpi <= 3.6, name  # a single column, whatever the labels


# ----------------------------------------------------------------------------------------------
# Baseline, metric and views
# ----------------------------------------------------------------------------------------------


def test_baseline_defaults_to_vanilla_else_first_variant(grid, tmp_path):
    runs = report.load_runs(grid)
    assert report.resolve_baseline(runs) == "vanilla"
    assert report.resolve_baseline(runs, "CIFG") == "CIFG"
    with pytest.raises(ValueError, match="not among the variants"):
        report.resolve_baseline(runs, "GRU")
    root = grid_sweep(tmp_path / "no_vanilla", variants=("NFG", "CIFG"))
    path = report.build_report(root, figures=False)
    assert "- Baseline: NFG" in path.read_text()
    table = pd.read_csv(root / "report" / "table.csv")
    assert list(table["variant"]) == ["NFG", "CIFG"]
    assert table.set_index("variant").loc["CIFG", "verdict"] == "better"


def test_metric_override(grid, tmp_path):
    path = report.build_report(
        grid, metric="test/loss", baseline="CIFG", out=tmp_path, figures=False
    )
    text = path.read_text()
    assert "Metric: test cross-entropy (`test/loss`, lower is better)" in text
    assert "- Baseline: CIFG" in text
    table = pd.read_csv(tmp_path / "table.csv").set_index("variant")
    assert list(table.index) == ["CIFG", "vanilla", "NFG"]
    losses = [loss_of(a) for a in ACCURACY["NFG"]]
    assert table.loc["NFG", "mean"] == pytest.approx(np.mean(losses))
    assert table.loc["NFG", "best"] == pytest.approx(min(losses))  # lower is better
    assert table.loc["NFG", "verdict"] == "worse"
    assert set(table["direction"]) == {"min"}
    runs = report.load_runs(grid)
    assert report.resolve_metric(runs, "loss").key == "test/loss"  # a bare name means test/<m>
    with pytest.raises(ValueError, match="no run has the metric 'test/bleu'"):
        report.resolve_metric(runs, "test/bleu")


@pytest.fixture(scope="module")
def random(tmp_path_factory) -> tuple[Path, dict[str, list[tuple[float, float]]]]:
    return random_sweep(tmp_path_factory.mktemp("random") / "sweep")


def test_random_search_best_ten_percent(random):
    root, values = random
    text = report.build_report(root, figures=False).read_text()  # figure: test_figure_scripts
    assert "## All runs" in text and "## Best 10% by validation" in text
    best = pd.read_csv(root / "report" / "table_best10.csv").set_index("variant")
    everything = pd.read_csv(root / "report" / "table.csv").set_index("variant")
    for variant, pairs in values.items():
        assert everything.loc[variant, "n"] == 20
        chosen = sorted(pairs, key=lambda pair: -pair[0])[:2]  # ceil(10% of 20), by validation
        tests = np.array([test for _, test in chosen])
        assert best.loc[variant, "n"] == 2
        assert best.loc[variant, "mean"] == pytest.approx(tests.mean())
        assert best.loc[variant, "std"] == pytest.approx(tests.std(ddof=1))
    p = scipy.stats.ttest_ind(
        [t for _, t in sorted(values["NOG"], key=lambda x: -x[0])[:2]],
        [t for _, t in sorted(values["vanilla"], key=lambda x: -x[0])[:2]],
        equal_var=False,
    ).pvalue
    assert best.loc["NOG", "p"] == pytest.approx(p)
    assert best.loc["NOG", "p_holm"] == pytest.approx(p)  # one test: Holm changes nothing
    assert (root / "report" / "table_best10.tex").exists()


def test_grid_has_no_best_ten_percent_view(grid, grid_text):
    assert "Best 10%" not in grid_text
    assert not (grid / "report" / "table_best10.csv").exists()


def test_two_stage_sweep_reports_the_test_stage(tmp_path):
    root = tmp_path / "two"
    entries = []
    for variant in ("vanilla", "NFG"):
        for lr, shift in ((1e-3, -0.05), (3e-3, 0.0)):
            for seed in range(2):
                name = f"{variant}__lr={lr}__s{seed}"
                value = ACCURACY[variant][seed] + shift
                write_run(root / "tune", name, variant, seed, test=value, lr=lr)
                entries.append(
                    {
                        "name": name,
                        "variant": variant,
                        "seed": seed,
                        "status": "completed",
                        "lr": lr,
                    }
                )
    write_sweep(root / "tune", entries, stage="tune")
    grid_sweep(root / "test", variants=("vanilla", "NFG"))
    text = report.build_report(root, figures=False).read_text()
    assert (root / "report" / "report.md").exists()
    assert "(the test stage of a two-stage sweep; learning rates tuned in" in text
    assert "## Learning-rate tuning" in text
    row = next(line for line in text.splitlines() if line.startswith("| NFG | 0.001, 0.003 |"))
    assert "| 0.003 (" in row and "n = 2" in row
    # With figures: the validation metric against the learning rate, the chosen one ringed.
    text = report.build_report(root).read_text()
    assert "![The validation metric against the learning rate](figures/tuning.png)" in text
    assert (root / "report" / "figures" / "tuning.pdf").exists()
    chosen = {t.variant: t for t in records.best_learning_rates(root / "tune")}
    assert chosen["NFG"].values[0.003] == (0.7, 0.72)  # the seeds' validation values


def test_chorales_note(tmp_path):
    root = grid_sweep(tmp_path / "sweep", variants=("vanilla", "NFG"))
    runs = report.load_runs(root)
    # What the chorales task writes into its records; the report knows no task.
    chorales = tasks.TASKS["chorales"]
    runs["task"] = "chorales"
    runs["primary_metric"] = "nll"
    runs["direction"] = "min"
    runs["task_note"] = chorales.note
    runs["labels/nll"] = chorales.metric_info["nll"].label
    runs["units/nll"] = chorales.metric_info["nll"].unit
    runs["test/nll"] = 2.0 + runs["test/accuracy"]
    path = report.build_report(root, runs=runs, out=tmp_path / "out", figures=False)
    text = path.read_text()
    assert "JSB-like set built from music21's corpus" in text
    assert "test NLL (`test/nll`, lower is better)" in text
    assert "No learning curves" in text  # runs given without curves
    assert r"Test NLL (nats/frame)" in (tmp_path / "out" / "table.tex").read_text()


def test_no_completed_runs(tmp_path):
    root = tmp_path / "sweep"
    write_run(root, "a", "vanilla", 0, status="failed")
    entries = [
        {"name": "a", "variant": "vanilla", "seed": 0, "status": "failed"},
        {"name": "b", "variant": "NFG", "seed": 1, "status": "pending"},
    ]
    write_sweep(root, entries)
    with pytest.raises(ValueError, match="primary_metric"):
        report.build_report(root)
    text = report.build_report(root, metric="test/accuracy", figures=False).read_text()
    assert "- Runs: 2 (1 failed, 1 pending)" in text
    assert "No tests: vanilla has fewer than 2 completed runs." in text


# ----------------------------------------------------------------------------------------------
# W&B
# ----------------------------------------------------------------------------------------------


class StandInRun:
    """Shaped like ``wandb.apis.public.Run``: what :func:`load.runs_from_wandb` reads."""

    def __init__(self, name, group, state, config, summary, history):
        self.name, self.group, self.state = name, group, state
        self.id = re.sub(r"\W", "", name)[-8:]
        self.config, self.summary, self._history = config, summary, history

    def scan_history(self):
        return iter(self._history)


def test_runs_from_wandb_stand_in(tmp_path):
    wandb_runs = []
    for variant in ("vanilla", "NFG"):
        for seed, value in enumerate(ACCURACY[variant][:3]):
            config = {
                "model.variant": variant,  # the mirror logs the config flattened with dots
                "optim.lr": 3e-3,
                "run.seeds": [seed],
                "seed": seed,
                "resolved": {"value": {"params": PARAMS[variant]}},  # the raw API's wrapper
            }
            summary = summary_of(
                status="completed",
                variant=variant,
                seed=seed,
                params={"total": PARAMS[variant]},
                metrics={"test/accuracy": value, "eval/accuracy": value},
            ).to_json()
            summary.update({"_step": 400, "_wandb": {"runtime": 3}})  # W&B's own keys
            history = [
                {"_step": s, "step": s, "train/loss": 1.0, "eval/accuracy": value * s / 400}
                for s in (200, 400)
            ]
            wandb_runs.append(
                StandInRun(
                    f"g1/{variant}__s{seed}", "odyssey", "finished", config, summary, history
                )
            )
    crashed = StandInRun("g1/NFG__s9", "odyssey", "crashed", {"model.variant": "NFG"}, {}, [])
    runs, curves = load.runs_from_wandb([*wandb_runs, crashed])
    assert list(runs["name"][:2]) == ["vanilla__s0", "vanilla__s1"]
    assert runs["status"].tolist() == ["completed"] * 6 + ["failed"]
    assert runs.iloc[-1]["variant"] == "NFG"  # from the config when the summary has nothing
    assert list(runs["seed"][:3]) == [0, 1, 2]
    assert runs["config/resolved.params"].iloc[0] == PARAMS["vanilla"]
    assert "_step" not in runs and "_wandb" not in runs
    eval_rows = curves[curves["key"] == "eval/accuracy"]
    assert len(eval_rows) == 12 and not curves["key"].str.startswith("_").any()
    report.build_report(tmp_path, runs=runs, curves=curves, figures=False)
    table = pd.read_csv(tmp_path / "report" / "table.csv").set_index("variant")
    assert table.loc["NFG", "mean"] == pytest.approx(np.mean(ACCURACY["NFG"][:3]))
    assert table.loc["NFG", "failed"] == 1
    band = stats.curve_band(curves, "eval/accuracy", runs[runs["status"] == "completed"])
    nfg = band[band["variant"] == "NFG"]
    np.testing.assert_allclose(nfg["mean"], np.mean(ACCURACY["NFG"][:3]) * np.array([0.5, 1.0]))


# ----------------------------------------------------------------------------------------------
# Formatting
# ----------------------------------------------------------------------------------------------


def test_metric_words_units_and_formats():
    def told(task: str) -> dict:  # what a task's records say about its metrics
        info = tasks.TASKS[task].metric_info
        return {
            "labels": {name: m.label for name, m in info.items()},
            "units": {name: m.unit for name, m in info.items()},
            "directions": {name: m.direction for name, m in info.items()},
        }

    accuracy = Metric.from_key(
        "test/accuracy", primary="accuracy", primary_direction="max", **told("mnist1d")
    )
    assert accuracy.label == "test accuracy (%)" and accuracy.format(0.8843, 1) == "88.4%"
    nll = Metric.from_key("test/nll", primary="nll", primary_direction="min", **told("chorales"))
    assert nll.label == "test NLL (nats/frame)" and nll.direction == "min"
    assert Metric.from_key("bpc", **told("shakespeare")).label == "test bits per character"
    assert Metric.from_key("test/mse", **told("adding")).label == "test MSE"
    copy = Metric.from_key("eval/loss", **told("copy"))
    assert copy.label == "validation cross-entropy (nats/step)"
    recall = Metric.from_key("test/accuracy", **told("copy"))  # not the primary metric
    assert recall.direction == "max" and recall.label == "test recall accuracy (%)"
    bare = Metric.from_key("test/bleu")  # a record that says nothing about its metric
    assert bare.label == "test bleu" and bare.direction == "min" and not bare.percent
    assert nll.format_mean_std(8.51234, 0.04321, nll.decimals([0.04321])) == "8.512 ± 0.043"
    assert format_p(3.2e-5) == "3e-5" and format_p(0.0123) == "0.012" and format_p(1.0) == "1"
    assert format_p(float("nan")) == "n/a"


# ----------------------------------------------------------------------------------------------
# experiments/figures
# ----------------------------------------------------------------------------------------------


def script(name: str):
    """``experiments/figures/<name>.py`` as a module (experiments/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        name, ROOT / "experiments" / "figures" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_figure_scripts(random, tmp_path):
    root, _ = random
    paths = script("greff_fig3").main([str(root), "--out", str(tmp_path / "fig3.pdf")])
    assert [p.name for p in paths] == ["fig3.pdf", "fig3.png"]
    image = matplotlib.image.imread(paths[1])
    assert image.shape[1] > 2 * image.shape[0]  # two panels side by side, two columns wide
    paths = script("learning_curves").main([str(root), "--key", "eval/loss"])
    assert paths[1] == root / "report" / "figures" / "learning_curves.png" and paths[1].exists()


# ----------------------------------------------------------------------------------------------
# The report in W&B
# ----------------------------------------------------------------------------------------------


def test_the_report_is_logged_to_wandb_as_one_run(grid, tmp_path):
    import wandb_reader

    report.build_report(grid, out=tmp_path, wandb="offline")
    (path,) = sorted(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    found = {"summary": {}, "history": set(), "artifacts": {}}
    for record in wandb_reader.records(wandb_reader.finished(path)):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            found["run"] = (record.run.job_type, record.run.run_group)
        elif kind == "summary":
            for item in record.summary.update:
                found["summary"][item.key or "/".join(item.nested_key)] = item.value_json
        elif kind == "history":
            found["history"].update(item.key or item.nested_key[0] for item in record.history.item)
        elif kind == "artifact":
            found["artifacts"][record.artifact.type] = sorted(
                entry.path for entry in record.artifact.manifest.contents
            )
    assert found["run"] == ("report", "sweep")  # in the sweep's group (its directory's name)
    verdicts = json.loads(found["summary"]["verdicts"])
    assert "NFG is significantly worse than vanilla" in verdicts
    assert json.loads(found["summary"]["NFG/poi"]) == 0.0
    assert {"comparison", "figures/box", "figures/intervals"} <= found["history"]
    assert found["artifacts"]["report"] == ["report.md", "table.csv", "table.tex"]
    assert found["artifacts"]["run_table"] == ["comparison.table.json"]


def test_a_wandb_failure_only_warns(grid, tmp_path, monkeypatch):
    import wandb

    def broken(*args, **kwargs):
        raise RuntimeError("no W&B today")

    monkeypatch.setattr(wandb, "init", broken)
    with pytest.warns(UserWarning, match="could not be logged to W&B"):
        path = report.build_report(grid, out=tmp_path, wandb="offline", figures=False)
    assert "## Interval estimates" in path.read_text()
    assert (tmp_path / "table.csv").exists() and not (tmp_path / "wandb").exists()


def test_overrides_every_variant_shares_are_said_once_not_in_every_label(tmp_path):
    root = tmp_path / "sweep"
    entries = []
    for variant in ("vanilla", "NFG"):
        label = f"{variant}[forget_bias=0.0]"
        for seed, value in enumerate(ACCURACY[variant]):
            name = f"{variant}__s{seed}"
            write_run(root, name, variant, seed, test=value)
            summary = json.loads((root / name / "summary.json").read_text())
            (root / name / "summary.json").write_text(json.dumps({**summary, "variant": label}))
            entries.append({"name": name, "variant": label, "seed": seed, "status": "completed"})
    write_sweep(root, entries)
    text = report.build_report(root, figures=False).read_text()
    assert "- Every variant's spec overrides: `forget_bias=0.0` (left out of the labels)" in text
    assert "forget_bias=0.0]" not in text
    assert "- Baseline: vanilla" in text and "| NFG" in text
    table = pd.read_csv(root / "report" / "table.csv")
    assert table["variant"].tolist() == ["vanilla", "NFG"]


def test_a_random_search_reports_hyperparameter_importance(random):
    root, _ = random
    text = report.build_report(root).read_text()
    assert "## Hyperparameter importance (fANOVA)" in text
    assert "| all variants |" in text and "| vanilla |" in text
    table = pd.read_csv(root / "report" / "importance.csv")
    assert set(table["scope"]) == {"all", "vanilla", "NOG"}
    assert {"lr", "hidden"} <= set(table["term"])
    for name in ("importance", "marginals"):
        assert (root / "report" / "figures" / f"{name}.png").exists()


def test_curves_of_many_variants_are_small_multiples_against_the_baseline():
    from gatelab.report import figures

    order = ["vanilla", "NIG", "NFG", "NOG", "NIAF", "NOAF"]
    rows = []
    for k, variant in enumerate(order):
        for step in range(100, 1001, 100):
            mean = 0.5 + 0.4 * step / 1000 - 0.02 * k
            rows.append(
                {"variant": variant, "step": step, "n": 5, "mean": mean}
                | {"low": mean - 0.01, "high": mean + 0.01}
            )
    figure = figures.curve_figure(pd.DataFrame(rows), Metric("eval/accuracy", "max"), order)
    visible = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == order[1:]  # one panel per variant
    assert figure.get_figwidth() == figures.WIDTH
    # Zoomed to the later part: NOAF's first value (0.44) is off the axis, its later ones on.
    low, high = visible[0].get_ylim()
    assert 0.44 < low < 0.51 and high > 0.9
