"""Rules for writing outputs: never replace a user's file unless asked, never leave half a file,
find out that a folder cannot be written before the work rather than after it."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bgnn_sim.errors import OutputError, OutputExistsError


def check_writable(path: Path, force: bool) -> None:
    """Refuse to replace an existing output unless `force` (the CLI's --force)."""
    if Path(path).exists() and not force:
        raise OutputExistsError(f"{path} exists; pass --force to overwrite it")


def write_atomically(path: Path, write: Callable[[Path], None], force: bool) -> None:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it into place.

    A failure (or a kill) while writing leaves any previous `path` untouched.
    """
    path = Path(path)
    check_writable(path, force)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def check_folder_writable(folder: Path) -> None:
    """OutputError unless files can be made in `folder`, or, where it does not exist yet, in
    the nearest existing folder above it (where it would be created).

    Tried with a temporary file, not judged from permission bits: a read-only file system and
    root's overrides then count as they will when writing.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot write {folder}: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write in {existing}: {exc.strerror}") from None


def check_output_file(path: Path, force: bool) -> None:
    """Before any work: `path` may be written (see check_writable) in an existing, writable
    folder."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give the name of a file to write")
    check_writable(path, force)
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {path}: the folder {path.parent} does not exist")
    check_folder_writable(path.parent)


def strict_json(value) -> str:
    """`value` as strict JSON (indented, newline-terminated): NaN and infinities become null,
    which every JSON parser reads; other objects (paths) their str."""
    return json.dumps(_finite(value), indent=2, allow_nan=False, default=str) + "\n"


def _finite(value):
    if isinstance(value, (np.generic, np.ndarray)):  # numpy scalars and arrays as plain values
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value
