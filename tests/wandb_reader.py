"""Reads the history back from an offline W&B run file (``run-<id>.wandb``).

The file is W&B's header (``:W&B``, magic, version: 7 bytes) followed by a LevelDB-style log:
32 KiB blocks of records, each ``crc32c (4) | length (2, LE) | type (1) | data``, where type
1 is a whole record and 2/3/4 the first/middle/last fragment of one. Each record's data is a
``wandb_internal_pb2.Record`` protobuf. Written here so the test does not trust W&B's own reader.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
HEADER = 7


def records(path: Path):
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", "not a W&B run file"
    position, pending = HEADER, b""
    while position + HEADER <= len(data):
        left_in_block = BLOCK - position % BLOCK
        if left_in_block < HEADER:  # the block's tail is padding
            position += left_in_block
            continue
        length, kind = struct.unpack("<HB", data[position + 4 : position + 7])
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind == 0 and length == 0:
            continue
        if kind == 1:
            pending = chunk
        elif kind == 2:
            pending = chunk
            continue
        elif kind == 3:
            pending += chunk
            continue
        elif kind == 4:
            pending += chunk
        record = wandb_internal_pb2.Record()
        record.ParseFromString(pending)
        yield record
        pending = b""


def history(path: Path) -> list[dict]:
    """Every logged history row as ``{key: value}`` (``_step`` included)."""
    rows = []
    for record in records(path):
        if record.WhichOneof("record_type") != "history":
            continue
        row = {}
        for item in record.history.item:
            key = item.key or "/".join(item.nested_key)
            row[key] = json.loads(item.value_json)
        rows.append(row)
    return rows


def run_file(workdir: Path) -> Path:
    """The single ``run-*.wandb`` under ``workdir/wandb``."""
    files = sorted(Path(workdir).glob("wandb/*/run-*.wandb"))
    assert files, f"no W&B run file under {workdir}/wandb"
    return files[-1]


def finished(path: Path, timeout: float = 60.0) -> Path:
    """``path`` once W&B's service has written its ``exit`` record: ``run.finish()`` can return
    before the service has flushed an offline run's file (seen under load)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            if any(r.WhichOneof("record_type") == "exit" for r in records(path)):
                return path
        except (AssertionError, struct.error):  # not even the header yet
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} has no exit record after {timeout} s")
        time.sleep(0.2)
