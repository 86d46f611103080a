"""What a container mesh is: a `Hopper` (open at the top and at a bottom outlet) or a closed
`Drum` (the types: geometry.containers).

`inspect_container` reads the boundary loops of the walls: a mesh with a lowest open loop is a
hopper whose outlet is that loop; a watertight mesh is a drum when its shape is one, a closed
surface of revolution about x, y or z (round cross-sections across the axis) with two flat ends
(discs across it). Other closed meshes (a sphere, a box, a closed chute) are refused, saying
what was found. `closed_solid` caps the openings, so that "inside the container" is a question
trimesh can answer for filling it.
"""

from __future__ import annotations

import numpy as np
import trimesh

from bgnn_sim.errors import MeshError
from bgnn_sim.geometry.containers import AXES, Container, Drum, Hopper, Opening
from bgnn_sim.geometry.wall import Wall

__all__ = ["AXES", "Container", "Drum", "Hopper", "Opening", "closed_solid", "inspect_container"]
# An opening is horizontal when its height varies by less than this fraction of its width.
FLAT_OPENING = 0.02
# A drum's cross-section is round when its points' least distance from the axis is at least
# this fraction of their largest (a regular 10-gon: cos 18 deg = 0.951).
ROUND_SECTION = 0.95
# Where the cross-sections are taken, as fractions of the drum's length.
SECTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)
# A drum's end is flat when its triangles in the end plane cover this fraction of the disc
# of its rim (a regular 10-gon: 0.935).
FLAT_END = 0.85


def inspect_container(walls: list[Wall], axis: str | None = None) -> Container:
    """Recognise a hopper or a drum in static walls (gravity along -z).

    Args:
        walls: the container's walls (one or more bodies).
        axis: a drum's axis when it is not to be inferred.

    Raises:
        MeshError: neither a closed drum nor a hopper open at the top and at a bottom outlet.
    """
    mesh = merged_mesh(walls)
    loops = _boundary_loops(mesh)
    if not loops:
        if not mesh.is_watertight:
            raise MeshError("the container mesh is neither closed nor open along clean loops")
        return _drum(walls, mesh, axis)
    if axis is not None:
        raise MeshError("--axis applies to closed drums; this mesh is open (a hopper)")
    return _hopper(walls, mesh, loops)


def closed_solid(container: Container) -> trimesh.Trimesh:
    """A watertight mesh of the container's inside: its walls with every opening capped."""
    mesh = merged_mesh(container.walls)
    loops = _boundary_loops(mesh)
    caps = [_fan(mesh.vertices[loop]) for loop in loops]
    solid = trimesh.util.concatenate([mesh, *caps])
    solid.merge_vertices()
    trimesh.repair.fix_normals(solid)
    if not solid.is_watertight:
        raise MeshError("cannot close the container to fill it (its openings are not planar)")
    return solid


def _drum(walls: list[Wall], mesh: trimesh.Trimesh, axis: str | None) -> Drum:
    """The drum of a closed mesh, about `axis` or the one coordinate axis its shape fits."""
    if axis is not None:
        _axis_index(axis)  # MeshError for a name other than x, y or z
    candidates = "xyz" if axis is None else axis
    problems = {name: drum_shape_problem(mesh, AXES[name]) for name in candidates}
    fitting = [name for name, problem in problems.items() if problem is None]
    if not fitting:
        if axis is None:  # say what was found about the axis nearest to fitting
            rounds = [name for name, problem in problems.items() if problem.startswith("round")]
            axis = rounds[0] if rounds else "xyz"[int(np.argmax(_symmetry_axis(mesh)))]
        raise MeshError(f"the closed mesh is not a drum: {problems[axis]}; bgnn simulate takes "
                        "hoppers (open at the top and at a bottom outlet) and drums (a closed "
                        "surface of revolution about x, y or z with two flat ends)")  # fmt: skip
    name = fitting[0]
    k = AXES[name]
    lo, hi = mesh.bounds
    center = (lo + hi) / 2
    radial = np.delete(np.asarray(mesh.vertices) - center, k, axis=1)
    radius = float(np.linalg.norm(radial, axis=1).max())
    return Drum(walls, axis=name, center=center, radius=radius, length=float(hi[k] - lo[k]))


def drum_shape_problem(mesh: trimesh.Trimesh, k: int) -> str | None:
    """What keeps a closed mesh from being a drum about coordinate axis `k` (its axis line
    through the centre of its bounds), or None: a cross-section that is not round, an end that
    is not flat."""
    name = "xyz"[k]
    lo, hi = mesh.bounds
    center, normal = (lo + hi) / 2, np.eye(3)[k]
    for fraction in SECTIONS:
        at = center + (lo[k] + fraction * (hi[k] - lo[k]) - center[k]) * normal
        segments = trimesh.intersections.mesh_plane(mesh, normal, at)
        radii = np.linalg.norm(np.delete(segments.reshape(-1, 3) - center, k, axis=1), axis=1)
        where = f"{name} = {at[k] * 1e3:.1f} mm"
        if not len(radii):
            return f"it has no cross-section across {name} at {where}"
        if radii.min() < ROUND_SECTION * radii.max():
            spread = f"{radii.min() * 1e3:.1f} to {radii.max() * 1e3:.1f} mm"
            return f"its cross-section at {where} is not round ({spread} from the axis {name})"
    for end in (lo[k], hi[k]):
        if _end_cover(mesh, k, end, center) < FLAT_END:
            return f"round about {name}, but its end at {name} = {end * 1e3:.1f} mm is not flat"
    return None


