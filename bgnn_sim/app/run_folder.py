"""The run folder of `bgnn simulate`: checked before any work, replaced only where it holds a
previous run of the command.

A previous run is recognised by its trajectory's own metadata (`source = "bgnn simulate"`,
written when the file is created, so a killed run counts too), never by file names alone: a
user's trajectory.h5 converted from LIGGGHTS has the same name and must survive `--force`.
"""

from __future__ import annotations

import re
import shutil
from fnmatch import fnmatch
from pathlib import Path

from bgnn_sim.errors import OutputError, OutputExistsError, TrajectoryError
from bgnn_sim.io.hdf5 import TrajectoryFile
from bgnn_sim.io.outputs import check_folder_writable

TRAJECTORY = "trajectory.h5"
SNAPSHOT = "snapshot.png"
RUN_OUTPUTS = (TRAJECTORY, "paraview", "report", SNAPSHOT, "summary.json", "config.toml")
SOURCE = "bgnn simulate"
# What the sub-folders of a run hold (bgnn_sim.io.vtk, bgnn_sim.analysis.report).
_FOLDER_FILES = {
    "paraview": ("particles.pvd", "walls.pvd", "particles_*.vtp", "walls_*.vtp"),
    "report": ("metrics.json", "report.md", "*.png"),
}


def previous_run(out: Path, force: bool) -> list[Path]:
    """The outputs of a previous run in `out`, to be replaced (only with `force`).

    Raises:
        OutputError: `out` cannot be written (read-only, a file, under a file).
        OutputExistsError: `out` holds anything but a previous run of `bgnn simulate`, or holds
            one and `force` is False.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; give a new or empty folder")
    check_folder_writable(out)
    present = sorted(out.iterdir()) if out.is_dir() else []
    if not present:
        return []
    foreign = [path for path in present if not _is_run_output(path)]
    if foreign:
        raise OutputExistsError(f"{out} holds other files ({foreign[0].name}); give a new or "
                                "empty folder")  # fmt: skip
    trajectories = [path for path in present if path.suffix == ".h5"]
    theirs = [path for path in trajectories if not written_by_simulate(path)]
    if theirs or not trajectories:
        what = f"{theirs[0].name}, which bgnn simulate did not write" if theirs else (
            "outputs without the trajectory of a bgnn simulate run")  # fmt: skip
        raise OutputExistsError(f"{out} holds {what}; give a new or empty folder (--force "
                                "replaces only a previous run)")  # fmt: skip
    if not force:
        raise OutputExistsError(f"{out} holds a previous run; use --force to replace it")
    return present


def written_by_simulate(path: Path) -> bool:
    """Whether `path` is a trajectory file that `bgnn simulate` created."""
    try:
        with TrajectoryFile(path) as trajectory:  # a killed run's file reads too
            metadata = trajectory.attrs
    except TrajectoryError:  # not HDF5, not a trajectory, corrupt metadata
        return False
    return isinstance(metadata, dict) and metadata.get("source") == SOURCE


def clear(out: Path, previous: list[Path]) -> Path:
    """Remove the previous outputs and make sure the run folder exists."""
    for path in previous:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def _is_run_output(path: Path) -> bool:
    """A name a run writes, and for its sub-folders nothing but the files they hold."""
    name = path.name
    if name in _FOLDER_FILES:
        patterns = _FOLDER_FILES[name]
        return path.is_dir() and all(
            child.is_file() and any(fnmatch(child.name, p) for p in patterns)
            for child in path.iterdir()
        )
    return name in RUN_OUTPUTS or re.fullmatch(r"trajectory_\d+\.h5", name) is not None
