"""Leakage: particles that pass through a wall, or end up outside a closed container.

A learned simulator has no hard wall constraint, so a rollout can push particles through the
mesh. Two independent measures:

- crossings: the straight path of a particle from frame t to t + 1 intersects a wall present at
  both frames (Möller–Trumbore on the candidate pairs of the grid broad phase of
  `closest_point_on_triangles`). A voxel grid of each wall first clears the paths that stay
  within a few cells the surface does not reach: most of them, and the costly part otherwise;
- outside: for containers whose walls are all watertight (a drum), the active particles not
  inside the container at a frame. A voxel grid of the wall answers for points far from the
  surface; near it, the side of the nearest feature's angle-weighted pseudonormal decides
  (Bærentzen & Aanæs 2005), exact for a closed, consistently oriented mesh.

Moving walls are handled in each wall's own (body) frame, where its triangles are those of the
mesh as loaded: a particle's position at frame t is mapped with the inverse of the wall's pose
at t. For crossings the start maps with the pose at t and the end with the pose at t + 1, then
the straight body-frame segment between them is tested. This is exact at both endpoints; in
between, the true relative path of a particle near a rotating wall is an arc, approximated by
its chord (at 1 ms frames the arc's sagitta is far below a particle radius).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.ndimage
import torch
import trimesh
from torch import Tensor

from bgnn_sim.geometry.proximity import closest_point_on_triangles, row_dot
from bgnn_sim.geometry.wall import Wall
from bgnn_sim.trajectory import Trajectory

# Triangles are closed and widened by this much in barycentric coordinates: a path through an
# edge or vertex shared by two triangles is never lost to round-off in both.
BARYCENTRIC_TOLERANCE = 1e-9
# A segment this close to parallel to a triangle's plane (|cos| of its angle with the normal)
# cannot pass through it: sliding within a wall's plane is not a crossing.
_PARALLEL_COSINE = 1e-12
# Added to broad-phase cutoffs (metres) so round-off cannot drop a pair at exactly the cutoff,
# and so the cutoff stays > 0 when nothing moved.
_CUTOFF_MARGIN = 1e-9
# (frame, particle) pairs mapped to a body frame at once: bounds the memory of long runs.
_PAIRS_PER_CHUNK = 1 << 20
# Segments per broad phase up to a half-length of 1/256 of the mesh; each further factor 4 in
# length allows 16 times fewer (pairs per segment grow as the cutoff squared), down to 64.
_SEGMENTS_PER_BATCH = 1 << 20
_FINEST_CELL_FRACTION = 1 / 256
_MIN_BATCH = 64
# Cells along the longest side of a wall's voxel grid. A path within a block of clear cells
# cannot cross the wall, a point in a clear cell takes the side of its region: only the rest
# need the exact tests. Finer cells: fewer exact tests, longer set-up (~1 s at 256, where the
# cells of a 10 cm drum, 0.4 mm, clear the particles resting a radius from its wall; 128
# left most of them to the exact tests and took 1.5x longer in all).
_VOXELS_ALONG_LONGEST = 256
_PAD = 3  # clear layers of cells around the mesh: the block of a path beyond the grid is clear
# Relative distance (to the mesh size) within which two closest points are the same feature.
_SAME_POINT = 1e-9


@dataclass(frozen=True)
class Leakage:
    """What the analysis report shows about particles leaving through walls.

    Attributes:
        time: [T] frame times, seconds.
        crossings: [T] int, particles whose path from frame t - 1 to t crosses a wall (0 at t=0).
        outside: [T] int, active particles outside the closed container at frame t; None when
            the walls do not form a closed container (an open hopper).
    """

    time: np.ndarray
    crossings: np.ndarray
    outside: np.ndarray | None

    @property
    def total_crossings(self) -> int:
        """Wall crossings summed over all steps (a particle crossing twice counts twice)."""
        return int(self.crossings.sum())

    @property
    def peak_outside(self) -> int | None:
        """Most particles outside the container at any one frame; None for an open container."""
        return None if self.outside is None else int(self.outside.max(initial=0))

    @property
    def clean(self) -> bool:
        """True when no particle crossed a wall and none was ever outside the container."""
        return self.total_crossings == 0 and not self.peak_outside


def leakage_report(trajectory: Trajectory) -> Leakage:
    """Wall crossings per frame and, for a closed container, particles outside it per frame."""
    grids: dict[int, _Voxels] = {}  # one grid per wall for both measures
    crossings = np.zeros(trajectory.n_frames, dtype=np.int64)
    crossings[1:] = wall_crossings(trajectory, grids)
    return Leakage(trajectory.time.copy(), crossings, outside_count(trajectory, grids))


def wall_crossings(trajectory: Trajectory, grids: dict[int, _Voxels] | None = None) -> np.ndarray:
    """[T - 1] int: per step t -> t + 1, the particles active at both frames whose path crosses
    a wall present at both frames (a gate removed in between lets particles through).

    A particle crossing several walls (or one wall twice) in a step counts once. `grids`: the
    walls' voxel grids by id(wall), filled in as they are built (see `_grid`).
    """
    positions, n_steps = trajectory.positions, max(trajectory.n_frames - 1, 0)
    crossed = np.zeros((n_steps, trajectory.n_particles), dtype=bool)
    moving = trajectory.active[:-1] & trajectory.active[1:]  # [T - 1, N]
    for wall in trajectory.walls:
        present = _present_frames(wall, trajectory.time)
        inverse = _inverse_poses(wall, trajectory.time)
        rest = wall.vertices[wall.faces]
        voxels = _grid(wall, grids)
        valid = moving & (present[:-1] & present[1:])[:, None]
        for steps in _frame_blocks(n_steps, trajectory.n_particles):
            step, particle = np.nonzero(valid[steps])
            if len(step) == 0:
                continue
            ends = slice(steps.start + 1, steps.stop + 1)
            start_points = _to_body_frame(positions[steps], inverse[steps])[step, particle]
            end_points = _to_body_frame(positions[ends], inverse[ends])[step, particle]
            unsure = np.flatnonzero(~voxels.clear_paths(start_points, end_points))
            crossed[steps][step[unsure], particle[unsure]] |= segment_crossings(
                start_points[unsure], end_points[unsure], rest
            )
    return crossed.sum(axis=1)


def outside_count(
    trajectory: Trajectory, grids: dict[int, _Voxels] | None = None
) -> np.ndarray | None:
    """[T] int: active particles outside the closed container at each frame, or None.

    Several walls combine by the even-odd rule: a particle is inside when it is inside an odd
    number of the walls present at the frame. One watertight wall is its inside; a closed
    obstacle within a drum (a wall of its own) is outside, so a particle in it counts; with no
    wall present every particle is outside. Every wall must be watertight on its own (trimesh's
    test on the mesh as loaded; a rigid motion keeps it) and be one closed surface or several
    disjoint ones; otherwise, and without walls, the container is open and the answer is None.
    A particle exactly on a wall counts as inside. `grids` as for `wall_crossings`.
    """
    walls = trajectory.walls
    if not walls or not all(wall.to_trimesh().is_watertight for wall in walls):
        return None
    inside = np.zeros(trajectory.active.shape, dtype=bool)
    for wall in walls:
        solid = _Solid.of(wall, _grid(wall, grids))
        present = _present_frames(wall, trajectory.time)
        inverse = _inverse_poses(wall, trajectory.time)
        for frames in _frame_blocks(trajectory.n_frames, trajectory.n_particles):
            frame, particle = np.nonzero(trajectory.active[frames] & present[frames, None])
            points = _to_body_frame(trajectory.positions[frames], inverse[frames])
            inside[frames][frame, particle] ^= solid.contains(points[frame, particle])
    return (trajectory.active & ~inside).sum(axis=1)


def segment_crossings(starts: np.ndarray, ends: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Whether each segment start -> end intersects any of the triangles.

    Touching counts: triangles are closed (edges and vertices included, widened by
    BARYCENTRIC_TOLERANCE) and so is the segment, so a path ending exactly on a wall, starting on
    it, or passing exactly through an edge or vertex crosses. A segment parallel to a triangle's
    plane never crosses it, even when it slides within that plane across the triangle (grazing).
    A zero-length segment never crosses.

    Args:
        starts: [N, 3] segment starts.
        ends: [N, 3] segment ends.
        triangles: [F, 3, 3] triangle corners, same frame as the segments.

    Returns:
        [N] bool.
    """
    starts, ends, triangles = (
        torch.from_numpy(np.array(x, dtype=np.float64)) for x in (starts, ends, triangles)
    )
    crossed = torch.zeros(len(starts), dtype=torch.bool)
    if len(starts) == 0 or len(triangles) == 0:
        return crossed.numpy()
    half_lengths = 0.5 * torch.linalg.vector_norm(ends - starts, dim=1)
    extent = (triangles.amax(dim=(0, 1)) - triangles.amin(dim=(0, 1))).max().item()
    for batch in _length_batches(half_lengths, _FINEST_CELL_FRACTION * extent):
        crossed[batch] = _batch_crossings(starts[batch], ends[batch], triangles)
    return crossed.numpy()


