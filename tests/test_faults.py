"""Nothing lost, whatever happens: damaged checkpoints, a full disk, W&B failing, torn records, a
sweep killed again and again, and bad input fuzzed.

Every fault is injected into a run and the run is then resumed; what it records must equal an
uninterrupted run's, bit for bit (timing keys aside).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings
from processes import PROC, alive, children

import gatelab as gl
from gatelab import cli, records, study, sweep, train
from gatelab import config as config_lib
from gatelab.checkpoint import Checkpoints

ROOT = Path(__file__).parents[1]
QUICK = str(ROOT / "configs/digits.py:quick")
RUN = ["wandb.mode=disabled", "run.steps=200", "run.log_every=25", "run.eval_every=50"]
RUN += ["run.checkpoint_every=50", "run.seeds=0,1"]


def load(*overrides: str) -> config_lib.Config:
    return config_lib.load(QUICK, [*RUN, *overrides])


def timeless(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("time/")}


def record(workdir: Path) -> dict:
    """Every run's metrics lines and summary, timing aside."""
    out = {}
    for run in sorted(p.parent for p in workdir.glob("*/summary.json")):
        lines = [timeless(r) for r in records.read_metrics(run / "metrics.jsonl")]
        out[run.name] = (lines, timeless(records.read_json(run / "summary.json")))
    return out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    workdir = tmp_path_factory.mktemp("uninterrupted")
    train.train_and_evaluate(load(), workdir, quiet=True)
    return record(workdir)


def crash_at(monkeypatch, step: int, error: BaseException):
    """The record's ``log`` raises ``error`` once, when the line of ``step`` is written."""
    original = records.RunRecord.log

    def log(self, row):
        if row["step"] == step:
            monkeypatch.setattr(records.RunRecord, "log", original)
            raise error
        original(self, row)

    monkeypatch.setattr(records.RunRecord, "log", log)


def checkpoint_dir(workdir: Path) -> Path:
    (found,) = workdir.glob("groups/*/checkpoints")
    return found


# --------------------------------------------------------------------------------------------------
# Damaged checkpoints: resume from the newest one that restores.
# --------------------------------------------------------------------------------------------------


