"""A thin wrapper of orbax's CheckpointManager: the whole train state plus a JSON note.

Saves are asynchronous (training goes on while the arrays are written) and atomic: orbax writes
into a temporary directory and renames it when complete, so a process killed mid-save leaves the
previous checkpoint as the latest one (and the temporary directory is removed when the group
starts again). A checkpoint whose files were damaged after it was written (a crashed file
server, a truncated copy) is set aside by ``restore_latest``, which resumes from the newest one
that restores.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from gatelab.records import CheckpointError

__all__ = ["Checkpoints", "CheckpointError", "first_line"]


# Tests make "killed while a save is being written" reachable by slowing saves down.
_DELAY_ENV = "GATELAB_TEST_SAVE_DELAY"


class _DelayHandler(ocp.CheckpointHandler):
    """Sleeps inside a save (only when the test hook asks for it); restores nothing."""

    def save(self, directory, args):
        time.sleep(args.seconds)
        (Path(directory) / "delayed").write_text(str(args.seconds))

    def restore(self, directory, args=None):
        return None


@ocp.args.register_with_handler(_DelayHandler, for_save=True, for_restore=True)
@dataclasses.dataclass
class _DelayArgs(ocp.args.CheckpointArgs):
    seconds: float = 0.0


class Checkpoints:
    """Checkpoints of one group under ``directory``.

    Args:
        directory: where the step directories go (created).
        keep: how many of the latest checkpoints to keep.
    """

    def __init__(self, directory: Path, keep: int = 2):
        self.directory = Path(directory).absolute()
        self.keep = keep
        self.manager = self._open()

    def _open(self) -> ocp.CheckpointManager:
        return ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=self.keep,
                enable_async_checkpointing=True,
                create=True,
                cleanup_tmp_directories=True,  # what a kill or a full disk left half-written
            ),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, note: dict[str, Any]) -> None:
        """Starts saving ``state`` (a pytree of arrays) and ``note`` (JSON) at ``step``.

        Raises:
            OSError: ``ENOSPC`` when the disk has no room for another checkpoint (the size of the
                last one, or for the first the state's bytes and orbax's metadata), before any
                file is written: orbax's own failure on a full disk comes from its background
                threads, late and noisily.
        """
        self.manager.wait_until_finished()  # as orbax's save would: the last save is complete
        self._check_room(state)
        items = {"state": ocp.args.StandardSave(state), "note": ocp.args.JsonSave(note)}
        delay = float(os.environ.get(_DELAY_ENV, "0") or 0)
        if delay:
            items["delay"] = _DelayArgs(delay)
        self.manager.save(step, args=ocp.args.Composite(**items))

    def _check_room(self, state: Any) -> None:
        latest = self.manager.latest_step()
        if latest is not None:
            need = _size(self.directory / str(latest))
        else:  # the arrays, and the metadata orbax writes beside them (~80 KB for small states)
            need = sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(state)) * 1.25 + 2**17
        free = shutil.disk_usage(self.directory).free
        if free < 1.1 * need:
            raise OSError(
                errno.ENOSPC,
                f"No space left on device: {free:,} bytes free, a checkpoint takes about "
                f"{int(need):,}",
                str(self.directory),
            )

    def restore(self, step: int, abstract_state: Any = None) -> tuple[Any, dict[str, Any]]:
        """The state (shaped like ``abstract_state``, or as saved) and note saved at ``step``."""
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), note=ocp.args.JsonRestore()
            ),
        )
        return restored["state"], restored["note"]

    def restore_latest(
        self, abstract_state: Any, check: Callable[[dict[str, Any]], None] = lambda note: None
    ) -> tuple[int, Any, dict[str, Any]] | None:
        """``(step, state, note)`` of the newest checkpoint that restores, or ``None`` without any.

        A newer checkpoint that fails to restore (a truncated or missing file, no metadata) is set
        aside as ``<step>.corrupt`` (renamed, never deleted) with one warning that names it and
        why. ``check(note)`` may raise for a checkpoint that restores but is not this group's
        (that error is the caller's, not a damage).

        Raises:
            CheckpointError: when none restores (then nothing is renamed).
        """
        damaged = []
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                note = self.note(step)
            except Exception as error:  # noqa: BLE001  (any damage: try the one before)
                damaged.append((step, error))
                continue
            check(note)
            try:
                state, note = self.restore(step, abstract_state)
            except Exception as error:  # noqa: BLE001
                damaged.append((step, error))
                continue
            if damaged:
                self._set_aside(damaged, step)
            return step, state, note
        if damaged:
            raise CheckpointError(
                f"no checkpoint in {self.directory} restores ({_reasons(damaged)}); nothing was "
                "changed: move the directory away to start the group from scratch"
            )
        return None

    def _set_aside(self, damaged: list[tuple[int, Exception]], restored: int) -> None:
        """Renames the damaged step directories and reopens the manager without them."""
        self.manager.close()
        names = []
        for step, _ in damaged:
            target = self.directory / f"{step}.corrupt"
            count = 1
            while target.exists():
                target, count = self.directory / f"{step}.corrupt-{count}", count + 1
            os.replace(self.directory / str(step), target)
            names.append(target.name)
        self.manager = self._open()
        warnings.warn(
            f"checkpoints in {self.directory} that do not restore were set aside as "
            f"{', '.join(names)} ({_reasons(damaged)}); resuming from step {restored}",
            stacklevel=3,
        )

    def note(self, step: int) -> dict[str, Any]:
        """Only the JSON note saved at ``step``."""
        return self.manager.restore(step, args=ocp.args.Composite(note=ocp.args.JsonRestore()))[
            "note"
        ]

    def close(self) -> None:
        """Waits for the last save and closes; a save that failed raises its error here, once
        the manager is closed (its threads must not outlive the process's event loop)."""
        try:
            self.manager.wait_until_finished()
        finally:
            try:
                self.manager.close()
            except Exception:  # noqa: BLE001, S110  (the save's own error is the one to raise)
                pass


def first_line(error: BaseException) -> str:
    """``<type>: <first line of the message>``, at most 300 characters (orbax's and
    tensorstore's errors run to pages)."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def _reasons(damaged: list[tuple[int, Exception]]) -> str:
    return "; ".join(f"step {step}: {first_line(error)}" for step, error in damaged)


def _size(directory: Path) -> int:
    """The disk space the files under ``directory`` take (allocated blocks, not their lengths:
    a checkpoint is many small files)."""
    return sum(
        os.stat(os.path.join(root, name)).st_blocks * 512
        for root, _, names in os.walk(directory)
        for name in names
    )
