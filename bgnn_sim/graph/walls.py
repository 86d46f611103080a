"""Wall (virtual) nodes of a Boundary GNN: one per (particle, triangle) pair within the cutoff.

As in the released BGNN code, a particle near an edge or a corner of the mesh sees every triangle
within the cutoff, each through its own virtual node placed at the closest point on that
triangle; the k nodes of one particle are weighted 1/k so that a corner does not push k times
as hard as a flat wall. Unlike the paper, a node also carries the velocity of the wall material
at the contact, so one model can learn several drum speeds or a moving plate.

With `merge=True`, a particle keeps the contacts that carry information: those whose closest
point lies inside its triangle (a face contact: the particle faces that wall) and its nearest
contact; and nodes at the same point (an edge or vertex shared by several triangles) become one
node there, whose normal is the mean of the triangles' normals turned towards the particle. A
cone of long thin triangles otherwise gives ~5.5 nodes per particle, most of them at the edges
and vertices of triangles beside the one the particle faces. The closest points that are kept
are the exact ones; a concave corner (cone and gate, cone and bin) keeps a face contact on
each side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from bgnn_sim.geometry.proximity import (
    TriangleContacts,
    closest_point_on_triangles,
    equal_rows,
    row_dot,
)
from bgnn_sim.geometry.wall import Wall, posed_triangles, wall_velocities

# Closest points of one particle nearer than this (metres) are the same point (see merge).
_SAME_POINT = 1e-9


@dataclass
class WallNodes:
    """Virtual wall nodes, sorted by particle index (then by triangle).

    Attributes:
        particle_index: [W] int64, the particle each virtual node sends to.
        position: [W, 3] closest point on the triangle.
        normal: [W, 3] unit normal of that triangle, with the sign the winding gives (features
            use n and -n, so the winding of the mesh does not matter); zero for a degenerate
            triangle, which has no normal.
        velocity: [W, 3] velocity of the wall material at the closest point, m/s.
        weight: [W] 1/k, k = number of virtual nodes of that particle.
    """

    particle_index: Tensor
    position: Tensor
    normal: Tensor
    velocity: Tensor
    weight: Tensor

    def __len__(self) -> int:
        return len(self.particle_index)


@dataclass
class WallContacts:
    """Every (particle, triangle) pair within a cutoff at one time, with the triangles' walls.

    Attributes:
        contacts: the pairs, sorted by (particle, triangle), as `closest_point_on_triangles`
            returns them.
        walls: the walls present at that time.
        triangles: [F, 3, 3] their triangles posed at that time, in the positions' dtype.
        owner: [F] index into `walls` of each triangle.
    """

    contacts: TriangleContacts
    walls: list[Wall]
    triangles: Tensor
    owner: np.ndarray


def wall_contacts(positions: Tensor, walls: list[Wall], time: float, cutoff: float) -> WallContacts:
    """The contacts within `cutoff` (m) of positions [N, 3] with the walls present at `time`,
    posed at it: one proximity query over all walls."""
    present, soup, owner = posed_triangles(walls, time)
    triangles = torch.from_numpy(soup).to(positions)
    return WallContacts(closest_point_on_triangles(positions, triangles, cutoff), present,
                        triangles, owner)  # fmt: skip


def wall_nodes(
    positions: Tensor, walls: list[Wall], time: float, cutoff: float, merge: bool = False
) -> WallNodes:
    """Virtual nodes for every (particle, triangle) pair within `cutoff` (inclusive).

    Args:
        positions: [N, 3] particle positions (metres) at `time`.
        walls: All walls of the scene; those not present at `time` (an opened gate) are skipped,
            the others are posed at `time`.
        time: Physical time (s) of `positions`.
        cutoff: Largest particle-wall distance kept (metres), > 0.
        merge: Face contacts and the nearest contact only, one node per shared point (see
            the module docstring).

    Returns:
        The virtual nodes, in the dtype and on the device of `positions`.
    """
    found = wall_contacts(positions, walls, time, cutoff)
    return wall_nodes_from_contacts(positions, found, time, merge)


def wall_nodes_from_contacts(
    positions: Tensor, found: WallContacts, time: float, merge: bool = False
) -> WallNodes:
    """The virtual nodes of `found` (all pairs within the cutoff of positions [N, 3] at `time`);
    see `wall_nodes`."""
    contacts, triangles = found.contacts, found.triangles
    if len(contacts.point_index) == 0:
        return _empty(positions)
    normal = triangle_normals(triangles).index_select(0, contacts.triangle_index)
    if merge:
        away = positions.index_select(0, contacts.point_index) - contacts.closest
        keep = _face_or_nearest(contacts, normal, away, len(positions))
        contacts = TriangleContacts(*(column[keep] for column in contacts))
        normal = _turned_towards(normal[keep], away[keep])
    velocity = wall_velocity(found.walls, found.owner[contacts.triangle_index.cpu().numpy()],
                             contacts.closest, time)  # fmt: skip
    particle, closest = contacts.point_index, contacts.closest
    if merge:
        particle, closest, normal, velocity = _merge_shared_points(
            particle, closest, normal, velocity
        )
    count = torch.bincount(particle, minlength=len(positions))
    weight = 1.0 / count.index_select(0, particle).to(positions.dtype)
    return WallNodes(particle, closest, normal, velocity, weight)


def triangle_normals(triangles: Tensor) -> Tensor:
    """[F, 3] unit normals (b - a) x (c - a) of triangles [F, 3, 3]; zero where degenerate."""
    a, b, c = triangles.unbind(dim=1)
    normal = torch.linalg.cross(b - a, c - a, dim=1)
    length = torch.linalg.vector_norm(normal, dim=1, keepdim=True)
    # A zero-area triangle has no direction to offer: it reads as "no normal", not as NaN.
    return torch.where(length > 0, normal / length.clamp_min(torch.finfo(normal.dtype).tiny), 0)


def _face_or_nearest(
    contacts: TriangleContacts, normal: Tensor, away: Tensor, n_particles: int
) -> Tensor:
    """[P] bool: contacts whose closest point is inside its triangle (the particle lies along
    the normal from it; on the plane counts too), or at its particle's smallest distance.

    Args:
        contacts: all (particle, triangle) pairs within the cutoff.
        normal: [P, 3] unit triangle normals; away: [P, 3] particle minus closest point.
    """
    along = row_dot(away, normal)[:, None] * normal
    sideways = torch.linalg.vector_norm(away - along, dim=1)
    face = sideways <= 1e-6 * contacts.distance + 1e-12
    nearest = smallest_per_particle(contacts.point_index, contacts.distance, n_particles)
    # Within _SAME_POINT of the smallest: a shared edge's point reached through two triangles
    # has two distances that differ by round-off, and both must stay to be merged.
    return face | (contacts.distance <= nearest.index_select(0, contacts.point_index) + _SAME_POINT)


def smallest_per_particle(particle_index: Tensor, value: Tensor, n_particles: int) -> Tensor:
    """[n_particles] smallest `value` [P] of each particle's pairs (+inf for one without)."""
    smallest = value.new_full((n_particles,), float("inf"))
    return smallest.scatter_reduce(0, particle_index, value, "amin")


