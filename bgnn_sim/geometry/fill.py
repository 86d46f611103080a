"""Filling a container with a settled bed of spheres.

Spheres start on a jittered loose lattice in the lowest part of the container and settle under
gravity by damped, frictionless soft-sphere dynamics: linear springs with dashpots between
touching spheres and between spheres and wall triangles, semi-implicit Euler, neighbour lists
with a skin. Frictionless spheres settle into a dense random bed (solid fraction ~0.6) in a few
thousand steps, a few seconds for a few thousand spheres; the overlaps left are ~ load / K, about
1 % of a diameter at the bottom of a 20-diameter bed.

Units inside: lengths in diameters d, forces in sphere weights, time in tau = sqrt(d / g).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import trimesh
from scipy.spatial import cKDTree
from torch import Tensor

from bgnn_sim.errors import BgnnError
from bgnn_sim.geometry.proximity import (
    closest_point_on_triangle_pairs,
    closest_point_on_triangles,
    equal_rows,
    row_dot,
)
from bgnn_sim.physics import SETTLED_PACKING, sphere_volume

STIFFNESS = 2000.0  # K: contact force per overlap, sphere weights per diameter
TIME_STEP = 0.3 / math.sqrt(STIFFNESS)  # ~1/15 of a contact's oscillation period
# Dashpots at half the critical damping of a contact (reduced mass 1/2 between spheres, 1 at a
# wall), and a weak drag so that the bed comes to rest.
PAIR_DAMPING = math.sqrt(STIFFNESS / 2)
WALL_DAMPING = math.sqrt(STIFFNESS)
DRAG = 1.5
SKIN = 0.5  # neighbour lists reach this far beyond contact (diameters)
LATTICE = 1.0  # start spacing (diameters): solid fraction ~0.52
# Settled: spheres slower than this on average (diameters per tau; 6 mm/s for 4 mm spheres).
# Frictionless spheres keep creeping at the free surface long after the bed has compacted.
REST_SPEED = 0.03
MIN_TIME, MAX_TIME = 5.0, 80.0  # settling time bounds (tau)
MAX_OVERLAP = 0.05  # of a diameter: the largest overlap a settled bed may keep


class FillError(BgnnError):
    """The container cannot take the particles asked for, or the bed did not settle."""


def fill_container(
    solid: trimesh.Trimesh, n_particles: int, radius: float, seed: int = 0
) -> np.ndarray:
    """Positions [N, 3] (m) of a settled bed of `n_particles` spheres of `radius` in `solid`.

    Args:
        solid: watertight container with its openings closed (gravity along -z).
        n_particles: spheres to place (>= 1).
        radius: sphere radius (m).
        seed: draw of the starting jitter.

    Raises:
        FillError: the spheres do not fit, or the bed does not come to rest.
    """
    if n_particles < 1:
        raise FillError(f"cannot fill a container with {n_particles} particles")
    d = 2.0 * radius
    triangles = torch.from_numpy(np.asarray(solid.triangles, dtype=np.float64) / d)
    start = _loose_start(solid, triangles, n_particles, d, np.random.default_rng(seed))
    x = _settle(torch.from_numpy(start), triangles)
    _check_overlaps(x, triangles)
    return x.numpy() * d


def volume_below(solid: trimesh.Trimesh, height: float) -> float:
    """Volume (m^3) of a closed, outward-wound mesh below the plane z = height.

    The sum of signed tetrahedra from a point on the plane over the triangles clipped to the
    half-space: the cap the cut would add lies in the plane and adds nothing.
    """
    if height >= solid.bounds[1, 2]:
        return float(solid.volume)
    if height <= solid.bounds[0, 2]:
        return 0.0
    vertices, faces = trimesh.intersections.slice_faces_plane(
        solid.vertices, solid.faces, plane_normal=[0, 0, -1], plane_origin=[0, 0, height]
    )[:2]
    corners = np.asarray(vertices)[faces] - [0.0, 0.0, height]
    return float(np.linalg.det(corners).sum() / 6.0)


def bed_packing(positions: np.ndarray, radius: float, solid: trimesh.Trimesh) -> float:
    """Solid fraction of a settled bed [N, 3] (m): the volume of the spheres whose centres lie
    below the free surface over the container's volume below it. The free surface is the mean
    height of the top layer, the highest centre in each column of 2 x 2 diameters."""
    columns = np.floor(positions[:, :2] / (4.0 * radius)).astype(np.int64)
    _, column = np.unique(columns, axis=0, return_inverse=True)
    top = np.full(column.max() + 1, -np.inf)
    np.maximum.at(top, column.ravel(), positions[:, 2])
    surface = float(top.mean())
    below = int((positions[:, 2] <= surface).sum())
    return below * sphere_volume(radius) / volume_below(solid, surface)


def _loose_start(
    solid: trimesh.Trimesh, triangles: Tensor, n: int, d: float, rng: np.random.Generator
) -> np.ndarray:
    """[n, 3] starting centres (diameters): the lowest sites of a jittered lattice that lie
    inside the solid, at least a radius from its walls."""
    lo, hi = solid.bounds / d
    axes = [np.arange(a + 0.5, b - 0.5, LATTICE) for a, b in zip(lo, hi, strict=True)]
    sites = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    sites += rng.uniform(-0.05, 0.05, sites.shape)
    touching = closest_point_on_triangles(torch.from_numpy(sites), triangles, 0.5).point_index
    sites = np.delete(sites, touching.unique().numpy(), axis=0)
    sites = sites[solid.contains(sites * d)]
    if len(sites) < n:
        raise FillError(
            f"{n} particles do not fit in the container (at most about "
            f"{int(len(sites) * SETTLED_PACKING / 0.52)}); ask for fewer or a lower fill height"
        )
    return sites[np.argsort(sites[:, 2], kind="stable")[:n]]


def _settle(x: Tensor, triangles: Tensor) -> Tensor:
    """Damped dynamics from centres x [N, 3] at rest until the spheres' mean speed is below
    REST_SPEED; the neighbour lists are rebuilt when a sphere has moved half the skin."""
    v = torch.zeros_like(x)
    gravity = torch.tensor([0.0, 0.0, -1.0], dtype=x.dtype)
    built_at, lists = None, None
    for step in range(int(MAX_TIME / TIME_STEP)):
        if built_at is None or (x - built_at).norm(dim=1).max() > SKIN / 2:
            built_at, lists = x.clone(), _contact_lists(x, triangles, SKIN)
        force = gravity - DRAG * v + _contact_forces(x, v, *lists, triangles)
        v += TIME_STEP * force
        x += TIME_STEP * v
        if step * TIME_STEP > MIN_TIME and step % 100 == 0 and v.norm(dim=1).mean() < REST_SPEED:
            return x
    raise FillError(f"the bed of {len(x)} particles did not come to rest")


def _contact_lists(x: Tensor, triangles: Tensor, reach: float) -> tuple[Tensor, Tensor]:
    """Sphere pairs [P, 2] closer than 1 + reach and (sphere, triangle) pairs [W, 2] closer
    than 1/2 + reach diameters."""
    pairs = cKDTree(x.numpy()).query_pairs(1.0 + reach, output_type="ndarray")
    contacts = closest_point_on_triangles(x, triangles, 0.5 + reach)
    walls = torch.stack([contacts.point_index, contacts.triangle_index], dim=1)
    return torch.from_numpy(pairs.astype(np.int64)).reshape(-1, 2), walls


def _contact_forces(x: Tensor, v: Tensor, pairs: Tensor, walls: Tensor, triangles: Tensor):
    """[N, 3] spring-dashpot forces of touching pairs [P, 2] and walls [W, 2] (never pulling)."""
    force = torch.zeros_like(x)
    i, j = pairs.T
    push = _spring_dashpot(x[i] - x[j], v[i] - v[j], 1.0, PAIR_DAMPING)
    force.index_add_(0, i, push).index_add_(0, j, -push)
    k, feet = _wall_feet(x, walls, triangles)
    return force.index_add_(0, k, _spring_dashpot(x[k] - feet, v[k], 0.5, WALL_DAMPING))


def _spring_dashpot(offsets: Tensor, velocity: Tensor, contact: float, damping: float) -> Tensor:
    """[P, 3] force along offsets [P, 3] for an overlap (contact - |offset|)_+, damped by the
    normal relative velocity [P, 3]; zero for pairs apart and never attractive."""
    distance = row_dot(offsets, offsets).sqrt_().clamp_min_(1e-12)[:, None]
    normal = offsets / distance
    overlap = (contact - distance).clamp_min(0.0)
    approach = row_dot(velocity, normal)[:, None]
    magnitude = (STIFFNESS * overlap - damping * approach).clamp_min(0.0)
    return torch.where(overlap > 0, magnitude, 0.0) * normal


def _wall_feet(x: Tensor, walls: Tensor, triangles: Tensor) -> tuple[Tensor, Tensor]:
    """Sphere index [C] and wall contact point [C, 3] of each distinct touching contact of the
    (sphere, triangle) pairs [W, 2]. Triangles meeting at the contact point (an edge, a fan's
    centre) give the same point: it counts once, else a sphere there feels many springs."""
    feet = closest_point_on_triangle_pairs(x[walls[:, 0]], triangles[walls[:, 1]])
    touching = (x[walls[:, 0]] - feet).norm(dim=1) < 0.5
    sphere, feet = walls[touching, 0], feet[touching]
    keys = torch.cat([sphere[:, None].to(feet.dtype), torch.round(feet * 1e6)], dim=1)
    order, starts = equal_rows(keys.numpy())
    first = torch.from_numpy(order[starts])
    return sphere[first], feet[first]


def _check_overlaps(x: Tensor, triangles: Tensor) -> None:
    """FillError when the settled spheres (diameters) overlap more than MAX_OVERLAP."""
    pairs, walls = _contact_lists(x, triangles, 0.0)
    pair_overlap = 1.0 - (x[pairs[:, 0]] - x[pairs[:, 1]]).norm(dim=1)
    k, feet = _wall_feet(x, walls, triangles)
    wall_overlap = 0.5 - (x[k] - feet).norm(dim=1)
    worst = max(pair_overlap.max().item() if len(pairs) else 0.0,
                wall_overlap.max().item() if len(walls) else 0.0)  # fmt: skip
    if worst > MAX_OVERLAP:
        raise FillError(
            f"the settled bed keeps overlaps of {worst:.1%} of a diameter (limit "
            f"{MAX_OVERLAP:.0%}); the container may be too small for {len(x)} particles"
        )