def _truncate(step: Path) -> None:
    for file in (step / "state").rglob("*"):
        if file.is_file():
            file.write_bytes(file.read_bytes()[: max(1, file.stat().st_size // 2)])


def _drop_arrays(step: Path) -> None:
    for file in (step / "state" / "ocdbt.process_0" / "d").iterdir():
        file.unlink()


def _drop_metadata(step: Path) -> None:
    (step / "_CHECKPOINT_METADATA").unlink()
    (step / "state" / "_METADATA").unlink()


DAMAGE = {
    "truncated files": _truncate,
    "missing arrays": _drop_arrays,
    "no metadata": _drop_metadata,
}


class TestDamagedCheckpoints:
    """One worker: the tests share the uninterrupted run (a class, under --dist loadscope)."""

    @pytest.mark.parametrize("damage", list(DAMAGE))
    def test_resume_falls_back_and_sets_the_damaged_one_aside(
        self, tmp_path, monkeypatch, uninterrupted, damage
    ):
        crash_at(monkeypatch, 175, RuntimeError("killed"))  # checkpoints at 100 and 150
        with pytest.raises(RuntimeError, match="killed"):
            train.train_and_evaluate(load(), tmp_path, quiet=True)
        directory = checkpoint_dir(tmp_path)
        DAMAGE[damage](directory / "150")
        with pytest.warns(UserWarning, match=r"set aside as 150\.corrupt .*resuming from step 100"):
            train.train_and_evaluate(load(), tmp_path, quiet=True)
        assert record(tmp_path) == uninterrupted
        assert (directory / "150.corrupt").is_dir()  # kept, never deleted

    def test_none_restoring_is_a_clear_error_and_changes_nothing(
        self, tmp_path, monkeypatch, capsys
    ):
        crash_at(monkeypatch, 175, RuntimeError("killed"))
        with pytest.raises(RuntimeError, match="killed"):
            train.train_and_evaluate(load(), tmp_path, quiet=True)
        directory = checkpoint_dir(tmp_path)
        for step in ("100", "150"):
            _truncate(directory / step)
        before = record(tmp_path), sorted(p.name for p in directory.iterdir())
        command = ["train", QUICK, "--workdir", str(tmp_path)] + [f"--set={s}" for s in RUN]
        assert cli.main([*command, "--quiet"]) == 1
        error = capsys.readouterr().err
        assert f"no checkpoint in {directory} restores" in error and "Traceback" not in error
        assert (record(tmp_path), sorted(p.name for p in directory.iterdir())) == before

    def test_reading_a_damaged_run_names_its_checkpoint(self, tmp_path, capsys):
        train.train_and_evaluate(load("run.steps=50", "run.seeds=0"), tmp_path, quiet=True)
        _truncate(checkpoint_dir(tmp_path) / "50")
        assert cli.main(["inspect", str(tmp_path / "seed_0")]) == 1
        error = capsys.readouterr().err
        assert "cannot be read" in error and "step 50" in error and "Traceback" not in error


# --------------------------------------------------------------------------------------------------
# A full disk: one clear message, exit 1, and the same command resumes once there is room.
# --------------------------------------------------------------------------------------------------


def _enospc(path="x"):
    return OSError(errno.ENOSPC, "No space left on device", str(path))


def _fail_once(monkeypatch, owner, name, when):
    """``owner.name`` raises ENOSPC the first time ``when(*args)`` holds."""
    original = getattr(owner, name)

    def replacement(*args, **kwargs):
        if when(*args):
            monkeypatch.setattr(owner, name, original)
            raise _enospc()
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, replacement)


# Where a full disk can stop a run: each of the record's files, and a checkpoint.
WRITES = {
    "metrics.jsonl": (records.RunRecord, "log", lambda self, row: row["step"] == 125),
    "summary.json": (records, "write_json_atomic", lambda path, data: path.name == "summary.json"),
    "sweep.json": (records, "write_index", lambda directory, index: True),
    "checkpoint": (Checkpoints, "save", lambda self, step, state, note: step == 100),
}


class TestFullDisk:
    @pytest.mark.parametrize("where", list(WRITES))
    def test_injected_enospc(self, tmp_path, monkeypatch, capsys, uninterrupted, where):
        _fail_once(monkeypatch, *WRITES[where])
        command = ["train", QUICK, "--workdir", str(tmp_path), "--quiet"]
        command += [f"--set={s}" for s in RUN]
        assert cli.main(command) == 1
        error = capsys.readouterr().err
        assert "the disk is full" in error and "run the same command again" in error
        assert cli.main(command) == 0  # room again: the same command resumes
        assert record(tmp_path) == uninterrupted

    def test_a_real_full_disk(self, tmp_path, uninterrupted):
        """A 400 KB tmpfs: full at the second checkpoint (where the test may mount one)."""
        mount = tmp_path / "disk"
        mount.mkdir()
        if subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)]
        ).returncode:
            pytest.skip("cannot mount a tmpfs here (not root)")
        try:
            command = [sys.executable, "-m", "gatelab.cli", "train", QUICK, "--quiet"]
            command += ["--workdir", str(mount / "run")] + [f"--set={s}" for s in RUN]
            done = subprocess.run(command, capture_output=True, text=True, timeout=300)
            assert done.returncode == 1, done.stderr[-2000:]
            assert done.stderr.count("\n") == 1 and "the disk is full" in done.stderr
            assert "Traceback" not in done.stderr
            subprocess.run(["mount", "-o", "remount,size=8m", str(mount)], check=True)
            done = subprocess.run(command, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr[-2000:]
            assert record(mount / "run") == uninterrupted
        finally:
            subprocess.run(["umount", str(mount)])

    def test_a_sweep_stops_on_a_full_disk(self, tmp_path, monkeypatch, capsys):
        _fail_once(monkeypatch, records.RunRecord, "log", lambda self, row: row["step"] == 50)
        command = ["sweep", str(ROOT / "configs/mnist1d.py:quick"), "--workdir", str(tmp_path)]
        command += ["--workers", "1", "--quiet", "--set=wandb.mode=disabled", "--set=run.steps=50"]
        command += ["--set=run.eval_every=50", "--set=run.checkpoint_every=50"]
        assert cli.main(command) == 1
        assert "the disk is full" in capsys.readouterr().err
        statuses = {r["status"] for r in records.read_index(tmp_path)["runs"]}
        assert "failed" not in statuses  # no run blamed for the disk
        assert cli.main(command) == 0


# --------------------------------------------------------------------------------------------------
# W&B failing: the local record is complete and the same.
# --------------------------------------------------------------------------------------------------


class _FailingRun:
    def __init__(self, fail: str):
        self.fail, self.summary = fail, {}

    def define_metric(self, *args, **kwargs):
        pass

    def log(self, row, step=None):
        if self.fail == "log" and step == 100:
            raise RuntimeError("W&B went away")

    def finish(self):
        if self.fail == "finish":
            raise RuntimeError("W&B went away")


@pytest.mark.parametrize("fail", ["init", "log", "finish"])
def test_wandb_failing_loses_nothing(tmp_path, monkeypatch, uninterrupted, fail):
    wandb = pytest.importorskip("wandb")

    def init(**kwargs):
        if fail == "init":
            raise RuntimeError("W&B went away")
        return _FailingRun(fail)

    monkeypatch.setattr(wandb, "init", init)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train.train_and_evaluate(load("wandb.mode=offline"), tmp_path, quiet=True)
    assert any("W&B" in str(w.message) for w in caught)  # it says so, and goes on
    assert record(tmp_path) == uninterrupted


# --------------------------------------------------------------------------------------------------
# Records that cannot be half-written.
# --------------------------------------------------------------------------------------------------


def test_a_torn_metrics_line_is_skipped_and_redone(tmp_path, monkeypatch, uninterrupted):
    crash_at(monkeypatch, 175, RuntimeError("killed"))
    with pytest.raises(RuntimeError):
        train.train_and_evaluate(load(), tmp_path, quiet=True)
    for run in ("seed_0", "seed_1"):
        with open(tmp_path / run / "metrics.jsonl", "a") as f:
            f.write('{"step": 175, "train/lo')  # a kill in the middle of a line
        assert records.read_metrics(tmp_path / run / "metrics.jsonl")[-1]["step"] == 150
    train.train_and_evaluate(load(), tmp_path, quiet=True)
    assert record(tmp_path) == uninterrupted


def test_a_torn_json_file_is_never_left_behind(tmp_path, monkeypatch):
    """The write is atomic: a failure in the middle leaves the old file, whole."""
    path = tmp_path / "summary.json"
    records.write_json_atomic(path, {"status": "running"})

    def broken(obj, f, **kwargs):
        f.write('{"status": "compl')
        raise _enospc(path)

    monkeypatch.setattr(json, "dump", broken)
    with pytest.raises(OSError):
        records.write_json_atomic(path, {"status": "completed"})
    monkeypatch.undo()
    assert records.read_json(path) == {"status": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temporary file left


# --------------------------------------------------------------------------------------------------
# Fuzzing the inputs: never a traceback; exit 2 with the key named, and nothing written.
# --------------------------------------------------------------------------------------------------

KEYS = [k.split(" ")[0] for k in config_lib.override_keys()]
KEYS += ["model.spec.forget", "model.spec.peepholes", "task.args.length", "model.hiden", "run"]
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
VALUES = st.one_of(
    TEXT,
    st.sampled_from(
        ["nan", "inf", "-inf", "-1", "0", "1e308", "1e-300", "", ",", "1,2,,3", "true"]
    ),
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
OVERRIDES = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.one_of(st.sampled_from(KEYS), TEXT), VALUES), TEXT
)


@pytest.fixture
def no_training(monkeypatch):
    """Valid configs reach the runner, which records the call instead of training."""
    calls = []
    monkeypatch.setattr(train, "train_and_evaluate", lambda config, workdir, quiet: calls.append(1))
    monkeypatch.setattr(sweep, "run_sweep", lambda *args, **kwargs: calls.append(1) or 0)
    return calls


@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    max_examples=4 * settings.default.max_examples,  # 60, or 800 with HYPOTHESIS_PROFILE=slow
)
@given(overrides=st.lists(OVERRIDES, min_size=1, max_size=3))
def test_fuzzed_overrides(tmp_path, capsys, no_training, overrides):
    workdir = tmp_path / f"never{len(no_training)}-{abs(hash(tuple(overrides)))}"
    command = ["train", str(ROOT / "configs/adding.py:quick"), "--workdir", str(workdir)]
    code = cli.main(command + [f"--set={o}" for o in overrides])
    error = capsys.readouterr().err
    assert code in (0, 2), code
    assert "Traceback" not in error
    if code == 2:
        assert error.startswith("gatelab train: error: ") and error.count("\n") <= 3, error
        keys = [o.partition("=")[0].strip() for o in overrides]
        named = any(k and (k in error or k.split(".")[0] in error) for k in keys)
        assert named or "unknown key" in error or "KEY=VALUE" in error, error
        assert not workdir.exists()


