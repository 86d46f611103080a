"""Wall (virtual) nodes of a Boundary GNN: one per (particle, triangle) pair within the cutoff.

As in the released BGNN code, a particle near an edge or a corner of the mesh sees every triangle
within the cutoff, each through its own virtual node placed at the closest point on that
triangle; the k nodes of one particle are weighted 1/k so that a corner does not push k times
as hard as a flat wall. Unlike the paper, a node also carries the velocity of the wall material
at the contact, so one model can learn several drum speeds or a moving plate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from bgnn_sim.geometry.proximity import closest_point_on_triangles
from bgnn_sim.geometry.wall import Wall


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


def wall_nodes(positions: Tensor, walls: list[Wall], time: float, cutoff: float) -> WallNodes:
    """Virtual nodes for every (particle, triangle) pair within `cutoff` (inclusive).

    Args:
        positions: [N, 3] particle positions (metres) at `time`.
        walls: All walls of the scene; those not present at `time` (an opened gate) are skipped,
            the others are posed at `time`.
        time: Physical time (s) of `positions`.
        cutoff: Largest particle-wall distance kept (metres), > 0.

    Returns:
        The virtual nodes, in the dtype and on the device of `positions`.
    """
    present = [wall for wall in walls if wall.present_at(time)]
    posed = [wall.triangles_at(time) for wall in present]
    if not posed or sum(len(t) for t in posed) == 0:
        return _empty(positions)
    triangles = torch.from_numpy(np.concatenate(posed)).to(positions)
    # One proximity query over all walls; the owner of each triangle is needed for velocities.
    wall_of_triangle = np.repeat(np.arange(len(present)), [len(t) for t in posed])
    contacts = closest_point_on_triangles(positions, triangles, cutoff)
    if len(contacts.point_index) == 0:
        return _empty(positions)
    normal = triangle_normals(triangles).index_select(0, contacts.triangle_index)
    wall_index = wall_of_triangle[contacts.triangle_index.cpu().numpy()]
    velocity = _wall_velocity(present, wall_index, contacts.closest, time)
    count = torch.bincount(contacts.point_index, minlength=len(positions))
    weight = 1.0 / count.index_select(0, contacts.point_index).to(positions.dtype)
    return WallNodes(contacts.point_index, contacts.closest, normal, velocity, weight)


def triangle_normals(triangles: Tensor) -> Tensor:
    """[F, 3] unit normals (b - a) x (c - a) of triangles [F, 3, 3]; zero where degenerate."""
    a, b, c = triangles.unbind(dim=1)
    normal = torch.linalg.cross(b - a, c - a, dim=1)
    length = torch.linalg.vector_norm(normal, dim=1, keepdim=True)
    # A zero-area triangle has no direction to offer: it reads as "no normal", not as NaN.
    return torch.where(length > 0, normal / length.clamp_min(torch.finfo(normal.dtype).tiny), 0)


def _wall_velocity(walls: list[Wall], wall_index: np.ndarray, points: Tensor, t: float) -> Tensor:
    """[W, 3] velocity (m/s) of wall `walls[wall_index[w]]` at `points[w]` [W, 3] at time t.

    The motions are numpy code, so the contact points go through the CPU once; the loop runs
    over the few walls, never over particles.
    """
    points_np = points.detach().cpu().double().numpy()
    velocity = np.zeros_like(points_np)
    for k, wall in enumerate(walls):
        mine = wall_index == k
        if mine.any():
            velocity[mine] = wall.velocity_at(points_np[mine], t)
    return torch.from_numpy(velocity).to(points)


def _empty(positions: Tensor) -> WallNodes:
    index = torch.empty(0, dtype=torch.long, device=positions.device)
    vectors = positions.new_empty(0, 3)
    return WallNodes(index, vectors, vectors.clone(), vectors.clone(), positions.new_empty(0))