def _turned_towards(normal: Tensor, toward: Tensor) -> Tensor:
    """Normals [W, 3] flipped where they point away from `toward` [W, 3] (wall -> particle)."""
    side = torch.where(row_dot(normal, toward) < 0, -1.0, 1.0).to(normal.dtype)
    return normal * side[:, None]


def _merge_shared_points(
    particle: Tensor, closest: Tensor, normal: Tensor, velocity: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One node per (particle, closest point): the closest point kept exactly (the first of the
    group), normals [W, 3] averaged and renormalised, velocities averaged.

    Points closer than _SAME_POINT metres are one point: the closest points of a shared edge
    or vertex seen from two triangles differ by round-off only, while distinct contacts of one
    particle lie far further apart.
    """
    # (particle, quantised point) rows, grouped in lexicographic order: the groups stay
    # ordered by particle index, as the callers expect.
    key = torch.cat((particle[:, None], torch.round(closest / _SAME_POINT).long()), dim=1)
    order, starts = (torch.from_numpy(x).to(particle.device) for x in equal_rows(key.cpu().numpy()))
    group = torch.empty_like(order)
    group[order] = torch.cumsum(starts, 0) - 1
    first = order[starts]  # the lowest row of each group (the sort is stable)
    n = len(first)
    count = torch.bincount(group, minlength=n)
    summed = normal.new_zeros(n, 3).index_add_(0, group, normal)
    length = torch.linalg.vector_norm(summed, dim=1, keepdim=True)
    merged_normal = torch.where(length > 0, summed / length.clamp_min(1e-30), 0.0)
    mean_velocity = velocity.new_zeros(n, 3).index_add_(0, group, velocity) / count[:, None]
    return particle[first], closest[first], merged_normal, mean_velocity


def wall_velocity(walls: list[Wall], owner: np.ndarray, points: Tensor, t: float) -> Tensor:
    """[P, 3] velocity (m/s) of wall `walls[owner[p]]` at `points[p]` [P, 3] at time t, in the
    dtype and on the device of `points` (the motions are numpy code: the points go through the
    CPU once)."""
    points_np = points.detach().cpu().double().numpy()
    return torch.from_numpy(wall_velocities(walls, owner, points_np, t)).to(points)


def _empty(positions: Tensor) -> WallNodes:
    index = torch.empty(0, dtype=torch.long, device=positions.device)
    vectors = positions.new_empty(0, 3)
    return WallNodes(index, vectors, vectors.clone(), vectors.clone(), positions.new_empty(0))
