"""A thin wrapper of orbax's CheckpointManager: the whole train state plus a JSON note.

Saves are asynchronous (training goes on while the arrays are written) and atomic: orbax writes
into a temporary directory and renames it when complete, so a process killed mid-save leaves the
previous checkpoint as the latest one.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp

__all__ = ["Checkpoints"]

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
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, enable_async_checkpointing=True, create=True
            ),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, note: dict[str, Any]) -> None:
        """Starts saving ``state`` (a pytree of arrays) and ``note`` (JSON) at ``step``."""
        items = {"state": ocp.args.StandardSave(state), "note": ocp.args.JsonSave(note)}
        delay = float(os.environ.get(_DELAY_ENV, "0") or 0)
        if delay:
            items["delay"] = _DelayArgs(delay)
        self.manager.save(step, args=ocp.args.Composite(**items))

    def restore(self, step: int, abstract_state: Any = None) -> tuple[Any, dict[str, Any]]:
        """The state (shaped like ``abstract_state``, or as saved) and note saved at ``step``."""
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), note=ocp.args.JsonRestore()
            ),
        )
        return restored["state"], restored["note"]

    def note(self, step: int) -> dict[str, Any]:
        """Only the JSON note saved at ``step``."""
        return self.manager.restore(step, args=ocp.args.Composite(note=ocp.args.JsonRestore()))[
            "note"
        ]

    def wait(self) -> None:
        """Blocks until the last save is on disk."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