REGULARISERS = {
    "dropout_input": [0.0, 0.5, 1.0, -0.1, float("nan"), "x"],
    "dropout_recurrent": [0.2, 0.99, 1.5],
    "dropout_tied": [True, False, 1],
    "zoneout_cell": [0.0, 0.3, 1.0],
    "zoneout_hidden": [0.1, -1],
    "weight_drop": [0.5, True],
    "layer_norm": [(), ("input",), ("input", "recurrent", "cell"), ("cell", "cell"), ("x",)],
    "layer_norm_stats": ["joint", "gate", "unit"],
    "projection": [0, 2, -1, 2.5],
}
SPECS = {
    gl.LSTMSpec: {
        "forget": ["learned", "open", "1-input", "input", "output", "closed", 3],
        "input": ["learned", "open", "1-forget", "forget", "1-input"],
        "output": ["learned", "open", "forget"],
        "peepholes": [True, False, 1, "yes"],
        "chrono_tmax": [None, 100.0, 1.0, -5.0, float("nan")],
        "forget_bias": [1.0, float("inf"), "1"],
        "gate_recurrence": [False, True],
        **REGULARISERS,
    },
    gl.GRUSpec: {
        "update": ["learned", "open", "1-reset", "reset"],
        "reset": ["learned", "open", "update", "1-update"],
        "update_recurrence": ["linear", "none", "tanh", "cubic"],
        "reset_input": ["linear", "identity", "x"],
        "candidate_input": ["linear", "tanh", None],
        **REGULARISERS,
    },
    gl.SLSTMSpec: {
        "input": ["exponential", "sigmoid", "open", "learned"],
        "forget": ["sigmoid", "exponential", "open"],
        "normaliser": [True, False],
        "heads": [1, 4, 0, -2, 2.5, True],
        "forget_depth": [0.0, 1.0, 2.0],
    },
    gl.RGLRUSpec: {
        "recurrence": ["learned", "open", "1-input"],
        "c": [8.0, 0.0, -1.0, float("nan")],
        "min_radius": [0.9, 0.999, 1.5],
        "max_radius": [0.999, 0.5],
    },
}


