"""The dataset cache: arrays built once, kept as ``.npz`` under ``$GATELAB_DATA`` (docs/design.md).

A cache file is ``<data_dir>/<name>.npz`` and holds the arrays a builder returned plus two
bookkeeping entries: ``__version__`` (the builder's version key: the format version of the gatelab
code and the version of the package the data come from) and ``__keys__`` (the names of the arrays).
A file whose version key differs (stale), that does not open as a zip of ``.npy`` files, whose
entries fail their CRC, or that lacks an array it lists (corrupted) is rebuilt, never trusted.
Nothing is ever pickled: files are read with ``allow_pickle=False``, so object arrays cannot load.
Writes are atomic (a temporary file in the same folder, then ``os.replace``), so an interrupted
build or two processes building at once never leave a half-written file behind.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

__all__ = ["data_dir", "load_or_build", "require", "package_folder", "package_version"]

_VERSION_KEY = "__version__"
_KEYS_KEY = "__keys__"


def data_dir() -> Path:
    """The cache folder: ``$GATELAB_DATA``, or ``~/.cache/gatelab`` when it is unset."""
    return Path(os.environ.get("GATELAB_DATA") or Path.home() / ".cache" / "gatelab").expanduser()


def require(module: str, package: str | None = None) -> ModuleType:
    """Imports ``module``, or raises an ``ImportError`` that names the pip package to install.

    The dataset packages are default dependencies of gatelab; this only turns a broken
    environment into an actionable message.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        package = package or module
        raise ImportError(
            f"gatelab needs the '{package}' package for this task: pip install {package} "
            f"(it is part of gatelab's default install)"
        ) from error


def package_folder(module: str, package: str | None = None) -> Path:
    """The folder of an installed package, found without importing (and running) its code."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        package = package or module
        raise ImportError(
            f"gatelab needs the '{package}' package for this task: pip install {package} "
            f"(it is part of gatelab's default install)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def package_version(package: str) -> str:
    """The installed version of a distribution, for version keys; an ``ImportError`` if absent."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError as error:
        raise ImportError(
            f"gatelab needs the '{package}' package for this task: pip install {package} "
            f"(it is part of gatelab's default install)"
        ) from error


def _read(path: Path, version: str) -> dict[str, np.ndarray] | None:
    """The arrays of a valid cache file, or ``None`` when it is missing, stale or corrupted."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            if str(archive[_VERSION_KEY]) != version:
                return None
            keys = [str(key) for key in archive[_KEYS_KEY]]
            # Reading every member to the end makes zipfile check its CRC-32.
            return {key: archive[key] for key in keys}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def _write(path: Path, version: str, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {key: np.asarray(value) for key, value in arrays.items()}
    for key, value in payload.items():
        if value.dtype == object:
            raise TypeError(f"cache array '{key}' has dtype object; it would need pickle")
    payload[_VERSION_KEY] = np.asarray(version)
    payload[_KEYS_KEY] = np.asarray(sorted(arrays), dtype=str)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **payload)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide the cache from other users
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_or_build(
    name: str, version: str, build: Callable[[], dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """The cached arrays called ``name``, built (and cached) first when needed.

    Args:
        name: the file stem, unique per dataset and per build argument (``chorales-first16``).
        version: the version key; a cache written under another key is stale and rebuilt.
            Bump the gatelab part whenever the builder's output changes.
        build: returns the arrays (no object arrays); called only on a miss.

    Returns:
        ``{key: array}`` as ``build`` returned them (NumPy arrays, read fully into memory).
    """
    path = data_dir() / f"{name}.npz"
    arrays = _read(path, version)
    if arrays is not None:
        return arrays
    # One line, so a first run that pauses for a dataset says why.
    print(f"gatelab: building the '{name}' dataset cache at {path} (once)", file=sys.stderr)
    start = time.perf_counter()
    arrays = build()
    _write(path, version, arrays)
    print(f"gatelab: '{name}' built in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return {key: np.asarray(value) for key, value in arrays.items()}
