"""Physical sanity checks of a generated trajectory, recorded in the dataset manifest.

- containment: no particle overlaps a wall by more than a tenth of its radius (LIGGGHTS's soft
  contacts overlap a little), measured exactly against the posed wall triangles, and no particle
  centre is beyond a wall (escaped through it);
- rest: the bed recorded before the gate opens (hopper) or the rotation starts (drum) is at
  rest-ish (root-mean-square particle speed of every such frame under REST_RMS_SPEED; a few
  rattlers may still move);
- bookkeeping: every inserted particle is recorded, and a particle only disappears through the
  sink below the outlet (inserted = remaining + sunk).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from bgnn_sim.dem.config import Material
from bgnn_sim.dem.scenarios import DrumScenario, HopperScenario
from bgnn_sim.geometry.proximity import closest_point_on_triangles
from bgnn_sim.geometry.wall import present_triangles
from bgnn_sim.trajectory import Trajectory

OVERLAP_TOLERANCE = 0.1  # in radii
REST_RMS_SPEED = 0.01  # m/s


def sanity_checks(traj: Trajectory, scenario, material: Material, start: float) -> dict:
    """Run every check; returns {"passed": bool, name: {"passed": bool, ...figures}}.

    Args:
        traj: the run's trajectory (with velocities).
        scenario: the HopperScenario or DrumScenario that produced it.
        material: the particles' material.
        start: time (s) at which the gate opens or the rotation starts.
    """
    overlap = max_wall_overlap(traj, material.radius)
    escaped = int((_outside_distance(traj, scenario, material) > material.radius).sum())
    containment = {
        "passed": bool(overlap <= OVERLAP_TOLERANCE * material.radius and escaped == 0),
        "max_overlap_m": overlap,
        "escaped": escaped,
    }
    checks = {
        "containment": containment,
        "rest": _rest(traj, start),
        "bookkeeping": _bookkeeping(traj, scenario),
    }
    checks["passed"] = all(c["passed"] for c in checks.values())
    return checks


def max_wall_overlap(traj: Trajectory, radius: float) -> float:
    """Largest overlap (m) of a particle with a wall present at that frame (0 if none)."""
    worst = 0.0
    for t in range(traj.n_frames):
        points = torch.from_numpy(traj.positions[t][traj.active[t]])
        triangles = torch.from_numpy(present_triangles(traj.walls, traj.time[t]))
        contacts = closest_point_on_triangles(points, triangles, radius)
        if len(contacts.distance):
            worst = max(worst, radius - contacts.distance.min().item())
    return worst


def _outside_distance(traj: Trajectory, scenario, material: Material) -> np.ndarray:
    """How far each active particle centre is beyond where a touching sphere's centre can be.

    The profile formulas are exact on the walls' faces; near the outlet rim they overestimate
    by less than a radius, hence the escape threshold of one radius.
    """
    positions = traj.positions[traj.active]  # [K, 3]
    if isinstance(scenario, DrumScenario):
        radial = np.hypot(positions[:, 0], positions[:, 2]) - (scenario.radius - material.radius)
        axial = np.abs(positions[:, 1]) - (scenario.length / 2 - material.radius)
        return np.maximum(radial, axial)
    return _outside_hopper(positions, scenario, material)


def _outside_hopper(positions: np.ndarray, s: HopperScenario, m: Material) -> np.ndarray:
    """Distance outside the hopper's walls, for centres above the outlet (below it they fall)."""
    spec = s.spec
    above = positions[positions[:, 2] > 0.0]
    tan = math.tan(math.radians(spec.angle))
    half = spec.outlet / 2 + np.minimum(above[:, 2], spec.cone_height) * tan
    # Distance from a centre to a wall is measured along the wall's normal: inclined in the
    # converging section, horizontal in the vertical bin above it.
    cos = np.where(above[:, 2] < spec.cone_height, math.cos(math.radians(spec.angle)), 1.0)
    x, y = np.abs(above[:, 0]), np.abs(above[:, 1])
    if spec.shape == "conical":
        lateral = (np.hypot(x, y) - half) * cos
    elif spec.shape == "pyramid":
        lateral = (np.maximum(x, y) - half) * cos
    else:
        lateral = np.maximum((x - half) * cos, y - spec.depth / 2)
    return lateral + m.radius


def _rest(traj: Trajectory, start: float) -> dict:
    """RMS and max particle speed over the frames recorded before `start` (and the first)."""
    frame_dt = traj.time[1] - traj.time[0] if traj.n_frames > 1 else 1.0
    before = traj.time < start - 0.5 * frame_dt
    before[0] = True  # the first frame is at rest in both families
    speed2 = np.sum(traj.velocities[before].astype(np.float64) ** 2, axis=-1)  # [K, N]
    active = traj.active[before]
    rms = np.sqrt((speed2 * active).sum(axis=1) / np.maximum(active.sum(axis=1), 1)).max()
    return {
        "passed": bool(rms <= REST_RMS_SPEED),
        "rms_speed_ms": float(rms),
        "max_speed_ms": float(np.sqrt(speed2[active].max())),
    }


def _bookkeeping(traj: Trajectory, scenario) -> dict:
    """Inserted = remaining + sunk, where only a hopper's particles below the outlet may sink."""
    inserted = scenario.n_particles
    recorded = int(traj.active[0].sum())
    remaining = int(traj.active[-1].sum())
    gone = ~traj.active[-1]
    last = traj.n_frames - 1 - np.argmax(traj.active[::-1], axis=0)  # [N] last frame present
    last_z = traj.positions[last, np.arange(traj.n_particles), 2]
    may_sink = scenario.may_leave(last_z)
    vanished = int((gone & ~may_sink).sum())
    return {
        "passed": bool(recorded == inserted == traj.n_particles and vanished == 0),
        "inserted": inserted,
        "remaining": remaining,
        "sunk": inserted - remaining - vanished,
        "vanished_outside_sink": vanished,
    }
