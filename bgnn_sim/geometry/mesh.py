"""Loading container meshes (STL/OBJ/PLY) into walls, with validation a user can act on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from bgnn_sim.errors import MeshError
from bgnn_sim.geometry.wall import Wall
from bgnn_sim.io.outputs import write_atomically

MESH_SUFFIXES = (".stl", ".obj", ".ply")
# Containers for mm-sized grains are centimetres to a few metres across; a mesh larger than this
# was almost certainly exported in millimetres.
MAX_EXTENT_M = 10.0
# Smaller than one particle diameter of the reference material: not a container in metres.
MIN_EXTENT_M = 1e-3
# A triangle is degenerate when its area is this small relative to the mesh's extent squared.
DEGENERATE_AREA = 1e-12


def load_walls(path: str | Path, scale: float = 1.0) -> list[Wall]:
    """Read a mesh file into static walls, one per mesh body in the file.

    Args:
        path: STL, OBJ or PLY file, coordinates in metres (after `scale`).
        scale: factor applied to the coordinates (0.001 for a file in millimetres).

    Raises:
        MeshError: unreadable or empty file, NaN coordinates, degenerate triangles, or a size
            that suggests wrong units.
    """
    path = Path(path)
    meshes = _read_meshes(path)
    walls = []
    for name, mesh in meshes:
        vertices = np.asarray(mesh.vertices, dtype=float) * scale
        faces = np.asarray(mesh.faces, dtype=np.int64)
        validate_triangles(vertices, faces, source=str(path))
        # STL stores every triangle's corners separately: merge them so walls share vertices.
        merged = trimesh.Trimesh(vertices, faces, process=True)
        walls.append(Wall(name, np.asarray(merged.vertices), np.asarray(merged.faces, np.int64)))
    check_units(np.concatenate([w.vertices for w in walls]), source=str(path))
    return walls


def _read_meshes(path: Path) -> list[tuple[str, trimesh.Trimesh]]:
    """(name, mesh) for every body in the file, unprocessed so that defects stay visible."""
    if not path.is_file():
        raise MeshError(f"{path}: no such file")
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise MeshError(f"{path}: unsupported mesh format; expected one of {MESH_SUFFIXES}")
    if path.stat().st_size == 0:
        raise MeshError(f"{path}: the file is empty")
    try:
        loaded = trimesh.load(path, process=False, force=None)
    except Exception as exc:  # trimesh raises many types for malformed files
        raise MeshError(f"{path}: cannot read mesh ({type(exc).__name__}: {exc})") from exc
    if isinstance(loaded, trimesh.Scene):
        bodies = [(name, g) for name, g in loaded.geometry.items() if len(g.faces)]
    else:
        bodies = [(path.stem, loaded)] if len(getattr(loaded, "faces", ())) else []
    if not bodies:
        raise MeshError(f"{path}: the file contains no triangles")
    if len(bodies) == 1:
        bodies = [(path.stem, bodies[0][1])]
    return bodies


def validate_triangles(vertices: np.ndarray, faces: np.ndarray, source: str) -> None:
    """Raise MeshError for non-finite coordinates or degenerate (zero-area) triangles."""
    bad = ~np.isfinite(vertices).all(axis=1)
    if bad.any():
        raise MeshError(
            f"{source}: {bad.sum()} vertices have NaN or infinite coordinates "
            f"(first: vertex {np.flatnonzero(bad)[0]})"
        )
    extent = float(np.ptp(vertices, axis=0).max()) if len(vertices) else 0.0
    triangles = vertices[faces]
    areas = 0.5 * np.linalg.norm(
        np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0]), axis=1
    )
    degenerate = areas <= DEGENERATE_AREA * extent**2
    if degenerate.any():
        raise MeshError(
            f"{source}: {degenerate.sum()} of {len(faces)} triangles are degenerate (zero area; "
            f"first: triangle {np.flatnonzero(degenerate)[0]}); repair the mesh first"
        )


def check_units(vertices: np.ndarray, source: str) -> None:
    """Raise MeshError when the mesh's size is implausible in metres."""
    extent = float(np.ptp(vertices, axis=0).max())
    if extent > MAX_EXTENT_M:
        raise MeshError(
            f"{source}: the mesh is {extent:g} m across, which suggests millimetres; "
            "meshes are read in metres, pass --scale 0.001 to convert"
        )
    if extent < MIN_EXTENT_M:
        raise MeshError(
            f"{source}: the mesh is only {extent:g} m across, smaller than one particle; "
            "meshes are read in metres, pass --scale to convert"
        )


@dataclass(frozen=True)
class MeshSummary:
    """What `bgnn info` shows about a mesh file."""

    bounds: np.ndarray  # [2, 3] min and max corner, metres
    n_triangles: int
    watertight: bool
    volume: float | None  # m^3, only for a watertight mesh


def summarize_walls(walls: list[Wall]) -> MeshSummary:
    mesh = trimesh.util.concatenate([w.to_trimesh() for w in walls])
    watertight = bool(mesh.is_watertight)
    return MeshSummary(
        bounds=np.asarray(mesh.bounds),
        n_triangles=len(mesh.faces),
        watertight=watertight,
        volume=abs(float(mesh.volume)) if watertight else None,
    )


def save_mesh(mesh: trimesh.Trimesh, path: str | Path, force: bool = False) -> None:
    """Write a mesh (format from the suffix) without ever leaving a partial file at `path`."""
    path = Path(path)
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise MeshError(f"{path}: unsupported mesh format; expected one of {MESH_SUFFIXES}")
    write_atomically(path, lambda tmp: mesh.export(tmp, file_type=path.suffix[1:].lower()), force)
