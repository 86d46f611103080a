"""Walls: a triangle mesh with a rigid motion, and the removable gate of a hopper.

A motion maps time to a rigid pose (a 4x4 transform of the mesh as loaded) and gives the velocity
of material points on the wall, which the graph uses as the wall velocity at a contact point.
Motions are plain frozen dataclasses so they serialise to JSON for the HDF5 store and configs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import trimesh

# A rollout's frame times are sums of its frame step: a frame meant to fall on a wall's
# removal may land a few ulp before it, and would still hold the wall.
TIME_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Static:
    """A wall that never moves."""

    def transform(self, t: float) -> np.ndarray:
        """Pose at time t: [4, 4]."""
        return np.eye(4)

    def velocity(self, points: np.ndarray, t: float) -> np.ndarray:
        """Velocity [P, 3] (m/s) of wall material at `points` [P, 3] (posed at time t)."""
        return np.zeros_like(points, dtype=float)


@dataclass(frozen=True)
class Rotation:
    """Rotation about `axis` through `origin` at `rpm` revolutions per minute, from `start`."""

    axis: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rpm: float = 0.0
    start: float = 0.0

    @property
    def omega(self) -> np.ndarray:
        """Angular velocity vector [3] in rad/s."""
        axis = np.asarray(self.axis, dtype=float)
        return axis / np.linalg.norm(axis) * (2.0 * math.pi * self.rpm / 60.0)

    def transform(self, t: float) -> np.ndarray:
        angle = 2.0 * math.pi * self.rpm / 60.0 * max(t - self.start, 0.0)
        return trimesh.transformations.rotation_matrix(angle, self.axis, self.origin)

    def velocity(self, points: np.ndarray, t: float) -> np.ndarray:
        if t < self.start:
            return np.zeros_like(points, dtype=float)
        return np.cross(self.omega, points - np.asarray(self.origin, dtype=float))


@dataclass(frozen=True)
class Translation:
    """Translation at constant `velocity` (m/s) between `start` and `stop` seconds."""

    velocity_ms: tuple[float, float, float]
    start: float = 0.0
    stop: float = math.inf

    def transform(self, t: float) -> np.ndarray:
        duration = min(max(t - self.start, 0.0), self.stop - self.start)
        pose = np.eye(4)
        pose[:3, 3] = np.asarray(self.velocity_ms, dtype=float) * duration
        return pose

    def velocity(self, points: np.ndarray, t: float) -> np.ndarray:
        moving = self.start <= t < self.stop
        return np.broadcast_to(np.asarray(self.velocity_ms, dtype=float) * moving, points.shape)


Motion = Static | Rotation | Translation
_MOTIONS: dict[str, type] = {cls.__name__.lower(): cls for cls in (Static, Rotation, Translation)}


def motion_to_dict(motion: Motion) -> dict[str, Any]:
    """JSON-serialisable description of a motion (inverse of `motion_from_dict`)."""
    return {"kind": type(motion).__name__.lower(), **asdict(motion)}


def motion_from_dict(data: dict[str, Any]) -> Motion:
    """Rebuild a motion from `motion_to_dict` output."""
    fields = dict(data)
    kind = fields.pop("kind")
    if kind not in _MOTIONS:
        raise ValueError(f"unknown wall motion {kind!r}; expected one of {sorted(_MOTIONS)}")
    return _MOTIONS[kind](**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


@dataclass
class Wall:
    """A triangle mesh that contains particles.

    Attributes:
        name: label shown in outputs (e.g. "hopper", "gate").
        vertices: [V, 3] float64, metres, the mesh as loaded (pose at t = 0 for all motions).
        faces: [F, 3] int64 vertex indices.
        motion: rigid motion of the whole wall.
        removed_at: time (s) at which the wall disappears (an opening gate); None = never.
    """

    name: str
    vertices: np.ndarray
    faces: np.ndarray
    motion: Motion = field(default_factory=Static)
    removed_at: float | None = None

    def present_at(self, t: float) -> bool:
        return self.removed_at is None or t < self.removed_at - TIME_TOLERANCE

    def vertices_at(self, t: float) -> np.ndarray:
        """Vertices [V, 3] at time t."""
        pose = self.motion.transform(t)
        return self.vertices @ pose[:3, :3].T + pose[:3, 3]

    def triangles_at(self, t: float) -> np.ndarray:
        """Triangle corners [F, 3, 3] at time t."""
        return self.vertices_at(t)[self.faces]

    def velocity_at(self, points: np.ndarray, t: float) -> np.ndarray:
        """Velocity [P, 3] of the wall's material at `points` [P, 3] (posed at time t)."""
        return self.motion.velocity(points, t)

    def to_trimesh(self, t: float = 0.0) -> trimesh.Trimesh:
        return trimesh.Trimesh(self.vertices_at(t), self.faces, process=False)


def make_gate(
    center: tuple[float, float, float], half_width: float, open_at: float, name: str = "gate"
) -> Wall:
    """A horizontal square plate centred at `center` that closes an outlet until `open_at` s.

    Args:
        center: centre of the outlet plane (metres).
        half_width: half the side of the plate; make it larger than the outlet.
        open_at: time (s) at which the gate is removed and the hopper starts to discharge.
    """
    c = np.asarray(center, dtype=float)
    corners = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], dtype=float)
    vertices = c + corners * np.array([half_width, half_width, 0.0])
    faces = np.array([[0, 1, 2], [0, 2, 3]], dtype=np.int64)
    return Wall(name=name, vertices=vertices, faces=faces, removed_at=open_at)


def posed_triangles(walls: list[Wall], t: float) -> tuple[list[Wall], np.ndarray, np.ndarray]:
    """The walls present at time t, all their triangles [F, 3, 3] posed at t (F may be 0), and
    the owner [F] of each triangle (its index into that list)."""
    present = [w for w in walls if w.present_at(t)]
    posed = [w.triangles_at(t) for w in present]
    triangles = np.concatenate(posed) if posed else np.zeros((0, 3, 3))
    return present, triangles, np.repeat(np.arange(len(present)), [len(p) for p in posed])


def present_triangles(walls: list[Wall], t: float) -> np.ndarray:
    """Triangles [F, 3, 3] of every wall present at time t, posed at t (F may be 0)."""
    return posed_triangles(walls, t)[1]


def wall_velocities(
    walls: list[Wall], owner: np.ndarray, points: np.ndarray, t: float
) -> np.ndarray:
    """[P, 3] velocity (m/s) of the material of wall `walls[owner[p]]` at `points[p]` [P, 3]
    (posed at time t); the loop runs over the few walls, never over points."""
    velocity = np.zeros_like(points, dtype=float)
    for k, wall in enumerate(walls):
        mine = owner == k
        if mine.any():
            velocity[mine] = wall.velocity_at(points[mine], t)
    return velocity


def walls_bounds(walls: list[Wall]) -> np.ndarray:
    """[2, 3] min and max corners of the walls' vertices as loaded (at rest)."""
    vertices = np.concatenate([w.vertices for w in walls])
    return np.stack([vertices.min(axis=0), vertices.max(axis=0)])
