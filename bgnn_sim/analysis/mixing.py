"""How well two particle types are mixed: BGNN's mixing entropy and the Lacey index.

Both measures bin space into a regular grid of `bins`^3 cells and compare, per cell, the share of
each type. In a drum the two halves of the bed carry the two types at t0 (segregated); rotation
mixes them. Type "1" is the lower of the two type values, type "2" the higher.

    mixing_entropy   S = sum_b (n_b / n) s_b,  s_b = -f1 ln f1 - f2 ln f2       0 .. ln 2
    lacey_index      M = (sigma0^2 - sigma^2) / (sigma0^2 - sigmar^2)           0 .. ~1
    mixing_curve     both over the active particles of every frame, on one fixed grid
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import entr

from bgnn_sim.trajectory import Trajectory

Bounds = tuple[np.ndarray, np.ndarray]

# A bin with fewer particles holds a type-1 fraction that can only take a handful of values
# (0, 1/n, ..., 1): it is mostly sampling noise, and bins of one or two particles drive the
# random-mixture variance sigmar^2 = p(1-p)/n_mean towards sigma0^2, which makes M ill-posed.
DEFAULT_MIN_PARTICLES = 5


@dataclass(frozen=True)
class MixingCurve:
    """Mixing measures over a trajectory.

    Attributes:
        time: [T] seconds.
        entropy: [T] mixing entropy (nats), NaN for frames without active particles.
        lacey: [T] Lacey index, NaN where it is undefined (see `lacey_index`).
    """

    time: np.ndarray
    entropy: np.ndarray
    lacey: np.ndarray


def mixing_entropy(
    positions: np.ndarray, types: np.ndarray, bins: int = 9, bounds: Bounds | None = None
) -> float:
    """BGNN's mixing entropy of two particle types (nats).

    For every occupied bin b with n_b particles, of which fractions f1, f2 = 1 - f1 are of
    type 1 and 2:

        s_b = -f1 ln f1 - f2 ln f2        (0 ln 0 = 0)
        S   = sum_b (n_b / n) s_b

    S = 0 when no bin holds both types (segregated) and S = ln 2 when every bin holds equal
    numbers of both (perfectly mixed). A grid much finer than the particles' spacing leaves one
    particle per bin and S near 0 whatever the mixing: choose `bins` for the bed's size.

    Args:
        positions: [N, 3] metres.
        types: [N] exactly two distinct values; the lower one is type 1.
        bins: cells per axis (bins^3 in all).
        bounds: (lo [3], hi [3]) of the grid; default the points' bounding box. Points outside
            are counted in the nearest edge bin.

    Raises:
        ValueError: not exactly two type values, no particles, or mismatched shapes.
    """
    is_type1 = _type1_mask(positions, types)
    return _entropy(*_bin_counts(positions, is_type1, bins, _bounds_or_box(positions, bounds)))


def lacey_index(
    positions: np.ndarray,
    types: np.ndarray,
    bins: int = 9,
    bounds: Bounds | None = None,
    min_particles: int = DEFAULT_MIN_PARTICLES,
) -> float:
    """Lacey mixing index of two particle types.

    Over the bins that hold at least `min_particles` particles (the "counted" bins, n particles
    in B bins, n_b in bin b, x_b its type-1 fraction, p the type-1 fraction of those n):

        sigma0^2 = p (1 - p)                        variance when fully segregated
        sigmar^2 = p (1 - p) / n_mean,  n_mean = n / B   variance of a random mixture
        sigma^2  = sum_b n_b (x_b - p)^2 / n         particle-weighted variance about p
        M        = (sigma0^2 - sigma^2) / (sigma0^2 - sigmar^2)

    M = 0 when segregated and M is about 1 for a random mixture; an arrangement more even than
    random (every bin exactly p) gives sigma^2 = 0 and M = n_mean / (n_mean - 1) > 1.
    Weighting by n_b (rather than one vote per bin) keeps bins of different fill comparable:
    for a random mixture E[n_b (x_b - p)^2] = p (1 - p) for every n_b, so E[sigma^2] equals
    sigmar^2 exactly, and a half-empty bin at a wall counts for as many particles as it holds.

    Args:
        positions: [N, 3] metres.
        types: [N] exactly two distinct values; the lower one is type 1.
        bins: cells per axis (bins^3 in all).
        bounds: (lo [3], hi [3]) of the grid; default the points' bounding box.
        min_particles: bins with fewer particles are left out (default 5, see
            DEFAULT_MIN_PARTICLES).

    Returns:
        M, or NaN where undefined: no counted bin, only one type in the counted bins, or
        n_mean <= 1.

    Raises:
        ValueError: not exactly two type values, no particles, or mismatched shapes.
    """
    is_type1 = _type1_mask(positions, types)
    counts = _bin_counts(positions, is_type1, bins, _bounds_or_box(positions, bounds))
    return _lacey(*counts, min_particles)


def mixing_curve(
    trajectory: Trajectory, bins: int = 9, min_particles: int = DEFAULT_MIN_PARTICLES
) -> MixingCurve:
    """Mixing entropy and Lacey index of the active particles of every frame.

    The grid is fixed for the whole trajectory: the bounding box of all active positions over
    all frames, so bins do not move with the bed. The two types are those of the whole
    trajectory; a frame whose active particles are all of one type has entropy 0 and Lacey NaN.

    Args:
        trajectory: with exactly two particle types.
        bins: cells per axis.
        min_particles: Lacey's threshold per bin (see `lacey_index`).

    Returns:
        MixingCurve with [T] arrays.
    """
    is_type1 = _type1_mask(trajectory.positions[0], trajectory.types)
    bounds = _active_bounding_box(trajectory.positions, trajectory.active)
    entropy = np.full(trajectory.n_frames, np.nan)
    lacey = np.full(trajectory.n_frames, np.nan)
    for t in range(trajectory.n_frames):
        active = trajectory.active[t]
        if not active.any():
            continue
        counts = _bin_counts(trajectory.positions[t, active], is_type1[active], bins, bounds)
        entropy[t] = _entropy(*counts)
        lacey[t] = _lacey(*counts, min_particles)
    return MixingCurve(time=np.asarray(trajectory.time, float), entropy=entropy, lacey=lacey)


def _type1_mask(positions: np.ndarray, types: np.ndarray) -> np.ndarray:
    """[N] bool: particle is of the lower of exactly two type values."""
    positions, types = np.asarray(positions), np.asarray(types)
    if positions.ndim != 2 or positions.shape[1] != 3 or len(positions) == 0:
        raise ValueError(f"positions must be [N, 3] with N > 0, got shape {positions.shape}")
    if types.shape != (len(positions),):
        raise ValueError(f"types {types.shape} does not match positions {positions.shape}")
    values = np.unique(types)
    if len(values) != 2:
        raise ValueError(
            f"mixing needs exactly two particle types, got {len(values)}: {values.tolist()}"
        )
    return types == values[0]


def _bounds_or_box(positions: np.ndarray, bounds: Bounds | None) -> Bounds:
    if bounds is None:
        positions = np.asarray(positions, float)
        return positions.min(axis=0), positions.max(axis=0)
    lo, hi = (np.asarray(b, float).reshape(3) for b in bounds)
    if np.any(hi < lo):
        raise ValueError(f"bounds must have lo <= hi, got lo={lo.tolist()}, hi={hi.tolist()}")
    return lo, hi


def _active_bounding_box(positions: np.ndarray, active: np.ndarray) -> Bounds:
    """(lo [3], hi [3]) over the active particles of all frames ([T, N, 3], [T, N])."""
    if not active.any():
        raise ValueError("the trajectory has no active particle in any frame")
    points = positions[active]
    return points.min(axis=0), points.max(axis=0)


def _bin_counts(
    positions: np.ndarray, is_type1: np.ndarray, bins: int, bounds: Bounds
) -> tuple[np.ndarray, np.ndarray]:
    """Particles per occupied bin and type-1 particles among them: ([B], [B]) int."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    lo, hi = bounds
    # A flat axis (all points in one plane) has zero extent: every point goes to bin 0 there.
    extent = np.where(hi > lo, hi - lo, 1.0)
    cell = np.floor((np.asarray(positions, float) - lo) / extent * bins).astype(np.int64)
    # Points on the upper face (and outside the bounds) belong to the edge bins.
    cell = np.clip(cell, 0, bins - 1)
    flat = np.ravel_multi_index(cell.T, (bins, bins, bins))
    total = np.bincount(flat, minlength=bins**3)
    type1 = np.bincount(flat, weights=is_type1, minlength=bins**3).astype(np.int64)
    occupied = total > 0
    return total[occupied], type1[occupied]


def _entropy(total: np.ndarray, type1: np.ndarray) -> float:
    """S = sum_b (n_b / n) (entr(f1) + entr(f2)), entr(x) = -x ln x, from bin counts [B]."""
    f1 = type1 / total
    per_bin = entr(f1) + entr(1.0 - f1)
    return float(np.sum(total * per_bin) / np.sum(total))


def _lacey(total: np.ndarray, type1: np.ndarray, min_particles: int) -> float:
    """Lacey's M from bin counts [B] (see `lacey_index`), NaN where undefined."""
    counted = total >= min_particles
    total, type1 = total[counted], type1[counted]
    n = total.sum()
    if n == 0:
        return float("nan")
    p = type1.sum() / n
    n_mean = n / len(total)
    sigma0_sq = p * (1.0 - p)
    if sigma0_sq == 0.0 or n_mean <= 1.0:
        return float("nan")
    sigma_sq = np.sum(total * (type1 / total - p) ** 2) / n
    sigmar_sq = sigma0_sq / n_mean
    return float((sigma0_sq - sigma_sq) / (sigma0_sq - sigmar_sq))
