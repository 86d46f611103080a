"""Particle flow: hopper discharge, flow rate, Beverloo's law; drum velocity profile and angle.

Hopper (BGNN's "flow" evaluation): a particle has been discharged at time t once it is below the
outlet plane or has left the simulation (a sink removed it). Of the n0 particles above the plane
at the first frame,

    discharged(t) = n0 - #{j : active_j(t) and z_j(t) > z_outlet},   fraction(t) = discharged / n0

and the discharged mass weighs each particle by m_j = 4/3 pi r_j^3 rho. The mass flow rate is the
slope of a least-squares line through the discharged mass in the steady part of the discharge
(between 20 % and 80 % of the final discharged mass by default), with the slope's standard error.

Drum: the velocity profile is BGNN's per-height displacement bins (mean speed of the particles in
each height bin, over all frame steps), and the dynamic angle of repose is the slope of the free
surface seen along the rotation axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bgnn_sim.analysis.scene import drum_axis, drum_radius, particle_masses, rotating_wall
from bgnn_sim.errors import BgnnError
from bgnn_sim.physics import GRAVITY
from bgnn_sim.trajectory import Trajectory


@dataclass(frozen=True)
class Discharge:
    """Discharged particles of a hopper over time.

    Attributes:
        time: [T] seconds.
        count: [T] particles discharged by each frame.
        mass: [T] kg discharged by each frame.
        n_initial: particles above the outlet at the first frame.
        mass_initial: their mass (kg).
    """

    time: np.ndarray
    count: np.ndarray
    mass: np.ndarray
    n_initial: int
    mass_initial: float

    @property
    def fraction(self) -> np.ndarray:
        """[T] fraction of the initial particles discharged."""
        return self.count / max(self.n_initial, 1)

    def time_to_fraction(self, fraction: float) -> float:
        """First time (s) the discharged fraction reaches `fraction` (linear between frames);
        NaN when it never does.
        """
        reached = np.flatnonzero(self.fraction >= fraction)
        if len(reached) == 0:
            return math.nan
        k = reached[0]
        if k == 0:
            return float(self.time[0])
        f0, f1 = self.fraction[k - 1], self.fraction[k]
        return float(np.interp(fraction, [f0, f1], self.time[k - 1 : k + 1]))


def discharge(traj: Trajectory, outlet_z: float, density: float | None = None) -> Discharge:
    """Discharge curve through the horizontal plane z = outlet_z (see the module docstring)."""
    above = traj.active & (traj.positions[..., 2] > outlet_z)  # [T, N]
    counted = above[0]
    masses = particle_masses(traj, density) * counted
    remaining = above & counted
    return Discharge(
        time=traj.time,
        count=counted.sum() - remaining.sum(axis=1),
        mass=masses.sum() - remaining @ masses,
        n_initial=int(counted.sum()),
        mass_initial=float(masses.sum()),
    )


@dataclass(frozen=True)
class FlowRate:
    """Mass flow rate fitted over [start, stop] seconds: rate ± stderr in kg/s."""

    rate: float
    stderr: float
    start: float
    stop: float


def mass_flow_rate(curve: Discharge, low: float = 0.2, high: float = 0.8) -> FlowRate | None:
    """Slope of the discharged mass between `low` and `high` of its final value (None when the
    steady part has fewer than 3 frames, e.g. a hopper that never flowed).
    """
    final = curve.mass[-1]
    steady = (curve.mass >= low * final) & (curve.mass <= high * final)
    if final <= 0 or steady.sum() < 3:
        return None
    from scipy import stats  # here: its import takes ~0.5 s, which a drum's analysis never needs

    fit = stats.linregress(curve.time[steady], curve.mass[steady])
    times = curve.time[steady]
    return FlowRate(float(fit.slope), float(fit.stderr), float(times[0]), float(times[-1]))


def beverloo_rate(
    outlet: float,
    particle_diameter: float,
    bulk_density: float,
    shape: str = "conical",
    slot_length: float | None = None,
    c: float = 0.58,
    k: float = 1.5,
) -> float:
    """Beverloo's discharge rate (kg/s), a sanity reference good to some tens of per cent.

    Circular outlet of diameter D (the classic law): W = C rho_b sqrt(g) (D - k d)^(5/2).
    Other outlets use its area form W = (4C/pi) rho_b sqrt(g) A_eff sqrt(D_eff), which is the
    classic law for a circle, with the "empty annulus" k d/2 removed from every edge:
    square (pyramid) of side D: A_eff = (D - k d)^2; slot (wedge) of width D and length L:
    A_eff = (D - k d)(L - k d), D_eff = D - k d.

    Args:
        outlet: outlet diameter, side or slot width (m).
        particle_diameter: d (m).
        bulk_density: rho_b (kg/m^3), about 0.6 of the solid density for a random packing.
        shape: "conical" (circle), "pyramid" (square) or "wedge" (slot).
        slot_length: L of a wedge's slot (m).
    """
    width = outlet - k * particle_diameter
    if width <= 0:
        return 0.0
    if shape == "conical":
        return c * bulk_density * math.sqrt(GRAVITY) * width**2.5
    if shape == "pyramid":
        area = width**2
    elif shape == "wedge":
        if slot_length is None:
            raise BgnnError("Beverloo for a slot outlet needs its length")
        area = width * max(slot_length - k * particle_diameter, 0.0)
    else:
        raise BgnnError(f"unknown outlet shape {shape!r}: conical, pyramid or wedge")
    return 4.0 * c / math.pi * bulk_density * math.sqrt(GRAVITY) * area * math.sqrt(width)


@dataclass(frozen=True)
class VelocityProfile:
    """Mean particle speed per height bin (BGNN's drum flow profile).

    Attributes:
        height: [B] bin centres along z (m).
        speed: [B] mean speed (m/s) of the particles in each bin over all frame steps
            (NaN where no particle ever was).
        count: [B] particle-steps counted in each bin.
    """

    height: np.ndarray
    speed: np.ndarray
    count: np.ndarray


def velocity_profile(
    traj: Trajectory, bounds: tuple[float, float], bins: int = 20, start: float | None = None
) -> VelocityProfile:
    """Speeds |x(t+1) - x(t)| / dt binned by the height z(t), for frame steps from `start`.

    `bounds` (z_low, z_high) fixes the bins so that two trajectories of one drum share them.
    """
    first = 0 if start is None else int(np.searchsorted(traj.time, start))
    positions, active = traj.positions[first:], traj.active[first:]
    dt = np.diff(traj.time[first:])[:, None]  # [T-1, 1]
    both = active[:-1] & active[1:]
    speed = np.linalg.norm(positions[1:] - positions[:-1], axis=-1) / dt
    edges = np.linspace(*bounds, bins + 1)
    heights = positions[:-1, :, 2][both]
    count, _ = np.histogram(heights, edges)
    total, _ = np.histogram(heights, edges, weights=speed[both])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, np.nan)
    return VelocityProfile(height=(edges[:-1] + edges[1:]) / 2, speed=mean, count=count)


@dataclass(frozen=True)
class ReposeAngle:
    """Dynamic angle of repose of a drum's free surface.

    Attributes:
        time: [T] seconds.
        angle: [T] degrees from the horizontal, NaN where the surface could not be fitted.
        mean, std: over the frames from `steady_from` seconds on (NaN when none).
        steady_from: start of the averaging (s).
    """

    time: np.ndarray
    angle: np.ndarray
    mean: float
    std: float
    steady_from: float


def repose_angle(
    traj: Trajectory, columns: int = 10, span: float = 0.7, settle: float = 0.25
) -> ReposeAngle:
    """Angle of the free surface in the drum's cross-section, frame by frame.

    Looking along the axis, the cross-section has a horizontal coordinate u (perpendicular to
    the axis and to gravity) and the height z. The central `span` of the drum's diameter is cut
    into `columns` columns; the highest particle centre of each column traces the surface, and
    the angle is atan|slope| of a least-squares line through those points. The walls' edges are
    left out because the bed bends there. The mean is taken over frames later than `settle` of a
    revolution after the rotation starts.
    """
    wall = rotating_wall(traj)
    if wall is None:
        raise BgnnError("the angle of repose needs a rotating drum wall")
    axis, origin = drum_axis(wall)
    across = np.cross(axis, [0.0, 0.0, 1.0])
    if np.linalg.norm(across) < 1e-6:
        raise BgnnError("the angle of repose needs a drum axis that is not vertical")
    across /= np.linalg.norm(across)
    half = span * drum_radius(wall)
    edges = np.linspace(-half, half, columns + 1)
    u = (traj.positions - origin) @ across  # [T, N]
    angle = np.array([_surface_angle(u[t], traj.positions[t, :, 2], traj.active[t], edges)
                      for t in range(traj.n_frames)])  # fmt: skip
    steady_from = wall.motion.start + settle * 60.0 / max(wall.motion.rpm, 1e-9)
    steady = angle[(traj.time >= steady_from) & np.isfinite(angle)]
    mean, std = (float(steady.mean()), float(steady.std())) if len(steady) else (math.nan,) * 2
    return ReposeAngle(traj.time, angle, mean, std, steady_from)


def _surface_angle(u: np.ndarray, z: np.ndarray, active: np.ndarray, edges: np.ndarray) -> float:
    """Angle (deg) of the line through the highest point per column; u, z, active: [N]."""
    column = np.digitize(u, edges) - 1
    inside = active & (column >= 0) & (column < len(edges) - 1)
    top = np.full(len(edges) - 1, -np.inf)
    np.maximum.at(top, column[inside], z[inside])
    filled = np.isfinite(top)
    if filled.sum() < 3:
        return math.nan
    centres = (edges[:-1] + edges[1:]) / 2
    slope = np.polyfit(centres[filled], top[filled], 1)[0]
    return math.degrees(math.atan(abs(slope)))