def _end_cover(mesh: trimesh.Trimesh, k: int, end: float, center: np.ndarray) -> float:
    """The fraction of the disc of its rim that the triangles in the plane `x_k = end` cover."""
    tolerance = 1e-4 * (mesh.bounds[1, k] - mesh.bounds[0, k])
    in_plane = np.abs(mesh.vertices[:, k] - end) <= tolerance
    faces = in_plane[mesh.faces].all(axis=1)
    if not faces.any():
        return 0.0
    rim = np.linalg.norm(np.delete(mesh.vertices[in_plane] - center, k, axis=1), axis=1).max()
    return float(mesh.area_faces[faces].sum() / (np.pi * rim**2))


def _symmetry_axis(mesh: trimesh.Trimesh) -> np.ndarray:
    """Unit axis [3] of a solid of revolution: the principal axis whose moment differs from the
    other two (which are equal for a cylinder)."""
    moments = mesh.principal_inertia_components
    vectors = mesh.principal_inertia_vectors
    gaps = [abs(moments[k] - moments[j]) + abs(moments[k] - moments[i])
            for k, (i, j) in enumerate([(1, 2), (0, 2), (0, 1)])]  # fmt: skip
    return np.abs(vectors[int(np.argmax(gaps))])


def _axis_index(axis: str) -> int:
    if axis not in AXES:
        raise MeshError(f"--axis must be x, y or z, not {axis!r}")
    return AXES[axis]


def _hopper(walls: list[Wall], mesh: trimesh.Trimesh, loops: list[np.ndarray]) -> Hopper:
    openings = sorted((_opening(mesh.vertices[loop]) for loop in loops), key=lambda o: o.z)
    outlet, top = openings[0], openings[-1]
    bottom = float(mesh.vertices[:, 2].min())
    flat = mesh.extents[2] <= FLAT_OPENING * mesh.extents.max()  # a plate has no outlet below
    if len(openings) < 2 or flat or outlet.z > bottom + 0.05 * mesh.extents[2]:
        raise MeshError(
            "the mesh is open but has no outlet at its bottom; bgnn simulate takes hoppers "
            "(open at the top and at a bottom outlet) and closed drums"
        )
    return Hopper(walls, outlet=outlet, top=top)


def _opening(points: np.ndarray) -> Opening:
    """The opening bounded by a loop of points [M, 3]; MeshError when it is not horizontal."""
    extents = np.ptp(points[:, :2], axis=0)
    if np.ptp(points[:, 2]) > FLAT_OPENING * extents.max():
        raise MeshError(
            f"an opening of the mesh at z = {points[:, 2].mean():.4f} m is not horizontal; "
            "hopper outlets must lie in a horizontal plane (gravity is -z)"
        )
    return Opening(points.mean(axis=0), float(extents.min()), float(extents.max()))


def merged_mesh(walls: list[Wall]) -> trimesh.Trimesh:
    """All walls as one mesh, their shared corners merged."""
    meshes = [w.to_trimesh() for w in walls]
    mesh = trimesh.util.concatenate(meshes) if len(meshes) > 1 else meshes[0].copy()
    mesh.merge_vertices()
    return mesh


def _boundary_loops(mesh: trimesh.Trimesh) -> list[np.ndarray]:
    """Vertex indices of each closed loop of boundary edges (edges of only one triangle), in
    order along the loop."""
    boundary = trimesh.grouping.group_rows(mesh.edges_sorted, require_count=1)
    edges = mesh.edges_sorted[boundary]
    neighbours: dict[int, list[int]] = {}
    for u, v in edges.tolist():
        neighbours.setdefault(u, []).append(v)
        neighbours.setdefault(v, []).append(u)
    if any(len(n) != 2 for n in neighbours.values()):
        raise MeshError("the mesh's open edges do not form simple loops (a broken mesh?)")
    loops, unvisited = [], set(neighbours)
    while unvisited:  # walk each loop once: a few hundred vertices, not particles
        loop = [min(unvisited)]
        previous, current = None, loop[0]
        while True:
            a, b = neighbours[current]
            previous, current = current, (b if a == previous else a)
            if current == loop[0]:
                break
            loop.append(current)
        unvisited -= set(loop)
        loops.append(np.array(loop))
    return loops


def _fan(points: np.ndarray) -> trimesh.Trimesh:
    """A flat cap over a loop of points [M, 3]: triangles from its centroid to each edge."""
    m = len(points)
    vertices = np.vstack([points, points.mean(axis=0)])
    faces = np.column_stack([np.arange(m), np.roll(np.arange(m), -1), np.full(m, m)])
    return trimesh.Trimesh(vertices, faces, process=False)