def _batch_crossings(starts: Tensor, ends: Tensor, triangles: Tensor) -> Tensor:
    """[B] bool crossings of segments of similar length (see segment_crossings)."""
    # Any point of a segment lies within half its length of its midpoint, so every triangle it
    # meets is within that distance of the midpoint: the proximity grid is the broad phase.
    half_longest = 0.5 * torch.linalg.vector_norm(ends - starts, dim=1).max().item()
    midpoints = 0.5 * (starts + ends)
    near = closest_point_on_triangles(midpoints, triangles, half_longest + _CUTOFF_MARGIN)
    segment, triangle = near.point_index, near.triangle_index
    along, u, v, facing = _moller_trumbore(
        starts[segment], ends[segment] - starts[segment], triangles[triangle]
    )
    tol = BARYCENTRIC_TOLERANCE
    hit = facing & (u >= -tol) & (v >= -tol) & (u + v <= 1 + tol)
    hit &= (along >= -tol) & (along <= 1 + tol)
    crossed = torch.zeros(len(starts), dtype=torch.bool)
    crossed[segment[hit]] = True
    return crossed


def _length_batches(half_lengths: Tensor, finest: float) -> Iterator[Tensor]:
    """Indices of segments in batches of similar length, so that a few fast particles do not
    widen the broad-phase cutoff of all the others; long segments come in smaller batches."""
    level = torch.log(half_lengths / finest) / math.log(4.0)
    level = level.ceil().clamp_min(0).nan_to_num(0).long()  # 0: all segments up to `finest`
    for k in torch.bincount(level).nonzero().squeeze(1).tolist():
        members = (level == k).nonzero().squeeze(1)
        size = max(_MIN_BATCH, _SEGMENTS_PER_BATCH >> (4 * k))
        yield from members.split(size)


