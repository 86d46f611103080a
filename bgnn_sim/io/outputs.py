"""Rules for writing outputs: never replace a user's file unless asked, never leave half a file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from bgnn_sim.errors import OutputExistsError


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
