"""Particle flow: discharge curves, flow rates, Beverloo, drum velocity profile and angle."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bgnn_sim.analysis.flow import (
    beverloo_rate,
    discharge,
    mass_flow_rate,
    repose_angle,
    velocity_profile,
)
from bgnn_sim.analysis.scene import container_kind, outlet_height, particle_masses
from bgnn_sim.geometry.generators import drum
from bgnn_sim.geometry.wall import Rotation, Wall
from bgnn_sim.io.hdf5 import read_trajectory
from bgnn_sim.trajectory import Trajectory
from tests.helpers import liggghts_hopper_run


def line_trajectory(z: np.ndarray, active: np.ndarray | None = None, walls=()) -> Trajectory:
    """Particles on the z axis: z [T, N] heights."""
    n_frames, n = z.shape
    positions = np.zeros((n_frames, n, 3))
    positions[..., 2] = z
    return Trajectory(
        time=np.arange(n_frames) * 1e-3,
        positions=positions,
        active=np.ones((n_frames, n), bool) if active is None else active,
        ids=np.arange(1, n + 1),
        types=np.ones(n, np.int32),
        radius=np.full(n, 0.002),
        walls=list(walls),
    )


def test_discharge_counts_particles_below_the_outlet_or_removed():
    z = np.array([[0.01, 0.02, 0.03, -0.01], [-0.001, 0.02, 0.03, -0.02], [-0.01, 0.02, 0.03, 0]])
    active = np.ones_like(z, bool)
    active[2, 1] = False  # removed by a sink: discharged
    curve = discharge(line_trajectory(z, active), outlet_z=0.0)
    assert curve.n_initial == 3  # the particle already below at t0 is not counted
    assert curve.count.tolist() == [0, 1, 2]
    mass = 4 / 3 * math.pi * 0.002**3 * 2500
    assert curve.mass == pytest.approx([0, mass, 2 * mass])
    assert curve.fraction == pytest.approx([0, 1 / 3, 2 / 3])
    assert curve.time_to_fraction(0.5) == pytest.approx(1.5e-3)
    assert math.isnan(curve.time_to_fraction(0.9))


def test_mass_flow_rate_of_a_constant_discharge_is_exact():
    n = 100
    falls_at = np.arange(n)  # one particle leaves per frame
    frames = np.arange(n + 20)[:, None]
    z = np.where(frames > falls_at, -0.01, 0.01)
    curve = discharge(line_trajectory(z.astype(float)), outlet_z=0.0)
    rate = mass_flow_rate(curve)
    particle = particle_masses(line_trajectory(z.astype(float)))[0]
    assert rate.rate == pytest.approx(particle / 1e-3)
    assert rate.stderr == pytest.approx(0.0, abs=1e-9)
    assert 0.015 < rate.start < rate.stop < 0.085
    assert mass_flow_rate(discharge(line_trajectory(np.full((5, 3), 0.01)), 0.0)) is None


def test_beverloo_closed_forms():
    rho_b, d = 1500.0, 0.004
    circle = beverloo_rate(0.03, d, rho_b, "conical")
    assert circle == pytest.approx(0.58 * rho_b * math.sqrt(9.81) * 0.024**2.5)
    # A square of side D passes 4/pi as much as the inscribed circle (same width, more area).
    assert beverloo_rate(0.03, d, rho_b, "pyramid") == pytest.approx(4 / math.pi * circle)
    slot = beverloo_rate(0.03, d, rho_b, "wedge", slot_length=0.1)
    assert slot == pytest.approx(4 * 0.58 / math.pi * rho_b * math.sqrt(9.81) * 0.094 * 0.024**1.5)
    assert beverloo_rate(0.005, d, rho_b) == 0.0  # narrower than k d: no flow


def test_velocity_profile_bins_speeds_by_height():
    frames = np.arange(4)[:, None] * 1e-3
    z = np.concatenate([0.007 + 0 * frames, 0.012 + 0 * frames], axis=1)
    traj = line_trajectory(z)
    traj.positions[:, 0, 0] = frames[:, 0] * 0.2  # 0.2 m/s along x in the lower bin
    traj.positions[:, 1, 0] = frames[:, 0] * 0.5  # 0.5 m/s in the upper bin
    profile = velocity_profile(traj, (0.0, 0.02), bins=4)
    assert profile.height == pytest.approx([0.0025, 0.0075, 0.0125, 0.0175])
    assert profile.speed[1] == pytest.approx(0.2)
    assert profile.speed[2] == pytest.approx(0.5)
    assert profile.count.tolist() == [0, 3, 3, 0]
    assert np.isnan(profile.speed[[0, 3]]).all()


def tilted_bed(angle_deg: float, n: int = 20_000, rpm: float = 10.0) -> Trajectory:
    """A drum (axis y, radius 5 cm) whose bed fills the disc below a plane tilted by `angle`."""
    rng = np.random.default_rng(0)
    points = rng.uniform(-0.05, 0.05, (n, 3))
    inside = np.hypot(points[:, 0], points[:, 2]) < 0.048
    below = points[:, 2] < math.tan(math.radians(angle_deg)) * points[:, 0]
    bed = points[inside & below]
    mesh = drum(radius=0.05, length=0.1)
    wall = Wall("drum", mesh.vertices, mesh.faces, Rotation((0, 1, 0), rpm=rpm))
    return Trajectory(
        time=np.array([2.0, 3.0]),  # after the first quarter turn: steady
        positions=np.stack([bed, bed]),
        active=np.ones((2, len(bed)), bool),
        ids=np.arange(len(bed)),
        types=np.ones(len(bed), np.int32),
        radius=np.full(len(bed), 0.002),
        walls=[wall],
    )


@pytest.mark.parametrize("angle", [20.0, 35.0])
def test_repose_angle_of_a_tilted_bed(angle):
    result = repose_angle(tilted_bed(angle))
    assert result.angle == pytest.approx([angle, angle], abs=1.0)
    assert result.steady_from == pytest.approx(60.0 / 10 * 0.25)
    assert result.mean == pytest.approx(angle, abs=1.0)


def test_container_kind_and_outlet_from_walls():
    truth = liggghts_hopper_run()
    assert container_kind(truth) == "hopper"  # no attrs: the gate tells
    assert outlet_height(truth) == pytest.approx(0.0, abs=1e-9)
    assert outlet_height(truth, outlet_z=0.01) == 0.01
    assert container_kind(tilted_bed(30)) == "drum"


def test_discharge_of_the_real_liggghts_hopper():
    truth = liggghts_hopper_run()
    curve = discharge(truth, outlet_height(truth))
    assert curve.n_initial == 200
    assert (np.diff(curve.count) >= 0).all()
    assert curve.count[:10].max() == 0  # the plug holds the bed for the first 10 frames
    sunk = (~truth.active[-1]).sum()
    assert 0 < sunk <= curve.count[-1]
    rate = mass_flow_rate(curve)
    # Beverloo is a rough reference: the 20 mm outlet passes only 5 bead diameters.
    expected = beverloo_rate(0.02, 0.004, 0.6 * 2500, "conical")
    assert 0.5 * expected < rate.rate < 2.0 * expected


def test_angle_of_repose_of_the_real_tiny_drum(tiny_drum_dataset):
    traj = read_trajectory(tiny_drum_dataset / "trajectories" / "drum_000.h5")
    result = repose_angle(traj, settle=0.0)
    angles = result.angle[np.isfinite(result.angle)]
    assert len(angles) > 0.9 * traj.n_frames
    assert 5.0 < result.mean < 60.0