def _moller_trumbore(
    origins: Tensor, directions: Tensor, triangles: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Intersection of lines origin + s * direction with the planes of triangles (a, b, c).

    Args:
        origins, directions: [P, 3]; triangles: [P, 3, 3].

    Returns:
        s: [P] line parameter of the hit, in units of `direction`.
        u, v: [P] barycentric coordinates of the hit along b - a and c - a.
        facing: [P] bool, False where the line is (nearly) parallel to the plane; s, u, v are
            then meaningless.
    """
    a, b, c = triangles.unbind(dim=1)
    edge_b, edge_c = b - a, c - a
    p = torch.linalg.cross(directions, edge_c)
    det = row_dot(edge_b, p)  # = -direction . (edge_b x edge_c)
    scale = torch.linalg.vector_norm(torch.linalg.cross(edge_b, edge_c), dim=1)
    facing = det.abs() > _PARALLEL_COSINE * scale * torch.linalg.vector_norm(directions, dim=1)
    inv = 1.0 / torch.where(facing, det, torch.ones_like(det))
    offset = origins - a
    q = torch.linalg.cross(offset, edge_b)
    return row_dot(edge_c, q) * inv, row_dot(offset, p) * inv, row_dot(directions, q) * inv, facing


@dataclass(frozen=True)
class _Voxels:
    """A uniform grid over a wall's rest mesh marking the cells the surface may pass through.

    Every surface point is within 0.9 cell of a lattice point laid on its triangle, so the cells
    holding lattice points and their 26 neighbours (`near`) hold all of the surface; the _PAD
    outer layers of the grid, and all space beyond it, are clear.

    Attributes:
        origin: [3] min corner of the grid; cell: edge of a cubic cell (metres).
        near: [X, Y, Z] bool, cells the surface may pass through.
        clear_block: [X - 1, Y - 1, Z - 1] bool, the 2 x 2 x 2 cells from (i, j, k) are clear.
    """

    origin: np.ndarray
    cell: float
    near: np.ndarray
    clear_block: np.ndarray

    @classmethod
    def of(cls, triangles: np.ndarray) -> _Voxels:
        low, high = triangles.min(axis=(0, 1)), triangles.max(axis=(0, 1))
        cell = float((high - low).max()) / _VOXELS_ALONG_LONGEST
        origin = low - _PAD * cell
        dims = tuple(int(d) for d in np.floor((high - low) / cell) + 1 + 2 * _PAD)
        near = np.zeros(dims, dtype=bool)
        for points in _surface_lattice(triangles, 0.9 * cell):
            near[tuple(np.floor((points - origin) / cell).astype(np.int64).T)] = True
        near = scipy.ndimage.binary_dilation(near, structure=np.ones((3, 3, 3), dtype=bool))
        clear = ~near
        corners = itertools.product((slice(None, -1), slice(1, None)), repeat=3)
        clear_block = np.logical_and.reduce([clear[corner] for corner in corners])
        return cls(origin, cell, near, clear_block)

    def cells(self, points: np.ndarray) -> np.ndarray:
        """[P, 3] int64 cell of each point [P, 3], clipped to the grid (beyond it is clear)."""
        cells = np.floor((points - self.origin) / self.cell).astype(np.int64)
        return np.clip(cells, 0, np.asarray(self.near.shape) - 1)

    def clear_paths(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """[P] bool, True where segment start -> end [P, 3] surely meets no surface: it lies in
        the box of its endpoints, so in a block of at most 2 x 2 x 2 cells, all clear."""
        first, last = self.cells(starts), self.cells(ends)
        low = np.minimum(np.minimum(first, last), np.asarray(self.clear_block.shape) - 1)
        small = (np.abs(first - last) <= 1).all(axis=1)
        return small & self.clear_block[tuple(low.T)]


def _grid(wall: Wall, grids: dict[int, _Voxels] | None) -> _Voxels:
    """The voxel grid of `wall`'s rest mesh, from `grids` or built (and kept there)."""
    grids = {} if grids is None else grids
    if id(wall) not in grids:
        grids[id(wall)] = _Voxels.of(wall.vertices[wall.faces])
    return grids[id(wall)]


def _surface_lattice(triangles: np.ndarray, spacing: float) -> Iterator[np.ndarray]:
    """Points [M, 3] on triangles [F, 3, 3], neighbours at most `spacing` apart on each
    triangle (a barycentric lattice of n steps per edge), a bounded batch at a time."""
    edges = np.linalg.norm(triangles - np.roll(triangles, 1, axis=1), axis=2).max(axis=1)
    steps = np.ceil(edges / spacing).astype(np.int64).clip(min=1)
    for n in np.unique(steps):
        i, j = np.triu_indices(n + 1)  # j >= i: the lattice (i, j - i) with i + (j - i) <= n
        weights = np.stack([n - j, i, j - i], axis=1) / n  # [L, 3] barycentric
        group = triangles[steps == n]
        for batch in np.array_split(group, -(-len(group) * len(weights) // _PAIRS_PER_CHUNK)):
            yield np.einsum("lk,gkd->gld", weights, batch).reshape(-1, 3)


@dataclass(frozen=True)
class _Solid:
    """A watertight wall's inside in its body frame.

    Attributes:
        triangles: [F, 3, 3] float64, wound so that normals point out of the solid.
        normals: [F, 3] unit outward normals.
        voxels: the wall's grid; side: [X, Y, Z] int8 of its cells: 1 inside, 0 outside, -1 near
            the surface (decided per point).
    """

    triangles: Tensor
    normals: Tensor
    voxels: _Voxels
    side: np.ndarray

    @classmethod
    def of(cls, wall: Wall, voxels: _Voxels) -> _Solid:
        """The inside of `wall`, with the voxel grid of its rest mesh."""
        mesh = wall.to_trimesh()
        # The pseudonormal test needs outward normals; a file's winding is not to be trusted.
        trimesh.repair.fix_normals(mesh, multibody=True)
        triangles = np.array(mesh.triangles, dtype=np.float64)
        normals = torch.from_numpy(np.array(mesh.face_normals, dtype=np.float64))
        # Clear cells sharing a face form a region the surface does not cut: one side for all,
        # that of any of its cells' centre.
        region, _ = scipy.ndimage.label(~voxels.near)
        _, first_cell = np.unique(region.ravel(), return_index=True)  # region 0: near cells
        cells = np.column_stack(np.unravel_index(first_cell[1:], region.shape))
        probes = torch.from_numpy(voxels.origin + (cells + 0.5) * voxels.cell)
        triangles = torch.from_numpy(triangles)
        everywhere = float(np.linalg.norm(region.shape)) * voxels.cell
        inside = _nearest_feature_inside(probes, triangles, normals, everywhere)
        side = np.concatenate([[-1], inside.numpy()]).astype(np.int8)[region]
        return cls(triangles, normals, voxels, side)

    def contains(self, points: np.ndarray) -> np.ndarray:
        """[P] bool, whether points [P, 3] (body frame) are inside or on the surface."""
        side = self.side[tuple(self.voxels.cells(points).T)]  # clipped: beyond is outside
        unsure = np.flatnonzero(side < 0)
        if len(unsure):
            # A near cell touches a cell holding a surface point: within 2 cell diagonals.
            cutoff = (2.0 * math.sqrt(3.0) + 0.1) * self.voxels.cell
            query = torch.from_numpy(points[unsure])
            inside = _nearest_feature_inside(query, self.triangles, self.normals, cutoff)
            side[unsure] = inside.numpy()
        return side == 1


def _nearest_feature_inside(
    points: Tensor, triangles: Tensor, normals: Tensor, cutoff: float
) -> Tensor:
    """[P] bool: whether each point is on the inner side of its nearest surface feature.

    The triangles whose closest point is the point's nearest surface point c share the feature
    holding c (a face, an edge or a vertex); the sum of their outward normals weighted by their
    angle at c is its pseudonormal, and (p - c) . pseudonormal <= 0 exactly when p is inside a
    closed, consistently oriented mesh. Points with no triangle within `cutoff` are outside.
    """
    near = closest_point_on_triangles(points, triangles, cutoff)
    point, triangle = near.point_index, near.triangle_index
    best = torch.full((len(points),), math.inf, dtype=points.dtype)
    best = best.scatter_reduce(0, point, near.distance, "amin")
    pairs = torch.arange(len(point))
    nearest = torch.full((len(points),), len(point), dtype=torch.long)
    is_best = near.distance <= best[point]
    nearest = nearest.scatter_reduce(0, point[is_best], pairs[is_best], "amin")
    found = nearest < len(point)
    foot = torch.zeros_like(points)
    foot[found] = near.closest[nearest[found]]
    size = (triangles.amax(dim=(0, 1)) - triangles.amin(dim=(0, 1))).max()
    shared = torch.linalg.vector_norm(near.closest - foot[point], dim=1) <= _SAME_POINT * size
    weight = _angle_at(triangles[triangle], near.closest, _SAME_POINT * size)
    pseudonormal = torch.zeros_like(points).index_add_(
        0, point[shared], (weight[:, None] * normals[triangle])[shared]
    )
    return found & (row_dot(points - foot, pseudonormal) <= 0)


def _angle_at(triangles: Tensor, feet: Tensor, tolerance: Tensor) -> Tensor:
    """[K] interior angle of each triangle [K, 3, 3] at its corner at `feet` [K, 3], or pi when
    the foot is on an edge or the face (the two faces of an edge then weigh the same)."""
    to_corner = torch.linalg.vector_norm(triangles - feet[:, None], dim=2)  # [K, 3]
    corner = to_corner.argmin(dim=1)
    rolled = [torch.roll(triangles, -k, dims=1) for k in range(3)]  # corner k first
    at_corner = torch.stack(rolled, dim=1)[torch.arange(len(triangles)), corner]  # [K, 3, 3]
    u, v = at_corner[:, 1] - at_corner[:, 0], at_corner[:, 2] - at_corner[:, 0]
    angle = torch.atan2(torch.linalg.vector_norm(torch.linalg.cross(u, v), dim=1), row_dot(u, v))
    on_corner = to_corner.gather(1, corner[:, None]).squeeze(1) <= tolerance
    return torch.where(on_corner, angle, torch.full_like(angle, math.pi))


def _present_frames(wall: Wall, time: np.ndarray) -> np.ndarray:
    """[T] bool, whether the wall exists at each frame."""
    return np.array([wall.present_at(float(t)) for t in time], dtype=bool)


def _inverse_poses(wall: Wall, time: np.ndarray) -> np.ndarray:
    """[T, 4, 4] maps from the world to the wall's body frame (its mesh as loaded) per frame."""
    if len(time) == 0:
        return np.zeros((0, 4, 4))
    return np.linalg.inv(np.stack([wall.motion.transform(float(t)) for t in time]))


def _to_body_frame(positions: np.ndarray, inverse_poses: np.ndarray) -> np.ndarray:
    """[S, N, 3] positions [S, N, 3] of frames mapped by their frame's inverse pose [S, 4, 4]."""
    rotated = np.matmul(positions, inverse_poses[:, :3, :3].transpose(0, 2, 1))
    return rotated + inverse_poses[:, None, :3, 3]


def _frame_blocks(n_frames: int, n_particles: int) -> Iterator[slice]:
    """Consecutive blocks of frames holding about _PAIRS_PER_CHUNK (frame, particle) pairs."""
    frames_per_block = max(1, _PAIRS_PER_CHUNK // max(n_particles, 1))
    for first in range(0, n_frames, frames_per_block):
        yield slice(first, min(first + frames_per_block, n_frames))
