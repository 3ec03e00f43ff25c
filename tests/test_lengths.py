"""Length generalisation: synthetic tasks tested at other lengths than they trained on
(``task.args.eval_lengths``), recorded as ``test/<metric>@<T>``, and the report's section."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gatelab import cli, report, tasks, train
from gatelab import config as config_lib

ROOT = Path(__file__).parents[1]


def test_eval_lengths_are_parsed_and_checked():
    assert tasks.get("adding", length=20, eval_lengths="100,40,40").eval_lengths == (40, 100)
    assert tasks.get("copy", delay=5, eval_lengths=(10, 20)).eval_lengths == (10, 20)
    for bad, words in (("1,x", "must be integers"), (1, "at least 2"), (True, "list of values")):
        with pytest.raises(ValueError, match=words):
            tasks.check_arguments("adding", {"eval_lengths": bad})
    other = tasks.get("adding", length=20, eval_size=8).at_length(40)
    assert other.seq_len == 40 and other.eval_set("test")["inputs"].shape == (8, 40, 2)


def test_the_trained_length_tested_again_is_the_test_metric_and_others_differ(tmp_path):
    config = config_lib.load(
        str(ROOT / "configs/adding.py:quick"),
        ["wandb.mode=disabled", "run.steps=100", "run.log_every=50", "run.eval_every=50"]
        + ["run.checkpoint_every=50", "task.args.eval_lengths=20,60"],
    )
    (summary,) = train.train_and_evaluate(config, tmp_path, quiet=True)
    # Length 20 is the trained one: the same parameters on the same test set, bit for bit.
    assert summary["test/mse@20"] == summary["test/mse"]
    assert math.isfinite(summary["test/mse@60"]) and summary["test/mse@60"] != summary["test/mse"]


def test_a_bad_eval_length_on_the_command_line_is_exit_2_and_writes_nothing(tmp_path, capsys):
    workdir = tmp_path / "run"
    argv = ["train", str(ROOT / "configs/adding.py:quick"), "--workdir", str(workdir)]
    assert cli.main([*argv, "--set", "task.args.eval_lengths=10,x"]) == 2
    assert "eval_lengths must be integers" in capsys.readouterr().err
    assert not workdir.exists()


def test_the_report_has_a_table_and_a_figure_by_length(tmp_path):
    from test_report import write_run, write_sweep  # the report tests' record writers

    root = tmp_path / "sweep"
    entries = []
    for variant, slope in (("vanilla", 0.0005), ("NFG", 0.002)):
        for seed in range(3):
            name = f"{variant}__s{seed}"
            write_run(root, name, variant, seed, test=0.9)
            path = root / name / "summary.json"
            summary = json.loads(path.read_text())
            for length in (100, 200, 400):
                summary[f"test/accuracy@{length}"] = 0.9 - slope * length - 0.001 * seed
            path.write_text(json.dumps(summary))
            entries.append({"name": name, "variant": variant, "seed": seed, "status": "completed"})
    write_sweep(root, entries)
    text = report.build_report(root).read_text()
    assert "## Length generalisation" in text
    assert "| variant | T = 100 | T = 200 | T = 400 |" in text
    lengths = pd.read_csv(root / "report" / "lengths.csv")
    nfg = lengths[(lengths["variant"] == "NFG") & (lengths["length"] == 400)].iloc[0]
    assert nfg["mean"] == pytest.approx(np.mean([0.9 - 0.8 - 0.001 * s for s in range(3)]))
    assert (root / "report" / "figures" / "lengths.png").exists()
