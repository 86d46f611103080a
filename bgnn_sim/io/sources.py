"""Open what a user points at: a trajectory file or LIGGGHTS dumps."""

from __future__ import annotations

from pathlib import Path

from bgnn_sim.geometry.mesh import load_walls
from bgnn_sim.io.hdf5 import TRAJECTORY_SUFFIXES, TrajectoryFile
from bgnn_sim.io.liggghts import read_dumps
from bgnn_sim.trajectory import Trajectory


def open_source(
    source: str | Path, dem_dt: float, mesh: Path | None = None
) -> TrajectoryFile | Trajectory:
    """A trajectory file (lazy), or LIGGGHTS dumps (files or a glob; static walls from `mesh`).

    Both results have `.read(start, stop)` and what `state_from_trajectory` needs.
    """
    if Path(source).suffix.lower() in TRAJECTORY_SUFFIXES:
        return TrajectoryFile(source)
    trajectory = read_dumps(str(source), dem_dt=dem_dt)
    if mesh is not None:
        trajectory.walls = load_walls(mesh)
    return trajectory
