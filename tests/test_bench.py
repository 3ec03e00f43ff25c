"""The benchmark suite's smoke form runs end to end and reports no impossible figure."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_benchmark_writes_every_section_below_the_peak(tmp_path):
    # A subprocess, as a user runs it: the suite sets the allocator and threads for its process.
    done = subprocess.run(
        [sys.executable, "-m", "experiments.bench", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    markdown = (tmp_path / "bench-quick.md").read_text()
    results = json.loads((tmp_path / "bench-quick.json").read_text())
    assert markdown in done.stdout
    for heading in (
        "## Matmul peak",
        "## Training-step throughput",
        "## Design rows",
        "## A whole grid",
        "## Compile time and memory",
        "## Targets",
    ):
        assert f"\n{heading}\n" in markdown, heading
    assert "ABOVE PEAK" not in markdown and not results["flags"] and not results["errors"]
    peak = results["peak"]["gflops"]
    assert 1 < peak < 1e5  # GFLOP/s of a CPU
    sections = results["sections"]
    throughput, design, allocator = (sections[s] for s in ("throughput", "design", "allocator"))
    assert set(design) == {"projection", "gates", "unroll", "runs", "regularisers"}
    rows = throughput + [row for lever in design.values() for row in lever]
    rows += [row for child in allocator + sections["memory"] for row in child["rows"]]
    assert {r["name"] for r in throughput} >= {"lstm", "lstm:fused", "torch-lstm", "flax-lstm"}
    for row in rows:
        assert 0 < row["gflops"] <= row["gflops_p90"] <= peak, row["name"]
    assert {c["setting"] for c in allocator} == {"tuned", "system"}
    grid = sections["grid"]["contenders"]
    assert set(grid) == {"sweep", "loop", "torch", "inprocess"}
    for name, entry in grid.items():
        assert entry["returncode"] == 0 and not entry["error"] and entry["wall_s"] > 0, name
        assert 0 < entry["peak_rss_mib"] < 16_000, name
    assert results["machine"]["versions"]["jax"] and results["machine"]["cpu"]
