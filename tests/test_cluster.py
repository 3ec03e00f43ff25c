"""Many processes on one directory of runs: group claims (``locks``), concurrent sweeps, a sweep
killed while it holds a group, ``gatelab status``, and sweeps as submitit jobs (the local
executor for real, SLURM through a fake ``sbatch``)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gatelab import cli, cluster, locks, records, sweep
from gatelab import status as status_lib

ROOT = Path(__file__).parents[1]
QUICK = str(ROOT / "configs/mnist1d.py:quick")  # 2 variants x 2 seeds: 2 groups of 2 runs
FAST = ["wandb.mode=disabled", "run.steps=100", "run.eval_every=50", "run.checkpoint_every=50"]
STEPS = [50, 100]  # the metrics lines of a FAST run (quick logs every 50 steps)
CLI = [sys.executable, "-m", "gatelab.cli"]


def sweep_command(directory: Path, *extra: str) -> list[str]:
    sets = [f"--set={s}" for s in FAST]
    return [*CLI, "sweep", QUICK, "--workdir", str(directory), *sets, "--workers", "1", *extra]


def statuses(directory: Path) -> dict[str, str]:
    return {r["name"]: r["status"] for r in records.read_json(directory / "sweep.json")["runs"]}


def groups_of(directory: Path) -> dict[str, list[str]]:
    """The index's groups and their runs."""
    found: dict[str, list[str]] = {}
    for entry in records.read_json(directory / "sweep.json")["runs"]:
        found.setdefault(entry["group"], []).append(entry["name"])
    return found


def wait_for(condition, timeout: float, what: str, poll: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll)


def assert_same_records(directory: Path, reference: Path) -> None:
    """Every run of ``reference`` (one inline process) has in ``directory`` exactly one metrics
    line per logged step and the same losses, evaluations and summary bit for bit (timing
    aside); gate statistics to 1e-6 (XLA's thread splits move their last bits, test_sweep)."""

    def split(row: dict) -> tuple[dict, dict]:
        exact = {k: v for k, v in row.items() if not k.startswith(("time/", "gates/"))}
        return exact, {k: v for k, v in row.items() if k.startswith("gates/")}

    names = sorted(statuses(reference))
    assert sorted(statuses(directory)) == names
    for run in names:
        lines = records.read_metrics(directory / run / "metrics.jsonl")
        assert [row["step"] for row in lines] == STEPS, run  # no step twice, none missing
        rows = [*lines, records.read_json(directory / run / "summary.json")]
        expected = records.read_metrics(reference / run / "metrics.jsonl")
        expected.append(records.read_json(reference / run / "summary.json"))
        assert rows[-1]["status"] == "completed", run
        for row, ref in zip(rows, expected, strict=True):
            (exact, gates), (exact_ref, gates_ref) = split(row), split(ref)
            assert exact == exact_ref, run
            assert gates.keys() == gates_ref.keys(), run
            assert gates == pytest.approx(gates_ref, rel=1e-6, abs=1e-9), run


@pytest.fixture(scope="module")
def inline(tmp_path_factory) -> Path:
    """QUICK with FAST in one process, inline: the records every other way must reproduce."""
    directory = tmp_path_factory.mktemp("inline")
    assert sweep.run_sweep(QUICK, directory, FAST, quiet=True) == 0
    assert set(statuses(directory).values()) == {"completed"}
    return directory


# --------------------------------------------------------------------------------------------------
# Claims.
# --------------------------------------------------------------------------------------------------

# Holds a claim on argv[1] until a line comes on stdin, then lives on without it.
HOLD = """\
import sys, time
from gatelab import locks
with locks.claim(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()
print("released", flush=True)
time.sleep(60)
"""


