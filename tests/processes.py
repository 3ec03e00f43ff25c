"""The processes of a test (Linux's /proc): for the tests that kill a parent and check its
workers went with it."""

import os
from pathlib import Path

PROC = Path("/proc/self/stat").exists()  # Linux


def children(parent: int) -> set[int]:
    """The pids whose parent is ``parent`` (Linux's /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == parent:
            found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cores(pid: int) -> set[int]:
    """The cores ``pid`` may run on (none once it is gone)."""
    try:
        return os.sched_getaffinity(pid)
    except OSError:
        return set()