@given(data=st.data())
def test_fuzzed_specs_are_valid_or_name_the_field(data):
    kind = data.draw(st.sampled_from(list(SPECS)))
    fields = data.draw(
        st.dictionaries(st.sampled_from(list(SPECS[kind])), st.none(), max_size=len(SPECS[kind]))
    )
    kwargs = {k: data.draw(st.sampled_from(SPECS[kind][k])) for k in fields}
    try:
        spec = kind(**kwargs)
    except ValueError as error:
        assert f"{kind.__name__}." in str(error), error  # names the field
        return
    assert eval(repr(spec), {kind.__name__: kind}) == spec  # a valid one prints as typed


@given(
    runs=st.lists(
        st.dictionaries(
            st.sampled_from(["model.variant", "optim.lr", "run.seeds", "model.hidden", "nope.x"]),
            st.one_of(
                st.sampled_from(["lstm", "NFG", "gru", "bogus", 0.0, -1, (0, 1), ()]),
                st.floats(allow_nan=True),
            ),
            max_size=3,
        ),
        max_size=4,
    )
)
def test_fuzzed_studies_expand_or_fail_alone(runs):
    base = config_lib.load(str(ROOT / "configs/mnist1d.py:quick"))
    try:
        planned = sweep.expand(base, study.Sweep(tuple(runs)))
    except ValueError as error:
        assert "duplicate runs" in str(error)
        return
    for run in planned:
        assert (run.config is None) == (run.error is not None)  # an invalid run carries its error


