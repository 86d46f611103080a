"""A rollout against a reference (LIGGGHTS): curve errors, distances and leakage, one dict.

The two trajectories are aligned on physical time: a frame of one is paired with the frame of the
other nearest in time, when that is within half the finer frame stride. So a rollout every 1 ms
compares with dumps every 2 ms at the dumps' times. Particles are paired by LIGGGHTS id.

Metrics (all computed over the paired frames; "error" is rollout minus reference, absolute):
    discharge_fraction_max_error   max_t |f_roll(t) - f_ref(t)| of the discharged fraction
    t50_error_s, t50_relative_error  time to 50 % discharged, from the gate's opening
    mass_flow_rate_relative_error  |W_roll - W_ref| / W_ref of the fitted steady flow rate
    mixing_entropy_max_error, mixing_entropy_mean_error (nats), lacey_max_error
    repose_angle_error_deg         |mean dynamic angle of repose difference|
    velocity_profile_rms_error_ms  RMS over height bins of the mean-speed difference
    kinetic_energy_relative_error  sum_t |E_roll - E_ref| / sum_t E_ref
    wasserstein_mean_m, wasserstein_max_m  W2 between the clouds at a few paired frames
    sinkhorn_mean_m                debiased Sinkhorn divergence at the same frames
    overlap_mean_m                 mean overlap of the touching grains at the same frames, pooled
                                   (reference_overlap_mean_m: the reference's)
    position_error_horizon_m       mean distance between same-id particles `horizon` frames in
    leakage_crossings, leakage_outside_max  of the rollout (reference_... of the reference)
    guard_corrections              particles the rollout's wall guard moved, over the run (when
                                   the rollout records them: absent for a raw rollout)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bgnn_sim.analysis.contacts import overlaps
from bgnn_sim.analysis.distances import position_error, sinkhorn_divergence, wasserstein
from bgnn_sim.analysis.summary import Analysis, AnalysisOptions, analyze
from bgnn_sim.errors import BgnnError
from bgnn_sim.trajectory import Trajectory

# Every metric `compare` can report (those of a hopper or of a drum; the leakage counts of both
# trajectories): `--fail-above` names are checked against it before a comparison runs.
METRICS = (
    "paired_frames", "kinetic_energy_relative_error", "discharge_fraction_max_error",
    "t50_error_s", "t50_relative_error", "mass_flow_rate_relative_error",
    "mixing_entropy_max_error", "mixing_entropy_mean_error", "lacey_max_error",
    "repose_angle_error_deg", "velocity_profile_rms_error_ms", "wasserstein_mean_m",
    "wasserstein_max_m", "sinkhorn_mean_m", "overlap_mean_m", "reference_overlap_mean_m",
    "horizon_frames", "position_error_horizon_m",
    "leakage_crossings", "leakage_outside_max", "reference_leakage_crossings",
    "reference_leakage_outside_max", "guard_corrections",
)  # fmt: skip


@dataclass(frozen=True)
class Comparison:
    """A rollout's analysis next to its reference's, and their distances.

    Attributes:
        rollout, reference: each trajectory's own curves (all its frames).
        pairs: ([K], [K]) frame indices of the rollout and of the reference at the same times.
        time: [K] the paired times (the rollout's).
        position_error: [K] mean distance (m) between same-id particles.
        distance_time: [D] times of the cloud distances.
        wasserstein, sinkhorn: [D] metres.
        metrics: the scalar metrics of the module docstring.
    """

    rollout: Analysis
    reference: Analysis
    pairs: tuple[np.ndarray, np.ndarray]
    time: np.ndarray
    position_error: np.ndarray
    distance_time: np.ndarray
    wasserstein: np.ndarray
    sinkhorn: np.ndarray
    metrics: dict[str, float]


def paired_frames(time_a: np.ndarray, time_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices ([K], [K]) of the frames of a and b at the same physical time (see module doc)."""
    strides = [np.median(np.diff(t)) for t in (time_a, time_b) if len(t) > 1]
    tolerance = 0.5 * min(strides, default=0.0) + 1e-9
    nearest = np.clip(np.searchsorted(time_b, time_a), 1, max(len(time_b) - 1, 1))
    left = nearest - 1
    nearest = np.where(np.abs(time_b[left] - time_a) <= np.abs(time_b[nearest] - time_a),
                       left, nearest) if len(time_b) > 1 else np.zeros_like(nearest)  # fmt: skip
    close = np.abs(time_b[nearest] - time_a) <= tolerance
    return np.flatnonzero(close), nearest[close]


def same_particles(rollout: Trajectory, reference: Trajectory) -> tuple[np.ndarray, np.ndarray]:
    """Column indices ([M], [M]) of the particles with the same id in both trajectories."""
    _, columns_r, columns_ref = np.intersect1d(rollout.ids, reference.ids, return_indices=True)
    return columns_r, columns_ref


def compare(
    rollout: Trajectory,
    reference: Trajectory,
    options: AnalysisOptions | None = None,
    distance_frames: int = 5,
    horizon: int = 10,
) -> Comparison:
    """Compare `rollout` with `reference` (see the module docstring for the metrics).

    Args:
        distance_frames: paired frames, evenly spread (first and last included), at which the
            clouds' distances are taken (the Sinkhorn divergence costs ~5 s per 1000-particle
            frame on 2 cores).
        horizon: frames after the first paired frame at which the position error is reported.
    """
    options = options or AnalysisOptions()
    frames_r, frames_ref = paired_frames(rollout.time, reference.time)
    if len(frames_r) == 0:
        raise BgnnError(
            f"the trajectories share no time: rollout {_span(rollout.time)}, "
            f"reference {_span(reference.time)}"
        )
    ours, theirs = analyze(rollout, options), analyze(reference, options)
    columns_r, columns_ref = same_particles(rollout, reference)
    errors = position_error(
        rollout.positions[frames_r][:, columns_r], reference.positions[frames_ref][:, columns_ref],
        rollout.active[frames_r][:, columns_r], reference.active[frames_ref][:, columns_ref],
    )  # fmt: skip
    chosen = _distance_frames(
        rollout.active[frames_r], reference.active[frames_ref], distance_frames
    )
    clouds = [(_cloud(rollout, frames_r[k]), _cloud(reference, frames_ref[k])) for k in chosen]
    w2 = np.array([wasserstein(a, b) for a, b in clouds])
    sinkhorn = np.array([sinkhorn_divergence(a, b) for a, b in clouds])
    overlap = _mean_overlap(rollout, frames_r[chosen])
    reference_overlap = _mean_overlap(reference, frames_ref[chosen])
    metrics = {
        "paired_frames": len(frames_r),
        **_curve_errors(ours, theirs, frames_r, frames_ref),
        "wasserstein_mean_m": float(w2.mean()) if len(w2) else math.nan,
        "wasserstein_max_m": float(w2.max()) if len(w2) else math.nan,
        "sinkhorn_mean_m": float(sinkhorn.mean()) if len(w2) else math.nan,
        "overlap_mean_m": overlap,
        "reference_overlap_mean_m": reference_overlap,
        "horizon_frames": min(horizon, len(frames_r) - 1),
        "position_error_horizon_m": float(errors[min(horizon, len(frames_r) - 1)]),
        **ours.leakage_counts(),
        **theirs.leakage_counts("reference_"),
        **ours.guard_counts(),
    }
    return Comparison(
        ours, theirs, (frames_r, frames_ref), rollout.time[frames_r], errors,
        rollout.time[frames_r[chosen]], w2, sinkhorn, metrics,
    )  # fmt: skip


def _distance_frames(active_r: np.ndarray, active_ref: np.ndarray, count: int) -> np.ndarray:
    """Indices of `count` paired frames, evenly spread over those where both trajectories still
    hold particles (a discharged hopper has no cloud to measure); active masks [F, N]."""
    occupied = np.flatnonzero(active_r.any(axis=1) & active_ref.any(axis=1))
    if len(occupied) == 0:
        return occupied
    picks = np.linspace(0, len(occupied) - 1, count).round().astype(int)
    return occupied[np.unique(picks)]


def _cloud(traj: Trajectory, frame: int) -> np.ndarray:
    """Positions [n_active, 3] of the particles present at `frame`."""
    return traj.positions[frame][traj.active[frame]]


def _mean_overlap(traj: Trajectory, frames: np.ndarray) -> float:
    """Mean overlap (m) of the touching pairs of all `frames`, pooled: a frame with a few
    grains left weighs as little as its few contacts. 0 with no contact, NaN with no frame."""
    if len(frames) == 0:
        return math.nan
    pooled = np.concatenate(
        [overlaps(_cloud(traj, k), traj.radius[traj.active[k]]) for k in frames]
    )
    return float(pooled.mean()) if len(pooled) else 0.0


def _span(time: np.ndarray) -> str:
    return f"{time[0]:.4g}-{time[-1]:.4g} s"


def _curve_errors(ours: Analysis, theirs: Analysis, frames_r, frames_ref) -> dict[str, float]:
    """Errors of the curves both analyses have, over the paired frames."""
    out: dict[str, float] = {
        "kinetic_energy_relative_error": _relative(
            np.abs(ours.kinetic_energy[frames_r] - theirs.kinetic_energy[frames_ref]).sum(),
            theirs.kinetic_energy[frames_ref].sum(),
        )
    }
    if ours.discharge is not None and theirs.discharge is not None:
        gap = ours.discharge.fraction[frames_r] - theirs.discharge.fraction[frames_ref]
        out["discharge_fraction_max_error"] = float(np.abs(gap).max())
        out["t50_error_s"] = ours.t50() - theirs.t50()
        out["t50_relative_error"] = _relative(abs(out["t50_error_s"]), theirs.t50())
    if ours.flow_rate is not None and theirs.flow_rate is not None:
        gap = abs(ours.flow_rate.rate - theirs.flow_rate.rate)
        out["mass_flow_rate_relative_error"] = _relative(gap, theirs.flow_rate.rate)
    if ours.mixing is not None and theirs.mixing is not None:
        entropy = np.abs(ours.mixing.entropy[frames_r] - theirs.mixing.entropy[frames_ref])
        lacey = np.abs(ours.mixing.lacey[frames_r] - theirs.mixing.lacey[frames_ref])
        out["mixing_entropy_max_error"] = float(entropy.max())
        out["mixing_entropy_mean_error"] = float(entropy.mean())
        out["lacey_max_error"] = float(np.nanmax(lacey)) if np.isfinite(lacey).any() else math.nan
    if ours.repose is not None and theirs.repose is not None:
        out["repose_angle_error_deg"] = abs(ours.repose.mean - theirs.repose.mean)
        gap = ours.profile.speed - theirs.profile.speed
        both = np.isfinite(gap)
        out["velocity_profile_rms_error_ms"] = (
            float(np.sqrt(np.mean(gap[both] ** 2))) if both.any() else math.nan
        )
    return out


def _relative(error: float, reference: float) -> float:
    return float(error / reference) if reference != 0 and math.isfinite(reference) else math.nan
