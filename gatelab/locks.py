"""Claims on a directory of runs, so that many processes can share one.

A group is claimed before it is trained: an exclusive ``flock`` on ``DIR/groups/<group>/lock``,
held for as long as the group trains. Two sweeps started on one directory, two shards of a
cluster job on a shared filesystem, or the same command started twice by mistake, never train a
group twice: the second finds the claim taken, moves on to other groups, and comes back to wait
for it. The kernel releases the lock when its process dies however it dies (SIGKILL included),
so a claim whose owner is gone is taken over at once, never waited on. The lock file also says
who holds it (host, pid, start time, SLURM job), which ``gatelab status`` shows; the file
itself stays behind, and only the lock on it means anything.

On NFS, ``flock`` is carried by the server's lock manager (Linux >= 2.6.12); a lock held by a
machine that crashed is released when the server notices (its lease, typically 90 s).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["Busy", "claim", "holder", "owner"]

LOCK = "lock"  # a group's lock file, in its directory
# ``holder`` tests a lock by taking a shared one for an instant; a claim that meets only that
# probe tries again shortly before it concludes that the group is taken.
_PROBE_TRIES, _PROBE_S = 5, 0.02


class Busy(RuntimeError):
    """A group is claimed by another process; ``owner`` says which (as ``owner()`` returns)."""

    def __init__(self, path: Path, owner_info: dict[str, Any]):
        self.path = Path(path)
        self.owner = owner_info
        super().__init__(f"{self.path.parent.name} is being trained by {describe(owner_info)}")


def owner() -> dict[str, Any]:
    """This process, as a lock file records it."""
    info: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    if job:
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        info["slurm_job"] = f"{job}_{task}" if task else job
    return info


def describe(info: dict[str, Any]) -> str:
    """``host pid 123 (SLURM job 45_1) since 12:03:04``, or ``another process``."""
    if not info:
        return "another process"
    text = f"{info.get('host', '?')} pid {info.get('pid', '?')}"
    if info.get("slurm_job"):
        text += f" (SLURM job {info['slurm_job']})"
    if isinstance(info.get("since"), (int, float)):
        text += " since " + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["since"]))
    return text


def _read(handle) -> dict[str, Any]:
    handle.seek(0)
    try:
        data = json.loads(handle.read() or "{}")
    except ValueError:  # being written by its new holder
        return {}
    return data if isinstance(data, dict) else {}


@contextlib.contextmanager
def claim(
    path: str | Path, *, wait: bool = False, on_wait=None, poll_s: float = 1.0
) -> Iterator[None]:
    """Holds an exclusive lock on the file ``path`` (created) for the ``with`` block.

    Args:
        path: the lock file.
        wait: block until the holder is done (or dies); otherwise raise ``Busy`` at once.
        on_wait: called once with the holder's info before waiting.
        poll_s: how often a wait tries again (a blocking ``flock`` cannot be interrupted by
            Ctrl-C on every platform; polling can).

    Raises:
        Busy: when another process holds it and ``wait`` is false.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115  (held open for as long as the lock is)
    try:
        told = False
        tries = 0
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                tries += 1
                if tries <= _PROBE_TRIES:  # perhaps only ``holder``'s instant probe: again
                    time.sleep(_PROBE_S)
                    continue
                if not wait:
                    raise Busy(path, _read(handle)) from None
                if not told and on_wait is not None:
                    on_wait(_read(handle))
                told = True
                time.sleep(poll_s)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(owner()))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()  # released: nobody holds it
            handle.flush()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()


def holder(path: str | Path) -> dict[str, Any] | None:
    """Who holds the lock file ``path`` now (``{}`` if it does not say), or ``None`` when nobody
    does. Reads only: it never creates the file, and takes the lock only to test it."""
    path = Path(path)
    try:
        handle = open(path)  # noqa: SIM115
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(handle)
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return None
