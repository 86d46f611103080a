"""Point-cloud distances, per-particle error and kinetic energy: closed forms and real LIGGGHTS."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import ot
import pytest

from bgnn_sim.analysis.contacts import overlaps
from bgnn_sim.analysis.distances import (
    kinetic_energy,
    position_error,
    sinkhorn_divergence,
    velocities_from_positions,
    wasserstein,
)
from bgnn_sim.io.liggghts import read_dumps
from bgnn_sim.trajectory import Trajectory
from tests.helpers import LIGGGHTS_HOPPER

SHIFT = np.array([0.003, -0.001, 0.002])  # metres


def cloud(n: int, seed: int = 0, spread: float = 0.01) -> np.ndarray:
    """[n, 3] random points, a few centimetres across, away from the origin."""
    return np.random.default_rng(seed).normal(size=(n, 3)) * spread + [0.1, 0.2, 0.3]


@pytest.fixture(scope="module")
def hopper() -> Trajectory:
    return read_dumps(str(LIGGGHTS_HOPPER / "post" / "dump*.liggghts.gz"), dem_dt=2.5e-5)


# --- wasserstein -----------------------------------------------------------------------------


def test_wasserstein_of_identical_clouds_is_zero():
    points = cloud(300)
    assert wasserstein(points, points.copy()) == 0.0


def test_wasserstein_of_a_shifted_shuffled_copy_is_the_shift():
    # W2(a, a + s) = |s| exactly: every plan pays |s|^2 on average plus a term that the identity
    # plan makes zero. Shuffling b shows the pairing is found, not taken from the order.
    points = cloud(300)
    moved = (points + SHIFT)[np.random.default_rng(1).permutation(300)]
    assert wasserstein(points, moved) == pytest.approx(np.linalg.norm(SHIFT), rel=1e-9)


def test_wasserstein_of_two_single_points_is_their_distance():
    a, b = np.array([[0.0, 0.0, 0.0]]), np.array([[0.003, 0.004, 0.0]])
    assert wasserstein(a, b) == pytest.approx(0.005, rel=1e-12)


def test_wasserstein_of_clouds_of_different_sizes_by_hand():
    # 1-D, so the optimal plan is the monotone one: a = {0, 1, 2} (mass 1/3 each) onto
    # b = {0.3, 1.8} (1/2 each): a0 -> b0, a1 splits 1/6 + 1/6, a2 -> b1.
    a = np.array([[0.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0]])
    b = np.array([[0.3, 0, 0], [1.8, 0, 0]])
    cost = 0.3**2 / 3 + 0.7**2 / 6 + 0.8**2 / 6 + 0.2**2 / 3
    assert wasserstein(a, b) == pytest.approx(math.sqrt(cost), rel=1e-12)
    assert wasserstein(b, a) == pytest.approx(math.sqrt(cost), rel=1e-12)


@pytest.mark.parametrize("bad", [np.zeros((0, 3)), np.zeros((4, 2)), np.zeros(3)])
def test_wasserstein_rejects_bad_clouds(bad):
    with pytest.raises(ValueError, match="must be \\[N, 3\\]"):
        wasserstein(cloud(5), bad)


# --- sinkhorn_divergence ---------------------------------------------------------------------


def test_sinkhorn_of_identical_clouds_is_exactly_zero():
    points = cloud(200)
    assert sinkhorn_divergence(points, points.copy()) == 0.0


def test_sinkhorn_of_a_shifted_copy_is_the_shift_and_grows_with_it():
    # S_eps(a, a + s) = |s|^2 for any eps (the shift only adds separable terms to the cost).
    points = cloud(200)
    values = [sinkhorn_divergence(points, points + k * SHIFT) for k in (0.5, 1.0, 3.0, 30.0)]
    expected = [k * np.linalg.norm(SHIFT) for k in (0.5, 1.0, 3.0, 30.0)]
    np.testing.assert_allclose(values, expected, rtol=1e-5)
    assert np.all(np.diff(values) > 0)


def test_sinkhorn_matches_pots_converged_entropic_ot():
    # Reference: the same definition computed with POT's log-domain Sinkhorn run to a tight
    # tolerance (ot.solve's value includes eps KL(pi | a x b)); small clouds so it converges.
    a, b = cloud(40, seed=2), 1.3 * cloud(30, seed=3) + 0.004
    reg = 0.1
    cost = {k: ot.dist(x, y) for k, (x, y) in {"ab": (a, b), "aa": (a, a), "bb": (b, b)}.items()}
    eps = reg * 0.5 * (cost["aa"].mean() + cost["bb"].mean())
    value = {k: ot.solve(c, reg=eps, max_iter=100_000, tol=1e-13).value for k, c in cost.items()}
    reference = value["ab"] - 0.5 * (value["aa"] + value["bb"])
    assert sinkhorn_divergence(a, b, reg=reg) ** 2 == pytest.approx(reference, rel=1e-5)


def test_sinkhorn_tends_to_w2_as_reg_shrinks():
    a = cloud(150, seed=4)
    b = a.mean(axis=0) + 1.2 * (a - a.mean(axis=0))  # same centre, 20 % wider
    exact = wasserstein(a, b)
    # Data: 0.8 % above W2 at the default reg = 0.05, 0.04 % at reg = 0.005.
    default_gap = abs(sinkhorn_divergence(a, b) / exact - 1)
    sharp_gap = abs(sinkhorn_divergence(a, b, reg=0.005) / exact - 1)
    assert default_gap < 0.02
    assert sharp_gap < 0.002
    assert sharp_gap < default_gap


def test_sinkhorn_of_two_single_points_is_their_distance():
    a, b = np.array([[0.0, 0.0, 0.0]]), np.array([[0.003, 0.004, 0.0]])
    assert sinkhorn_divergence(a, b) == pytest.approx(0.005, rel=1e-9)


def test_sinkhorn_rejects_non_positive_reg():
    with pytest.raises(ValueError, match="reg must be positive"):
        sinkhorn_divergence(cloud(5), cloud(5), reg=0.0)


# --- position_error --------------------------------------------------------------------------


def test_position_error_of_a_shifted_copy_is_the_shift_and_ignores_inactive():
    rng = np.random.default_rng(5)
    positions = rng.normal(size=(4, 10, 3))
    active_a = np.ones((4, 10), bool)
    active_b = active_a.copy()
    active_b[1, :3] = False  # gone in b: their (garbage) positions must not count
    active_a[2, 5] = False
    active_b[3] = False  # no particle in common: NaN
    moved = positions + SHIFT
    moved[1, :3] = 1e6
    moved[2, 5] = -1e6
    error = position_error(positions, moved, active_a, active_b)
    assert error.shape == (4,)
    np.testing.assert_allclose(error[:3], np.linalg.norm(SHIFT), rtol=1e-12)
    assert math.isnan(error[3])


def test_position_error_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        position_error(
            np.zeros((2, 3, 3)), np.zeros((2, 4, 3)), np.ones((2, 3), bool), np.ones((2, 4), bool)
        )


# --- kinetic energy --------------------------------------------------------------------------


def constant_velocity_trajectory(with_velocities: bool, attrs: dict) -> Trajectory:
    """4 particles of different radii at constant velocities; particle 3 leaves at frame 3."""
    time = np.array([0.0, 0.001, 0.002, 0.0035, 0.005])  # uneven steps on purpose
    velocity = np.array([[1.0, 0, 0], [0, -2.0, 0], [0.5, 0.5, 0.5], [0, 0, -3.0]])
    start = np.random.default_rng(6).normal(size=(4, 3)) * 0.01
    positions = start + time[:, None, None] * velocity
    active = np.ones((5, 4), bool)
    active[3:, 3] = False
    positions[~active] = 0.0
    velocities = np.where(active[..., None], velocity, 0.0).astype(np.float32)
    return Trajectory(
        time=time, positions=positions, active=active, ids=np.arange(1, 5),
        types=np.ones(4, np.int32), radius=np.array([0.002, 0.003, 0.002, 0.004]),
        velocities=velocities if with_velocities else None, attrs=attrs,
    )  # fmt: skip


def expected_energy(traj: Trajectory, density: float) -> np.ndarray:
    """[T] sum over active particles of 1/2 (4/3 pi r^3 rho) |v|^2, velocities known exactly."""
    mass = 4 / 3 * np.pi * traj.radius**3 * density
    speed_sq = np.array([1.0, 4.0, 0.75, 9.0])
    return 0.5 * (traj.active * mass * speed_sq).sum(axis=1)


@pytest.mark.parametrize("with_velocities", [True, False])
def test_kinetic_energy_of_constant_velocities(with_velocities):
    traj = constant_velocity_trajectory(with_velocities, {"material": {"density": 1200.0}})
    # float32 stored velocities carry ~1e-7 relative error; differences of float64 positions less.
    np.testing.assert_allclose(kinetic_energy(traj), expected_energy(traj, 1200.0), rtol=1e-6)


def test_kinetic_energy_density_argument_and_default():
    traj = constant_velocity_trajectory(True, {"material": {"density": 1200.0}})
    overridden = kinetic_energy(traj, density=7800.0)
    np.testing.assert_allclose(overridden, expected_energy(traj, 7800.0), rtol=1e-6)
    bare = replace(traj, attrs={})
    np.testing.assert_allclose(kinetic_energy(bare), expected_energy(traj, 2500.0), rtol=1e-6)


def test_finite_differences_are_central_inside_and_one_sided_at_ends():
    # x = t^2 along x: central differences are exact (2 t) inside, one-sided ones are not.
    time = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    positions = np.zeros((5, 2, 3))
    positions[:, :, 0] = time[:, None] ** 2
    active = np.ones((5, 2), bool)
    active[2, 1] = False  # particle 1 has a gap: frames 1 and 3 become one-sided
    active[4, 1] = False  # ... and frame 3 has no active neighbour at all
    v = velocities_from_positions(time, positions, active)[..., 0]
    np.testing.assert_allclose(v[:, 0], [1.0, 2.0, 4.0, 6.0, 7.0])  # forward, central, backward
    assert v[0, 1] == 1.0 and v[1, 1] == 1.0  # forward at 0, backward at 1 (2 is gone)
    assert np.isnan(v[2, 1]) and np.isnan(v[3, 1]) and np.isnan(v[4, 1])


def test_finite_differences_need_two_frames():
    with pytest.raises(ValueError, match="at least two frames"):
        velocities_from_positions(np.zeros(1), np.zeros((1, 2, 3)), np.ones((1, 2), bool))


# --- real LIGGGHTS hopper --------------------------------------------------------------------


def test_hopper_kinetic_energy_from_velocities_and_from_positions_agree(hopper):
    from_velocities = kinetic_energy(hopper)
    from_positions = kinetic_energy(replace(hopper, velocities=None))
    discharge = slice(30, hopper.n_frames)  # the plug is removed at frame 10
    # The comparison means something: the discharging bed moves ~300x faster than settling.
    assert from_velocities[discharge].min() > 50 * from_velocities[:10].max()
    # Dumped velocities are instantaneous, finite differences average over +-1 ms of
    # collisions: the data give totals 0.3 % apart and single frames at most ~2.5 %.
    total_ratio = from_positions[discharge].sum() / from_velocities[discharge].sum()
    assert total_ratio == pytest.approx(1.0, abs=0.01)
    np.testing.assert_allclose(from_positions[discharge], from_velocities[discharge], rtol=0.05)


def test_hopper_frame_against_itself_and_another(hopper):
    here, later = (hopper.positions[t][hopper.active[t]] for t in (60, 100))
    assert wasserstein(here, here) == 0.0
    # W2 is at least the distance between the centroids (Jensen), and the bed has moved.
    centroid_shift = np.linalg.norm(here.mean(axis=0) - later.mean(axis=0))
    assert wasserstein(here, later) >= centroid_shift > 0.0


# --- overlaps ----------------------------------------------------------------------------------


def test_overlaps_of_spheres_by_hand():
    radius = np.array([1e-3, 1e-3, 2e-3, 1e-3])
    # 0-1 overlap by 0.2 mm, 1-2 by 0.5 mm (radii 1 and 2 mm), 3 far from all.
    positions = np.array([[0.0, 0, 0], [1.8e-3, 0, 0], [4.3e-3, 0, 0], [0.05, 0, 0]])
    np.testing.assert_allclose(np.sort(overlaps(positions, radius)), [0.2e-3, 0.5e-3])
    assert len(overlaps(positions[[0, 3]], radius[[0, 3]])) == 0
    assert len(overlaps(positions[:1], radius[:1])) == 0


def test_a_bed_pressed_together_overlaps_more(hopper):
    frame = 60
    x, radius = hopper.positions[frame][hopper.active[frame]], hopper.radius[hopper.active[frame]]
    resting = overlaps(x, radius).mean()
    pressed = overlaps(x.mean(axis=0) + 0.99 * (x - x.mean(axis=0)), radius).mean()
    assert 0.0 < resting < 0.05 * radius.max() and pressed > 2 * resting