def start_holder(path: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    assert process.stdout.readline() == "held\n"
    return process


def test_a_claim_excludes_a_second_and_says_who_holds_it(tmp_path):
    path = tmp_path / "groups" / "g" / locks.LOCK
    assert locks.holder(path) is None and not path.exists()  # holder only reads
    with locks.claim(path):
        held = locks.holder(path)
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
        assert isinstance(held["since"], float) and time.time() - held["since"] < 60
        # Even from this process: a second claim is a second open file, refused at once.
        started = time.monotonic()
        with pytest.raises(locks.Busy) as busy, locks.claim(path):
            pass
        assert time.monotonic() - started < 0.5
        assert busy.value.owner["pid"] == os.getpid()
        assert busy.value.path == path
        assert f"g is being trained by {socket.gethostname()} pid {os.getpid()}" in str(busy.value)
        assert locks.holder(path)["pid"] == os.getpid()  # the refused claim changed nothing
    assert locks.holder(path) is None
    with locks.claim(path):  # free again
        assert locks.holder(path)["pid"] == os.getpid()
    assert locks.holder(path) is None


def test_a_claim_whose_holder_was_killed_is_taken_over_at_once(tmp_path):
    path = tmp_path / "lock"
    process = start_holder(path)
    try:
        assert locks.holder(path)["pid"] == process.pid
        with pytest.raises(locks.Busy) as busy, locks.claim(path, wait=False):
            pass
        assert busy.value.owner["pid"] == process.pid
    finally:
        process.kill()  # SIGKILL: no finally block of the holder runs
        process.wait()
    assert process.returncode == -signal.SIGKILL
    # The file still names the dead holder; only the lock on it counts, and the kernel let go.
    assert json.loads(path.read_text())["pid"] == process.pid
    assert locks.holder(path) is None
    started = time.monotonic()
    with locks.claim(path, wait=False):
        assert time.monotonic() - started < 0.5
        assert locks.holder(path)["pid"] == os.getpid()


def test_a_waiting_claim_gets_it_when_the_live_holder_releases(tmp_path):
    path = tmp_path / "lock"
    process = start_holder(path)
    try:
        told = []
        release = threading.Timer(1.0, lambda: (process.stdin.write("\n"), process.stdin.flush()))
        release.start()
        started = time.monotonic()
        with locks.claim(path, wait=True, on_wait=told.append, poll_s=0.05):
            waited = time.monotonic() - started
            assert locks.holder(path)["pid"] == os.getpid()
        release.join()
        assert waited >= 0.9
        assert [info["pid"] for info in told] == [process.pid]  # told once, with the holder
        # The holder released it and is alive: the wait ended on the release, not a death.
        assert process.stdout.readline() == "released\n"
        assert process.poll() is None
    finally:
        process.kill()
        process.wait()


# --------------------------------------------------------------------------------------------------
# Sweeps sharing a directory.
# --------------------------------------------------------------------------------------------------


def test_two_sweeps_started_together_train_each_group_once(tmp_path, inline):
    directory = tmp_path / "shared"
    # JAX logs every program it compiles (persistent-cache hits included): a process that finds
    # a group finished by the other (after waiting for it) returns before compiling its program.
    env = dict(os.environ, JAX_LOG_COMPILES="1")
    processes = [
        subprocess.Popen(
            sweep_command(directory, "--quiet"),
            env=env,
            cwd=ROOT,
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=240))
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err[-3000:]
    trained = [err.count("Compiling jit(train_chunk)") for _, err in outputs]
    assert sum(trained) == 2, trained  # 2 groups, each trained by one of the processes
    assert_same_records(directory, inline)
    assert set(statuses(directory).values()) == {"completed"}
    for group in groups_of(directory):
        assert locks.holder(records.group_dir(directory, group) / locks.LOCK) is None


def test_a_sweep_leaves_a_claimed_group_to_its_holder_and_waits_for_it(tmp_path, inline):
    directory = tmp_path / "held"
    work = sweep.plan(QUICK, directory, FAST)
    first, second = ([run.name for run in group] for group in work.groups)
    lock = records.group_dir(directory, work.groups[0][0].group) / locks.LOCK
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(sweep.run_sweep(QUICK, directory, FAST, quiet=True))
        except BaseException as error:  # noqa: BLE001  (the test reports it)
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    with locks.claim(lock):
        thread.start()
        # The free group is trained meanwhile...
        wait_for(
            lambda: all(
                (s := records.read_summary(directory / name)) and s.status == "completed"
                for name in second
            ),
            timeout=120,
            what="the free group",
        )
        time.sleep(1.5)  # a poll or two of the waiting claim (every second)
        # ... the claimed one is not: the sweep waits, without touching its runs.
        assert thread.is_alive() and not outcome
        for name in first:
            assert not (directory / name / "metrics.jsonl").exists()
            assert records.read_summary(directory / name) is None
        index = statuses(directory)
        assert {index[n] for n in first} == {"running"}  # claimed by "another process"
        assert {index[n] for n in second} == {"completed"}
    thread.join(timeout=120)
    assert not thread.is_alive(), "the sweep did not finish after the claim was released"
    assert outcome == [0]
    assert_same_records(directory, inline)
    assert set(statuses(directory).values()) == {"completed"}


def start_sweep(directory: Path, log: Path, **env: str) -> subprocess.Popen:
    """``gatelab sweep QUICK --set FAST --workers 1 --quiet`` in its own session, stderr to log."""
    with open(log, "w") as err:
        return subprocess.Popen(
            sweep_command(directory, "--quiet"), env=dict(os.environ, **env), cwd=ROOT,
            start_new_session=True, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip


def kill(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def started(process: subprocess.Popen, directory: Path, log: Path):
    """A condition: some run of ``directory`` has a metrics line (the process must be alive)."""

    def check() -> bool:
        assert process.poll() is None, log.read_text()[-3000:]
        return any(p.stat().st_size for p in directory.glob("*/metrics.jsonl"))

    return check


@pytest.mark.slow  # 12-18 s; test_a_claim_whose_holder_was_killed_... is its fast form
def test_a_sweep_killed_while_it_holds_a_group_is_taken_over(tmp_path, inline, capsys):
    directory, log = tmp_path / "killed", tmp_path / "killed.err"
    # 1 s checkpoint saves (train's test hook) keep the group busy long after its first line.
    process = start_sweep(directory, log, GATELAB_TEST_SAVE_DELAY="1.0")
    try:
        wait_for(started(process, directory, log), timeout=120, what="a metrics line")
    finally:
        kill(process)
    assert process.returncode == -signal.SIGKILL
    groups = groups_of(directory)
    interrupted = [
        g for g, names in groups.items() if (directory / names[0] / "metrics.jsonl").exists()
    ]
    assert len(interrupted) == 1, groups
    (group,) = interrupted
    assert all(
        not (s := records.read_summary(directory / n)) or not s.finished for n in groups[group]
    ), "the kill landed after the group finished"
    lock = records.group_dir(directory, group) / locks.LOCK
    assert json.loads(lock.read_text())["pid"] == process.pid  # left behind by the kill ...
    assert locks.holder(lock) is None  # ... and held by nobody

    # gatelab status: the interrupted runs are pending (they resume), none is running.
    assert cli.main(["status", str(directory), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    runs = {run["name"]: run for g in shown["groups"] for run in g["runs"]}
    assert sorted(runs) == sorted(statuses(inline))
    assert all(g["holder"] is None for g in shown["groups"])
    for name, run in runs.items():
        assert run["state"] == "pending", run
        if name in groups[group]:
            # Killed after its first line (a second may have come before the kill landed).
            assert run["step"] in STEPS and run["status"] in ("pending", "running"), run
            assert run["note"].startswith(f"interrupted at step {run['step']}"), run
        else:
            assert run["step"] == 0 and run["note"] == "", run
    assert cli.main(["status", str(directory)]) == 0
    text = capsys.readouterr().out
    assert "0 running" in text and "4 pending" in text
    assert text.count("interrupted at step") == len(groups[group])
    # The index says so too, as the next process writes it from the records.
    sweep.plan(QUICK, directory, FAST).write_index()
    assert set(statuses(directory).values()) == {"pending"}

    # The next sweep takes the dead process's claim over at once and finishes every run, as one
    # uninterrupted process does.
    started_at = time.monotonic()
    assert sweep.run_sweep(QUICK, directory, FAST, quiet=True) == 0
    assert time.monotonic() - started_at < 60
    assert_same_records(directory, inline)
    assert set(statuses(directory).values()) == {"completed"}
    assert cli.main(["status", str(directory)]) == 0
    assert "4 done (4 completed), 0 running, 0 failed, 0 pending" in capsys.readouterr().out


@pytest.mark.slow
def test_a_waiting_sweep_takes_over_from_a_killed_holder_at_its_checkpoint(tmp_path, inline):
    """Sweep A trains a group; sweep B, started meanwhile, leaves it to A and trains the other;
    A is killed after its first checkpoint; B takes A's group over and resumes it there."""
    directory, log = tmp_path / "takeover", tmp_path / "a.err"
    # 3 s checkpoint saves: A holds its group for seconds after its first checkpoint.
    process = start_sweep(directory, log, GATELAB_TEST_SAVE_DELAY="3.0")
    outcome: list = []

    def sweep_b() -> None:
        try:
            outcome.append(sweep.run_sweep(QUICK, directory, FAST, quiet=True))
        except BaseException as error:  # noqa: BLE001  (the test reports it)
            outcome.append(error)

    thread = threading.Thread(target=sweep_b, daemon=True)
    try:
        wait_for(started(process, directory, log), timeout=120, what="A's first line")
        groups = groups_of(directory)
        (group,) = [
            g for g, names in groups.items() if (directory / names[0] / "metrics.jsonl").exists()
        ]
        thread.start()
        checkpoint = records.group_dir(directory, group) / "checkpoints" / "50"
        wait_for(checkpoint.is_dir, timeout=60, what="A's first checkpoint")  # finalized
        assert process.poll() is None
        first_lines = {
            name: records.read_metrics(directory / name / "metrics.jsonl")[0]
            for name in groups[group]
        }
        shown = {g.name: g for g in status_lib.collect(directory)}
        assert shown[group].holder["pid"] == process.pid
        assert {r.state for r in shown[group].runs} == {"running"}
    finally:
        kill(process)
    thread.join(timeout=120)
    assert not thread.is_alive(), "B did not finish"
    assert outcome == [0]
    assert_same_records(directory, inline)
    for name, line in first_lines.items():
        # A's line of step 50 is kept as A wrote it (its timing too): B resumed from step 50.
        assert records.read_metrics(directory / name / "metrics.jsonl")[0] == line, name


class _Stop(BaseException):
    """Stops a sweep from inside its training (no ``except Exception`` catches it)."""


def test_the_index_says_running_while_the_sweep_trains_a_group(tmp_path, monkeypatch):
    seen: list[dict[str, str]] = []

    def log(self, row):  # the first metrics line: the group is claimed and training
        seen.append(statuses(tmp_path))
        raise _Stop

    monkeypatch.setattr(records.RunRecord, "log", log)
    with pytest.raises(_Stop):
        sweep.run_sweep(QUICK, tmp_path, FAST, quiet=True)
    (first, *_), _ = sweep.plan(QUICK, tmp_path, FAST).groups
    assert seen[0][first.name] == "running"


# --------------------------------------------------------------------------------------------------
# Submitit: jobs on this machine, and a SLURM array through a fake sbatch.
# --------------------------------------------------------------------------------------------------


def test_local_executor_jobs_give_the_records_of_one_process(tmp_path, inline, capsys):
    directory = tmp_path / "local"
    argv = ["sweep", QUICK, "--workdir", str(directory), *[f"--set={s}" for s in FAST]]
    assert cli.main([*argv, "--executor", "local", "--jobs", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "submitted as 2 local job(s)" in out and "4 done" in out
    assert_same_records(directory, inline)
    jobs = directory / cluster.JOBS
    assert len(list(jobs.glob("*_submitted.pkl"))) == 2
    assert len(list(jobs.glob("*_result.pkl"))) == 2
    logs = sorted(jobs.glob("*_log.err"))
    assert len(logs) == 2 and len(list(jobs.glob("*_log.out"))) == 2
    for log in logs:
        assert "completed successfully" in log.read_text(), log.read_text()[-2000:]
    assert cli.main(["status", str(directory), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    states = {run["name"]: run["state"] for g in shown["groups"] for run in g["runs"]}
    assert states == dict.fromkeys(statuses(inline), "done")
    assert all(g["counts"]["done"] == 2 and g["holder"] is None for g in shown["groups"])


FAKE_SBATCH = """\
#!/bin/bash
cp "${{@: -1}}" {copy}
echo "$@" >> {calls}
echo "Submitted batch job 4242"
"""


def test_slurm_parameters_reach_the_submission_file(tmp_path, monkeypatch, capsys):
    bin_dir, directory = tmp_path / "bin", tmp_path / "study"
    bin_dir.mkdir()
    copy, calls = tmp_path / "submission.sh", tmp_path / "calls"
    (bin_dir / "sbatch").write_text(FAKE_SBATCH.format(copy=copy, calls=calls))
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit looks for it, never runs it
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    argv = ["sweep", QUICK, "--workdir", str(directory), *[f"--set={s}" for s in FAST]]
    argv += ["--executor", "slurm", "--jobs", "3", "--slurm-partition", "gpu", "--slurm-gpus", "2"]
    argv += ["--slurm-time", "90", "--slurm-cpus", "4", "--no-wait"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "4242_0, 4242_1, 4242_2" in out and "gatelab status" in out

    assert len(calls.read_text().splitlines()) == 1  # one array, one sbatch
    text = copy.read_text()
    flags = {line for line in text.splitlines() if line.startswith("#SBATCH")}
    for flag in (
        "--partition=gpu",
        "--gpus-per-node=2",
        "--time=90",
        "--cpus-per-task=4",
        "--array=0-2%3",
        "--nodes=1",
        "--ntasks-per-node=1",
        f"--job-name=gatelab-{directory.name}",
    ):
        assert f"#SBATCH {flag}" in flags, (flag, sorted(flags))
    assert any(line.startswith("#SBATCH --signal=") for line in flags)  # preemption -> requeue
    command = text.strip().splitlines()[-1]
    assert command.startswith("srun ") and "-m submitit.core._submit" in command
    assert command.endswith(str(directory / cluster.JOBS)), command

    # Nothing trained, every run listed as pending for `gatelab status`.
    assert statuses(directory) == dict.fromkeys(
        ["vanilla__s0", "vanilla__s1", "NFG__s0", "NFG__s1"], "pending"
    )
    assert not list(directory.glob("*/metrics.jsonl")) and not (directory / "groups").exists()

    # The pickled calls: one ShardJob of 3 shards, task i calling it with i.
    from submitit.core.utils import DelayedSubmission

    pickles = sorted((directory / cluster.JOBS).glob("*_submitted.pkl"))
    assert [p.name for p in pickles] == [f"4242_{i}_submitted.pkl" for i in range(3)]
    for index, path in enumerate(pickles):
        call = DelayedSubmission.load(path)
        job = call.function
        assert isinstance(job, cluster.ShardJob) and isinstance(
            job, cluster.submitit.helpers.Checkpointable
        )
        assert call.args == (index,) and call.kwargs == {}
        assert (job.count, job.target, job.overrides) == (3, QUICK, tuple(FAST))
        assert job.directory == str(directory) and job.stage == "all" and not job.pin
    options = cluster.ClusterOptions(
        executor="slurm", jobs=3, partition="gpu", gpus=2, time_min=90, cpus=4
    )
    assert cluster.executor_parameters(options, "n") == {
        "timeout_min": 90,
        "name": "n",
        "slurm_array_parallelism": 3,
        "slurm_partition": "gpu",
        "gpus_per_node": 2,
        "cpus_per_task": 4,
        "tasks_per_node": 1,
        "nodes": 1,
    }
    limited = cluster.ClusterOptions(executor="slurm", jobs=3, max_running=2)
    assert cluster.executor_parameters(limited, "n")["slurm_array_parallelism"] == 2
    local = cluster.ClusterOptions(executor="local", jobs=3, time_min=7)
    assert cluster.executor_parameters(local, "n") == {"timeout_min": 7, "name": "n"}


# --------------------------------------------------------------------------------------------------
# Command-line errors and gatelab status.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, flag",
    [
        (["--jobs", "2"], "--jobs"),
        (["--shard", "0/2", "--executor", "local"], "--shard"),
        (["--jobs", "0", "--executor", "local"], "--jobs"),
        (["--slurm-time", "0", "--executor", "slurm"], "--slurm-time"),
        (["--slurm-cpus", "-1", "--executor", "local"], "--slurm-cpus"),
        (["--slurm-partition", "gpu"], "--slurm-partition"),  # inline ignores nothing silently
        (["--no-wait"], "--wait"),
    ],
)
def test_sweep_job_flag_errors_exit_2_and_write_nothing(tmp_path, capsys, flags, flag):
    directory = tmp_path / "x"
    assert cli.main(["sweep", QUICK, "--workdir", str(directory), *flags]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gatelab sweep: error: "), captured.err
    assert flag in lines[0]
    assert captured.out == "" and not directory.exists()


def test_a_negative_max_running_is_refused():
    with pytest.raises(ValueError, match="--slurm-max-running"):
        cluster.ClusterOptions(executor="slurm", jobs=3, max_running=-1).check()


def test_slurm_without_srun_is_a_clear_error_and_writes_nothing(tmp_path, monkeypatch, capsys):
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no srun, no sbatch
    directory = tmp_path / "x"
    argv = ["sweep", QUICK, "--workdir", str(directory), "--executor", "slurm", "--no-wait"]
    try:
        code = cli.main(argv)
    finally:
        written = directory.exists()
    assert code == 2 and "srun" in capsys.readouterr().err
    assert not written


def test_an_unknown_executor_is_an_argparse_error(tmp_path, capsys):
    directory = tmp_path / "x"
    with pytest.raises(SystemExit) as exit_:
        cli.main(["sweep", QUICK, "--workdir", str(directory), "--executor", "slurmm"])
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--executor" in last and "invalid choice: 'slurmm'" in last
    assert not directory.exists()


def test_status_of_a_directory_without_a_sweep_exits_2(tmp_path, capsys):
    assert cli.main(["status", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"{tmp_path} holds no sweep" in lines[0], lines
    assert list(tmp_path.iterdir()) == []  # status reads only
    assert cli.main(["status", str(tmp_path / "missing")]) == 2


def test_status_shows_failures_and_the_holder_of_a_claimed_group(tmp_path, capsys):
    directory = tmp_path / "s"
    work = sweep.plan(QUICK, directory, FAST)
    work.prepare()  # the index, every run pending
    (held, *_), (failed, *_) = work.groups
    error = "ValueError: the first line\n  and more detail"
    (directory / failed.name).mkdir()
    records.write_json_atomic(
        directory / failed.name / "summary.json",
        records.Summary.failed(error, "Traceback (most recent call last): ...", seed=0).to_json(),
    )
    lock = records.group_dir(directory, held.group) / locks.LOCK
    with locks.claim(lock):
        shown = {g.name: g for g in status_lib.collect(directory)}
        assert shown[held.group].holder["pid"] == os.getpid()
        assert {r.state for r in shown[held.group].runs} == {"running"}
        assert shown[failed.group].holder is None
        states = {r.name: (r.state, r.error) for r in shown[failed.group].runs}
        assert states[failed.name] == ("failed", "ValueError: the first line")
        assert {s for name, s in states.items() if name != failed.name} == {("pending", "")}
        assert cli.main(["status", str(directory)]) == 0
        text = capsys.readouterr().out
    assert "4 runs in 2 groups: 0 done, 2 running, 1 failed, 1 pending" in text
    (row,) = [line for line in text.splitlines() if line.startswith(held.group)]
    assert f"{socket.gethostname()} pid {os.getpid()}" in row
    assert f"  {failed.name}: ValueError: the first line" in text.splitlines()
    assert "and more detail" not in text
    for run in work.groups[0]:
        (line,) = [line for line in text.splitlines() if line.split()[:1] == [run.name]]
        assert line.split()[1] == "running"
    # Released: nobody trains it, its runs are pending again.
    shown = {g.name: g for g in status_lib.collect(directory)}
    assert shown[held.group].holder is None
    assert {r.state for r in shown[held.group].runs} == {"pending"}