WORDS = ["train", "sweep", "report", "inspect", "sample", "variants", "trian", "--workdir"]
WORDS += ["--set", "--quiet", "--shard", "0/2", "3/2", "--workers", "0", "auto", "--stage", "x"]
WORDS += ["configs/adding.py:quick", "configs/nope.py", "--help", "--wrokdir", "lstm", "CIFG"]
WORDS += ["model.hidden=8", "model.hiden=8", "--prompt", "--length", "-1", "--baseline", "/tmp"]


@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    max_examples=4 * settings.default.max_examples,  # 60, or 800 with HYPOTHESIS_PROFILE=slow
)
@given(argv=st.lists(st.sampled_from(WORDS), max_size=6))
def test_fuzzed_command_lines(tmp_path, capsys, monkeypatch, no_training, argv):
    monkeypatch.chdir(ROOT)
    argv = [str(tmp_path / "w") if a == "/tmp" else a for a in argv]
    try:
        code = cli.main(argv)
    except SystemExit as exit_:  # argparse: --help, or a bad flag or command
        code = exit_.code
    error = capsys.readouterr().err
    assert code in (0, 1, 2), code
    assert "Traceback" not in error


# --------------------------------------------------------------------------------------------------
# A soak test: a whole sweep killed at random moments, again and again.
# --------------------------------------------------------------------------------------------------

# Long enough (about 20 s of training for 4 runs in 2 workers) for most kills to land in it.
SOAK = ["wandb.mode=disabled", "run.steps=1200", "run.eval_every=200", "run.checkpoint_every=100"]


def _sweep_record(directory: Path) -> tuple:
    """The index, every run's lines and summary without their gate statistics, those apart, and
    the report's table."""
    index = records.read_index(directory)
    index = {k: v for k, v in index.items() if k != "code_version"}
    exact, gates = {}, {}
    for run, (lines, summary) in record(directory).items():
        rows = [*lines, summary]
        exact[run] = [{k: v for k, v in r.items() if not k.startswith("gates/")} for r in rows]
        gates[run] = [v for r in rows for k, v in sorted(r.items()) if k.startswith("gates/")]
    return index, exact, gates, (directory / "report" / "table.csv").read_text()


