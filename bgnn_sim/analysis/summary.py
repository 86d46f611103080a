"""Everything a user measures on one trajectory, picked by the container it flows in."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bgnn_sim.analysis.distances import kinetic_energy
from bgnn_sim.analysis.flow import (
    Discharge,
    FlowRate,
    ReposeAngle,
    VelocityProfile,
    beverloo_rate,
    discharge,
    mass_flow_rate,
    repose_angle,
    velocity_profile,
)
from bgnn_sim.analysis.leakage import Leakage, leakage_report
from bgnn_sim.analysis.mixing import MixingCurve, mixing_curve
from bgnn_sim.analysis.scene import (
    container_kind,
    drum_radius,
    outlet_height,
    particle_density,
    rotating_wall,
)
from bgnn_sim.trajectory import Trajectory

BULK_FRACTION = 0.6  # solid fraction of a poured bed: bulk density = 0.6 x solid density


@dataclass(frozen=True)
class AnalysisOptions:
    """Choices a user can override (CLI flags of bgnn analyze / compare).

    Attributes:
        outlet_z: height of the hopper's outlet plane (m); default the walls' lowest point.
        density: solid density (kg/m^3); default the trajectory's material, else 2500.
        mixing_bins: bins per axis of the mixing grid (BGNN: 9).
        profile_bins: height bins of the drum velocity profile.
    """

    outlet_z: float | None = None
    density: float | None = None
    mixing_bins: int = 9
    profile_bins: int = 20


@dataclass(frozen=True)
class Analysis:
    """The curves of one trajectory; a part is None where it does not apply.

    Attributes:
        kind: "hopper", "drum" or None (unknown container).
        time: [T] seconds.
        discharge, flow_rate, beverloo, opening: hopper discharge curve, fitted mass flow rate,
            Beverloo's rate (kg/s, when the outlet's shape is known) and the gate's opening time.
        mixing: entropy and Lacey index, for two particle types.
        profile, repose: drum velocity profile and dynamic angle of repose.
        kinetic_energy: [T] joules.
        leakage: wall crossings (and particles outside a closed container) per frame.
        guard_corrections: [T] particles the rollout's wall guard moved per frame; None when
            the trajectory has no guard record (LIGGGHTS, a raw rollout).
    """

    kind: str | None
    time: np.ndarray
    kinetic_energy: np.ndarray
    leakage: Leakage
    discharge: Discharge | None = None
    flow_rate: FlowRate | None = None
    beverloo: float | None = None
    opening: float = math.nan
    mixing: MixingCurve | None = None
    profile: VelocityProfile | None = None
    repose: ReposeAngle | None = None
    guard_corrections: np.ndarray | None = None

    def t50(self) -> float:
        """Time (s) from the gate's opening (or the first frame) to half the bed discharged."""
        if self.discharge is None:
            return math.nan
        start = self.opening if math.isfinite(self.opening) else self.time[0]
        return self.discharge.time_to_fraction(0.5) - start

    def leakage_counts(self, prefix: str = "") -> dict[str, int]:
        """Wall crossings over the run and, for a closed container, the most particles outside."""
        out = {f"{prefix}leakage_crossings": self.leakage.total_crossings}
        if self.leakage.outside is not None:
            out[f"{prefix}leakage_outside_max"] = self.leakage.peak_outside
        return out

    def guard_counts(self) -> dict[str, int]:
        """The wall guard's corrections over the run, when the trajectory records them."""
        if self.guard_corrections is None:
            return {}
        return {"guard_corrections": int(self.guard_corrections.sum())}

    def scalars(self) -> dict[str, float]:
        """The headline numbers of this trajectory (metrics.json / summary.json)."""
        out = {
            "frames": len(self.time),
            "duration_s": float(self.time[-1] - self.time[0]),
            **self.leakage_counts(),
            **self.guard_counts(),
        }
        if self.discharge is not None:
            out["discharged_fraction_final"] = float(self.discharge.fraction[-1])
            out["t50_s"] = self.t50()
        if self.flow_rate is not None:
            out["mass_flow_rate_kg_s"] = self.flow_rate.rate
            out["mass_flow_rate_stderr_kg_s"] = self.flow_rate.stderr
        if self.beverloo is not None:
            out["beverloo_rate_kg_s"] = self.beverloo
        if self.mixing is not None:
            out["mixing_entropy_final"] = float(self.mixing.entropy[-1])
            out["lacey_final"] = float(self.mixing.lacey[-1])
        if self.repose is not None:
            out["repose_angle_deg"] = self.repose.mean
        return out


def analyze(traj: Trajectory, options: AnalysisOptions | None = None) -> Analysis:
    """Measure `traj`: flow for its container kind, mixing when it has two types, energy and
    leakage always."""
    options = options or AnalysisOptions()
    kind = container_kind(traj)
    parts = FLOW_PARTS[kind](traj, options) if kind in FLOW_PARTS else {}
    if len(np.unique(traj.types)) == 2:
        parts["mixing"] = mixing_curve(traj, bins=options.mixing_bins)
    return Analysis(
        kind=kind,
        time=traj.time,
        kinetic_energy=kinetic_energy(traj, options.density),
        leakage=leakage_report(traj),
        guard_corrections=traj.guard_corrections,
        **parts,
    )


def _hopper_parts(traj: Trajectory, options: AnalysisOptions) -> dict:
    curve = discharge(traj, outlet_height(traj, options.outlet_z), options.density)
    gates = [w.removed_at for w in traj.walls if w.removed_at is not None]
    return {
        "discharge": curve,
        "flow_rate": mass_flow_rate(curve),
        "beverloo": _beverloo(traj, options),
        "opening": min(gates) if gates else math.nan,
    }


def _beverloo(traj: Trajectory, options: AnalysisOptions) -> float | None:
    """Beverloo's rate for the scenario's outlet, when the trajectory records its shape."""
    spec = traj.attrs.get("scenario", {}).get("spec")
    if not spec:
        return None
    bulk = BULK_FRACTION * particle_density(traj, options.density)
    diameter = 2.0 * float(np.median(traj.radius))
    return beverloo_rate(spec["outlet"], diameter, bulk, spec["shape"], spec.get("depth"))


def _drum_parts(traj: Trajectory, options: AnalysisOptions) -> dict:
    wall = rotating_wall(traj)
    if wall is None:  # a drum recorded without its rotation: no flow to measure
        return {}
    radius = drum_radius(wall)
    centre = float(wall.motion.origin[2])
    bounds = (centre - radius, centre + radius)
    return {
        "profile": velocity_profile(traj, bounds, options.profile_bins, wall.motion.start),
        "repose": repose_angle(traj),
    }


# The flow measured for each container kind (the name a trajectory's attrs give it).
FLOW_PARTS = {"hopper": _hopper_parts, "drum": _drum_parts}
