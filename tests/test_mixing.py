"""Mixing entropy and Lacey index: closed-form cases and the real tiny drum."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bgnn_sim.analysis.mixing import MixingCurve, lacey_index, mixing_curve, mixing_entropy
from bgnn_sim.io.hdf5 import read_trajectory

LN2 = math.log(2.0)
UNIT_BOX = (np.zeros(3), np.ones(3))


def cell_centres(bins: int) -> np.ndarray:
    """[bins^3, 3] centres of the cells of a bins^3 grid over the unit box."""
    axis = (np.arange(bins) + 0.5) / bins
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)


def test_segregated_halves_give_zero_entropy_and_zero_lacey():
    rng = np.random.default_rng(0)
    positions = rng.random((2000, 3))
    # Split at x = 0.5, a face of the 4-bin grid: no bin holds both types.
    types = np.where(positions[:, 0] < 0.5, 1, 2)
    assert mixing_entropy(positions, types, bins=4, bounds=UNIT_BOX) == 0.0
    assert lacey_index(positions, types, bins=4, bounds=UNIT_BOX) == pytest.approx(0.0, abs=1e-12)


def test_equal_counts_in_every_bin_give_ln2_and_closed_form_lacey():
    bins, per_type = 3, 4
    centres = cell_centres(bins)
    positions = np.repeat(centres, 2 * per_type, axis=0)
    types = np.tile(np.repeat([3, 7], per_type), len(centres))  # any two values will do
    assert mixing_entropy(positions, types, bins=bins, bounds=UNIT_BOX) == pytest.approx(
        LN2, rel=1e-14
    )
    # sigma^2 = 0, so M = sigma0^2 / (sigma0^2 - sigma0^2 / n_mean) = n_mean / (n_mean - 1).
    n_mean = 2 * per_type
    expected = n_mean / (n_mean - 1)
    assert lacey_index(positions, types, bins=bins, bounds=UNIT_BOX) == pytest.approx(
        expected, rel=1e-12
    )


def test_random_assignment_is_close_to_fully_mixed():
    rng = np.random.default_rng(1)
    positions = rng.random((150_000, 3))
    types = rng.integers(1, 3, len(positions))
    # ~206 particles per bin: the plug-in entropy is biased low by about 1 / (2 n_b) ~ 0.0024,
    # and Lacey's M scatters by ~sqrt(2 / 729) sigmar^2 / sigma0^2 ~ 3e-4 around 1.
    assert mixing_entropy(positions, types, bins=9) == pytest.approx(LN2, abs=0.006)
    assert lacey_index(positions, types, bins=9) == pytest.approx(1.0, abs=0.01)


def test_two_occupied_bins_by_hand():
    # bins=2 over [0, 2]^3: bin A holds 3 of type 1 and 1 of type 2, bin B holds 2 of type 2.
    bounds = (np.zeros(3), np.full(3, 2.0))
    in_a = np.array([[0.5, 0.5, 0.5]] * 4)
    in_b = np.array([[1.5, 0.5, 0.5]] * 2)
    positions = np.concatenate([in_a, in_b])
    types = np.array([1, 1, 1, 2, 2, 2])
    # S = 4/6 (-3/4 ln 3/4 - 1/4 ln 1/4) + 2/6 * 0 = 4/3 ln 2 - 1/2 ln 3
    expected_entropy = 4 / 3 * LN2 - 0.5 * math.log(3.0)
    assert mixing_entropy(positions, types, bins=2, bounds=bounds) == pytest.approx(
        expected_entropy, rel=1e-14
    )
    # p = 1/2, sigma0^2 = 1/4, sigma^2 = (4 (1/4)^2 + 2 (1/2)^2) / 6 = 1/8,
    # n_mean = 3, sigmar^2 = 1/12  ->  M = (1/4 - 1/8) / (1/4 - 1/12) = 3/4
    assert lacey_index(positions, types, bins=2, bounds=bounds, min_particles=1) == pytest.approx(
        0.75, rel=1e-14
    )
    # With min_particles=3 only bin A counts: p = 3/4, sigma^2 = 0, n_mean = 4 -> M = 4/3.
    assert lacey_index(positions, types, bins=2, bounds=bounds, min_particles=3) == pytest.approx(
        4 / 3, rel=1e-14
    )
    # No bin reaches the threshold: undefined.
    assert math.isnan(lacey_index(positions, types, bins=2, bounds=bounds, min_particles=5))


def test_default_bounds_are_the_bounding_box():
    positions = np.array([[0.0, 0, 0], [0.1, 0, 0], [0.9, 0, 0], [1.0, 1, 1]])
    types = np.array([1, 2, 1, 2])
    # bins=2 over the bounding box [0, 1]^3: the first two share a bin (entropy ln 2, weight 1/2),
    # the last two sit in different bins (0).
    assert mixing_entropy(positions, types, bins=2) == pytest.approx(0.5 * LN2, rel=1e-14)


@pytest.mark.parametrize("types", [[1, 1, 1, 1], [1, 2, 3, 1]])
def test_other_than_two_types_is_an_error(types):
    positions = np.random.default_rng(2).random((4, 3))
    with pytest.raises(ValueError, match="exactly two particle types"):
        mixing_entropy(positions, np.array(types))
    with pytest.raises(ValueError, match="exactly two particle types"):
        lacey_index(positions, np.array(types))


def test_mismatched_types_is_an_error():
    with pytest.raises(ValueError, match="does not match"):
        mixing_entropy(np.zeros((4, 3)), np.array([1, 2, 1]))


def test_curve_uses_fixed_bounds_and_only_active_particles(tiny_drum_dataset):
    traj = read_trajectory(tiny_drum_dataset / "trajectories" / "drum_000.h5")
    # Drop a particle from the second half of the run: its stale zero position must not count.
    traj.active[traj.n_frames // 2 :, 0] = False
    traj.positions[traj.n_frames // 2 :, 0] = 0.0
    curve = mixing_curve(traj, bins=2)
    frame = traj.n_frames - 1
    active = traj.active[frame]
    points = traj.positions[traj.active]
    bounds = (points.min(axis=0), points.max(axis=0))
    expected = mixing_entropy(traj.positions[frame, active], traj.types[active], 2, bounds)
    assert curve.entropy[frame] == expected


def test_tiny_drum_starts_segregated(tiny_drum_dataset):
    traj = read_trajectory(tiny_drum_dataset / "trajectories" / "drum_000.h5")
    curve = mixing_curve(traj, bins=2)
    assert isinstance(curve, MixingCurve)
    assert len(curve.time) == len(curve.entropy) == len(curve.lacey) == traj.n_frames
    assert np.all((curve.entropy >= 0) & (curve.entropy <= LN2 + 1e-12))
    # The two types are the two halves of the bed, split at the drum's vertical mid-plane, which
    # is (close to) the middle face of a 2-bin grid: only the few particles at the interface
    # share a bin with the other type. The data give S ~ 0.07 and M ~ 0.07.
    assert curve.entropy[0] < 0.15
    assert curve.lacey[0] < 0.15
    # Control: the same positions with the types shuffled are close to fully mixed (data:
    # S ~ 0.68, M ~ 1.0), so the low values above come from the segregation, not the grid.
    shuffled = np.random.default_rng(0).permutation(traj.types)
    points = traj.positions[traj.active]
    bounds = (points.min(axis=0), points.max(axis=0))
    assert mixing_entropy(traj.positions[0], shuffled, 2, bounds) > 0.6
    assert lacey_index(traj.positions[0], shuffled, 2, bounds) > 0.8