@pytest.mark.slow
def test_a_sweep_killed_at_random_moments_ends_as_an_uninterrupted_one(tmp_path):
    target = str(ROOT / "configs/mnist1d.py:quick")
    sweep_command = [sys.executable, "-m", "gatelab.cli", "sweep", target, "--workers", "2"]
    sweep_command += ["--quiet"] + [f"--set={s}" for s in SOAK]
    report_command = [sys.executable, "-m", "gatelab.cli", "report"]

    def run(directory: Path, kill_after: float | None = None, delay: float = 0.0) -> int | None:
        """Both commands to the end, or killed (the whole process group) after ``kill_after``."""
        env = dict(os.environ, GATELAB_TEST_SAVE_DELAY=str(delay))
        for command in (sweep_command + ["--workdir", str(directory)], report_command):
            if command is report_command:
                command = command + [str(directory)]
            process = subprocess.Popen(
                command, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )  # fmt: skip
            try:
                process.wait(timeout=kill_after)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                return None
            if process.returncode:
                return process.returncode
            kill_after = None if kill_after is None else max(0.5, kill_after / 4)
        return 0

    assert run(tmp_path / "reference") == 0
    reference = _sweep_record(tmp_path / "reference")

    seed = int(os.environ.get("GATELAB_SOAK_SEED", "20261201"))
    rng = random.Random(seed)
    schedule, kills, done = [], 0, False
    directory = tmp_path / "killed"
    while not (done and kills >= 10):  # killed at least 10 times, then once to the end
        assert len(schedule) < 60, f"no end in sight (seed {seed}): {schedule}"
        kill_after = rng.uniform(3.0, 12.0) if kills < 10 else None
        delay = rng.choice([0.0, 2.0])  # with 2 s saves, some kills land while one is written
        start = time.monotonic()
        code = run(directory, kill_after, delay)
        schedule.append(
            (round(kill_after or 0, 2), delay, code, round(time.monotonic() - start, 1))
        )
        assert code in (None, 0), f"exit {code} (seed {seed}, schedule so far: {schedule})"
        kills += code is None
        done = done or code == 0
    print(f"soak seed {seed}: {kills} kills, schedule (kill after s, save delay s, exit, took s):")
    print(schedule)
    index, exact, gates, table = _sweep_record(directory)
    assert (index, exact, table) == (reference[0], reference[1], reference[3])
    # Gate statistics to 1e-6, as between worker processes (test_sweep): the capture program's
    # activations move in their last bits with how XLA splits work over a busy machine's threads
    # (seen here under pytest -n 2); the training, evaluations and tests are equal bit for bit.
    for run, values in gates.items():
        assert values == pytest.approx(reference[2][run], rel=1e-6, abs=1e-9), run
    assert not list(directory.glob("groups/*/checkpoints/*.corrupt*"))  # kills never damage one
    shutil.rmtree(tmp_path / "reference")


def _claimed_groups(directory: Path) -> dict[str, int]:
    """The groups of ``directory`` a process holds now, and its pid."""
    from gatelab import locks

    held = {}
    for lock in directory.glob("groups/*/lock"):
        info = locks.holder(lock)
        if info is not None:
            held[lock.parent.name] = info.get("pid")
    return held


@pytest.mark.skipif(not PROC, reason="reads /proc (Linux)")
def test_workers_end_with_a_sweep_killed_outright(tmp_path):
    """SIGKILL to a sweep alone (not its process group: an out-of-memory kill, ``kill -9``):
    its workers end within seconds and free their groups, instead of training on as orphans
    beside the sweep that resumes it."""
    command = [sys.executable, "-m", "gatelab.cli", "sweep", str(ROOT / "configs/mnist1d.py:quick")]
    command += ["--workers", "2", "--quiet", "--workdir", str(tmp_path)]
    command += [f"--set={s}" for s in SOAK]
    process = subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while len(claimed := _claimed_groups(tmp_path)) < 2:  # both workers set up and training
            assert process.poll() is None and time.monotonic() < deadline, claimed
            time.sleep(0.2)
        workers = {int(p) for p in claimed.values()}
        assert workers <= children(process.pid), (workers, children(process.pid))
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        # A worker's main thread shows as a zombie while its other threads still exit, and
        # they share its files: its claim goes when the last one has.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (
            any(alive(pid) for pid in workers) or _claimed_groups(tmp_path)
        ):
            time.sleep(0.1)
        assert not any(alive(pid) for pid in workers), "a worker outlived its sweep"
        assert not _claimed_groups(tmp_path)  # the resumed sweep can take every group over
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
