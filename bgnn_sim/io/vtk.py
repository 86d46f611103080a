"""ParaView export: a `.vtp` file per frame for the particles and the walls, and `.pvd`
collections that give each file its physical time.

Particles and walls are two collections (`particles.pvd`, `walls.pvd`) so that ParaView can draw
them differently (spheres from a Glyph or Point Gaussian on the particles, a translucent surface
for the walls). A wall file is written only when the walls' pose changes: static walls are one
file referenced at every time.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import pyvista as pv
from vtkmodules.util.numpy_support import numpy_to_vtk

from bgnn_sim.errors import OutputError, OutputExistsError
from bgnn_sim.geometry.wall import Wall
from bgnn_sim.io.hdf5 import Frame, TrajectoryFile
from bgnn_sim.io.outputs import check_folder_writable

PARTICLES_PVD = "particles.pvd"
WALLS_PVD = "walls.pvd"
_OUR_FILES = ("particles_*.vtp", "walls_*.vtp", PARTICLES_PVD, WALLS_PVD)


def export_vtk(
    trajectory: TrajectoryFile, out_dir: str | Path, every: int = 1, force: bool = False
) -> Path:
    """Write the ParaView series of a trajectory, reading one frame at a time.

    Args:
        trajectory: an open trajectory file.
        out_dir: folder for the series (created; must be empty of a previous series unless force).
        every: write every k-th frame.
        force: replace a previous series in `out_dir`.

    Returns:
        The path of `particles.pvd`.
    """
    out_dir = Path(out_dir)
    _prepare_dir(out_dir, force)
    particle_entries, wall_entries = [], []
    wall_file, wall_key = None, None
    for index in range(0, trajectory.n_frames, every):
        frame = trajectory.frame(index)
        velocities = frame.velocities
        if velocities is None:
            velocities = _finite_difference_velocity(trajectory, index, frame)
        name = f"particles_{index:06d}.vtp"
        particles_polydata(trajectory, frame, velocities).save(out_dir / name)
        particle_entries.append((frame.time, name))
        key = _wall_key(trajectory.walls, frame.time)
        if key != wall_key:
            wall_file, wall_key = f"walls_{index:06d}.vtp", key
            walls_polydata(trajectory.walls, frame.time).save(out_dir / wall_file)
        wall_entries.append((frame.time, wall_file))
    _write_pvd(out_dir / WALLS_PVD, wall_entries)
    _write_pvd(out_dir / PARTICLES_PVD, particle_entries)
    return out_dir / PARTICLES_PVD


def particles_polydata(
    trajectory: TrajectoryFile, frame: Frame, velocities: np.ndarray
) -> pv.PolyData:
    """Active particles of one frame as points with id, type, velocity and radius arrays (none
    in a frame that every particle has left, the arrays then empty)."""
    active = frame.active
    cloud = pv.PolyData(np.ascontiguousarray(frame.positions[active]).reshape(-1, 3))
    set_point_array(cloud, "id", trajectory.ids[active])
    set_point_array(cloud, "type", trajectory.types[active])
    set_point_array(cloud, "velocity", np.asarray(velocities[active], dtype=np.float32))
    set_point_array(cloud, "radius", trajectory.radius[active])
    return cloud


def set_point_array(cloud: pv.PolyData, name: str, values: np.ndarray) -> None:
    """`cloud.point_data[name] = values`, empty arrays included: pyvista refuses those, VTK
    keeps them, so every file of a series carries the same arrays for ParaView."""
    if len(values):
        cloud.point_data[name] = values
        return
    array = numpy_to_vtk(np.ascontiguousarray(values))
    array.SetName(name)
    cloud.GetPointData().AddArray(array)


def walls_polydata(walls: list[Wall], time: float) -> pv.PolyData:
    """Walls present at `time`, posed, with per-vertex wall velocity and per-cell wall index."""
    meshes = []
    for k, wall in enumerate(walls):
        if not wall.present_at(time):
            continue
        vertices = wall.vertices_at(time)
        faces = np.column_stack([np.full(len(wall.faces), 3), wall.faces]).ravel()
        mesh = pv.PolyData(vertices, faces)
        mesh.point_data["velocity"] = wall.velocity_at(vertices, time).astype(np.float32)
        mesh.cell_data["wall"] = np.full(len(wall.faces), k, dtype=np.int32)
        meshes.append(mesh)
    return pv.merge(meshes) if meshes else pv.PolyData()


def _wall_key(walls: list[Wall], time: float) -> tuple:
    """Changes exactly when the walls' drawn geometry changes (pose or presence)."""
    return tuple((w.present_at(time), w.motion.transform(time).round(12).tobytes()) for w in walls)


def _finite_difference_velocity(trajectory: TrajectoryFile, index: int, frame: Frame):
    """Backward-difference velocity [N, 3] for trajectories stored without velocities."""
    if trajectory.n_frames < 2:
        return np.zeros_like(frame.positions)
    other = trajectory.frame(index - 1 if index > 0 else 1)
    return (frame.positions - other.positions) / (frame.time - other.time)


def check_vtk_dir(out_dir: Path, force: bool) -> list[Path]:
    """Before any work: `out_dir` can be made or written and holds no series unless `force`;
    returns the files of the series it holds."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir} is a file; give a folder for the ParaView series")
    check_folder_writable(out_dir)
    existing = [p for pattern in _OUR_FILES for p in out_dir.glob(pattern)]
    if existing and not force:
        raise OutputExistsError(f"{out_dir} already holds a ParaView series; pass --force")
    return existing


def _prepare_dir(out_dir: Path, force: bool) -> None:
    existing = check_vtk_dir(out_dir, force)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in existing:
        path.unlink()


def _write_pvd(path: Path, entries: list[tuple[float, str]]) -> None:
    """A ParaView collection: one DataSet per time, `timestep` in seconds."""
    lines = [
        '<?xml version="1.0"?>',
        '<VTKFile type="Collection" version="0.1" byte_order="LittleEndian">',
        "  <Collection>",
        *(
            f'    <DataSet timestep="{float(time)!r}" part="0" file={quoteattr(name)}/>'
            for time, name in entries
        ),
        "  </Collection>",
        "</VTKFile>",
        "",
    ]
    path.write_text("\n".join(lines))
