"""What the analysis needs to know about a trajectory's container and material.

A trajectory from `bgnn generate` or a rollout carries its scenario in `attrs`; a user's LIGGGHTS
dumps carry nothing but particles, so every fact here has a fallback read from the walls, and an
explicit argument wins over both.
"""

from __future__ import annotations

import math

import numpy as np

from bgnn_sim.errors import BgnnError
from bgnn_sim.geometry.wall import Rotation, Wall
from bgnn_sim.trajectory import Trajectory

REFERENCE_DENSITY = 2500.0  # kg/m^3, the reference material of the datasets (glass beads)


def particle_density(traj: Trajectory, density: float | None = None) -> float:
    """Solid density (kg/m^3): the argument, else the trajectory's material, else the reference."""
    if density is not None:
        return density
    return float(traj.attrs.get("material", {}).get("density", REFERENCE_DENSITY))


def particle_masses(traj: Trajectory, density: float | None = None) -> np.ndarray:
    """Mass of each particle [N] (kg): solid spheres of the trajectory's radii."""
    return 4.0 / 3.0 * math.pi * traj.radius**3 * particle_density(traj, density)


def container_kind(traj: Trajectory) -> str | None:
    """ "hopper", "drum" or None: from the scenario attrs, else from the scene.

    Without attrs, a rotating wall makes a drum, and a sink or a removable wall (a gate) a
    hopper.
    """
    kind = traj.attrs.get("kind") or traj.attrs.get("scenario", {}).get("kind")
    if kind in ("hopper", "drum"):
        return kind
    if rotating_wall(traj) is not None:
        return "drum"
    if traj.sinks or any(wall.removed_at is not None for wall in traj.walls):
        return "hopper"
    return None


def rotating_wall(traj: Trajectory) -> Wall | None:
    """The first wall that rotates, or None."""
    return next((w for w in traj.walls if isinstance(w.motion, Rotation)), None)


def outlet_height(traj: Trajectory, outlet_z: float | None = None) -> float:
    """Height (m) of the hopper's outlet plane: the argument, else the one the scenario records
    (a simulation's `outlet_z`), else the lowest point of the walls that stay (the gate, removed
    when the discharge starts, is not part of the hopper).
    """
    if outlet_z is not None:
        return outlet_z
    if "outlet_z" in traj.attrs.get("scenario", {}):
        return float(traj.attrs["scenario"]["outlet_z"])
    staying = [w.vertices_at(0.0) for w in traj.walls if w.removed_at is None]
    if not staying:
        raise BgnnError("the trajectory has no walls to find the outlet; give --outlet-z")
    return float(min(v[:, 2].min() for v in staying))


def drum_axis(wall: Wall) -> tuple[np.ndarray, np.ndarray]:
    """Unit rotation axis [3] and a point on it [3] of a rotating wall."""
    axis = np.asarray(wall.motion.axis, dtype=float)
    return axis / np.linalg.norm(axis), np.asarray(wall.motion.origin, dtype=float)


def drum_radius(wall: Wall) -> float:
    """Largest distance (m) of the wall's vertices from its rotation axis."""
    axis, origin = drum_axis(wall)
    offsets = wall.vertices - origin
    radial = offsets - np.outer(offsets @ axis, axis)
    return float(np.linalg.norm(radial, axis=1).max())
