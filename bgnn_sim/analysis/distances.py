"""How far a rollout is from the ground truth: point-cloud distances, per-particle error, energy.

Rollouts of granular flow diverge chaotically particle by particle, so BGNN compares whole point
clouds with the earth mover's distance; LagrangeBench adds the Sinkhorn divergence and the
kinetic-energy error. Costs are squared-Euclidean in both cloud distances.

    wasserstein          W2 = sqrt(min_pi sum_ij pi_ij |a_i - b_j|^2)            metres
    sinkhorn_divergence  sqrt(OT_eps(a,b) - (OT_eps(a,a) + OT_eps(b,b)) / 2)      metres
    position_error       mean_j |x_a[t,j] - x_b[t,j]| over particles active in both   [T] m
    kinetic_energy       sum_j 1/2 m_j |v_j|^2 over active particles                   [T] J
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist
from scipy.special import logsumexp

from bgnn_sim.analysis.scene import particle_masses
from bgnn_sim.trajectory import Trajectory

# The network simplex needs ~O(n^2) pivots; POT's default (1e5) stops short for a few thousand
# points. 1e8 covers ~10^4 points and only costs time when it is needed.
EMD_MAX_ITERATIONS = 100_000_000
DEFAULT_SINKHORN_REG = 0.05  # eps as a fraction of the clouds' squared size (see below)
SINKHORN_SCALING = 0.5  # ratio of successive eps in the annealing schedule
SINKHORN_MAX_ITERATIONS = 5_000
# Converged when no potential moves by more than this fraction of eps in one step (a relative
# marginal error of ~2e-3). The dual value is stationary at the optimum, so S_eps is far more
# accurate than the potentials: ~1e-6 relative in the tests' cases (1e-5 gives ~1e-9, at up to
# 10x the iterations).
SINKHORN_TOLERANCE = 1e-3


def wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    """Earth mover's distance of two point clouds with uniform weights, as W2 in metres.

        W2(a, b) = sqrt( min_pi sum_ij pi_ij |a_i - b_j|^2 ),
        pi >= 0, sum_j pi_ij = 1/N, sum_i pi_ij = 1/M

    The cost is BGNN's squared-Euclidean one; the square root of the optimal cost turns it into
    a length (for b = a + s, a rigid shift, W2 = |s| exactly). Solved exactly (network simplex,
    `ot.emd2`); time grows roughly with N^2 to N^3, about 2 s for 3000 points.

    Args:
        a: [N, 3] metres.
        b: [M, 3] metres; M may differ from N.

    Raises:
        ValueError: an empty cloud or a shape other than [*, 3].
        RuntimeError: the solver stopped before optimality.
    """
    import ot  # here, not at the top: POT's import (its backends) costs every command about
    # a second, and only this distance needs it

    a, b = _checked_clouds(a, b)
    cost = _squared_distances(a, b)
    weights_a, weights_b = ot.unif(len(a)), ot.unif(len(b))
    optimum, log = ot.emd2(weights_a, weights_b, cost, numItermax=EMD_MAX_ITERATIONS, log=True)
    if log["result_code"] != 1:
        raise RuntimeError(f"earth mover's distance did not converge: {log['warning']}")
    return float(np.sqrt(max(float(optimum), 0.0)))


def sinkhorn_divergence(a: np.ndarray, b: np.ndarray, reg: float = DEFAULT_SINKHORN_REG) -> float:
    """Debiased Sinkhorn divergence of two point clouds with uniform weights, as a length (m).

        OT_eps(a, b) = min_pi sum_ij pi_ij |a_i - b_j|^2 + eps KL(pi | u_a x u_b)
        S_eps(a, b)  = OT_eps(a, b) - (OT_eps(a, a) + OT_eps(b, b)) / 2          (m^2)
        returned     = sqrt(max(S_eps, 0))                                          (m)

    S_eps is 0 for identical clouds and positive otherwise (Feydy et al., AISTATS 2019); it
    tends to W2^2 as eps -> 0. For b = a + s (a rigid shift) S_eps = |s|^2 for every eps, so the
    returned value is |s|, as for `wasserstein`.

    Choice of eps: clouds are centimetres across, so one absolute eps in m^2 would be too blurry
    for one scene and too sharp for the next. Instead eps = reg * L^2, with L^2 the clouds' own
    size: the mean squared distance between two points of one cloud, averaged over a and b
    (= 2 x total positional variance; unchanged by moving either cloud). The default reg = 0.05
    (the relative eps of OTT-JAX, which LagrangeBench's Sinkhorn metric uses) blurs over
    sqrt(eps) ~ 0.22 L. Smaller reg is sharper but needs more iterations.

    Solver: see `_sinkhorn_potentials` (why not POT's Sinkhorn: its plain iterations need
    thousands of steps, or fail, on the self terms OT_eps(a, a), whose plan is close to the
    identity; the tests check this solver against POT's converged `ot.solve`). Memory (four
    N x M matrices) and time per iteration grow with N x M: ~0.02 s for 150 points, about a
    minute for 3000 on two CPU cores (~150 iterations), where the exact `wasserstein` takes 2 s.

    Args:
        a: [N, 3] metres.
        b: [M, 3] metres.
        reg: eps as a fraction of L^2 (dimensionless, > 0).

    Raises:
        ValueError: an empty cloud, a bad shape or reg <= 0.
        RuntimeError: the iterations did not settle (raise reg).
    """
    if not reg > 0:
        raise ValueError(f"reg must be positive, got {reg}")
    a, b = _checked_clouds(a, b)
    cost_ab, cost_aa, cost_bb = (_squared_distances(*pair) for pair in ((a, b), (a, a), (b, b)))
    size_sq = 0.5 * (cost_aa.mean() + cost_bb.mean())
    # Clouds of one repeated point each admit a single plan (the product), so any eps gives
    # the same value; 1 m^2 only avoids eps = 0.
    eps = reg * (size_sq if size_sq > 0 else 1.0)
    costs = (cost_ab, np.ascontiguousarray(cost_ab.T), cost_aa, cost_bb)
    f_ab, g_ab, f_aa, g_bb = _sinkhorn_potentials(costs, eps, tolerance=SINKHORN_TOLERANCE * eps)
    # At the optimum OT_eps(x, y) = <u_x, f> + <u_y, g> (the dual value of the problem above).
    divergence = np.mean(f_ab - f_aa) + np.mean(g_ab - g_bb)
    # Round-off can leave S_eps a hair below 0 for nearly identical clouds.
    return float(np.sqrt(max(divergence, 0.0)))


def position_error(
    positions_a: np.ndarray, positions_b: np.ndarray, active_a: np.ndarray, active_b: np.ndarray
) -> np.ndarray:
    """Mean Euclidean distance between the same particles of two trajectories, per frame.

        e[t] = sum_j w[t,j] |a[t,j] - b[t,j]| / sum_j w[t,j],  w = active_a & active_b

    Column j must be the same particle (same id) in both.

    Args:
        positions_a, positions_b: [T, N, 3] metres.
        active_a, active_b: [T, N] bool.

    Returns:
        [T] metres; NaN for frames where no particle is active in both.
    """
    if positions_a.shape != positions_b.shape or positions_a.ndim != 3:
        raise ValueError(f"positions differ in shape: {positions_a.shape} vs {positions_b.shape}")
    if active_a.shape != positions_a.shape[:2] or active_b.shape != positions_a.shape[:2]:
        raise ValueError(f"active masks {active_a.shape}, {active_b.shape} must be [T, N]")
    both = active_a & active_b
    distance = np.linalg.norm(positions_a - positions_b, axis=-1)
    total = np.where(both, distance, 0.0).sum(axis=1)
    count = both.sum(axis=1)
    return np.divide(total, count, out=np.full(len(count), np.nan), where=count > 0)


def kinetic_energy(trajectory: Trajectory, density: float | None = None) -> np.ndarray:
    """Total translational kinetic energy of the active particles per frame, joules.

        E[t] = sum_j active[t,j] 1/2 m_j |v[t,j]|^2,   m_j = 4/3 pi r_j^3 rho

    Velocities are the trajectory's own (LIGGGHTS dumps them) when present, else finite
    differences of positions (`velocities_from_positions`); a particle whose velocity cannot be
    estimated (active in no neighbouring frame) adds nothing. Rotational energy is not included.

    Args:
        trajectory: T frames of N particles.
        density: rho in kg/m^3; default attrs["material"]["density"] when the trajectory has
            it, else 2500.

    Returns:
        [T] joules.
    """
    mass = particle_masses(trajectory, density)
    if trajectory.velocities is not None:
        velocities = np.asarray(trajectory.velocities, float)
    else:
        velocities = velocities_from_positions(
            trajectory.time, trajectory.positions, trajectory.active
        )
    speed_sq = np.sum(velocities**2, axis=-1)
    counted = trajectory.active & np.isfinite(speed_sq)
    return 0.5 * np.sum(np.where(counted, mass * speed_sq, 0.0), axis=1)


def velocities_from_positions(
    time: np.ndarray, positions: np.ndarray, active: np.ndarray
) -> np.ndarray:
    """Velocities by finite differences of positions, m/s.

        v[t] = (x[t+1] - x[t-1]) / (time[t+1] - time[t-1])   central, both neighbours active
        v[t] = (x[t+1] - x[t]) / (time[t+1] - time[t])        forward, only the next one
        v[t] = (x[t] - x[t-1]) / (time[t] - time[t-1])        backward, only the previous one

    (one-sided at the first and last frame, and where a particle enters or leaves).

    Args:
        time: [T] seconds, increasing, T >= 2.
        positions: [T, N, 3] metres.
        active: [T, N] bool.

    Returns:
        [T, N, 3]; NaN where the particle is inactive or active in neither neighbouring frame.
    """
    if len(time) < 2:
        raise ValueError(f"finite differences need at least two frames, got {len(time)}")
    time = np.asarray(time, float)
    shape = positions.shape
    usable = active[1:] & active[:-1]  # [T-1, N]: both ends of the step are real positions
    rate = np.diff(positions, axis=0) / np.diff(time)[:, None, None]  # [T-1, N, 3]
    has_forward, has_backward = np.zeros(active.shape, bool), np.zeros(active.shape, bool)
    has_forward[:-1], has_backward[1:] = usable, usable
    forward, backward, central = (np.full(shape, np.nan) for _ in range(3))
    forward[:-1], backward[1:] = rate, rate
    central[1:-1] = (positions[2:] - positions[:-2]) / (time[2:] - time[:-2])[:, None, None]
    velocities = np.full(shape, np.nan)
    velocities = np.where(has_forward[..., None], forward, velocities)
    velocities = np.where(has_backward[..., None], backward, velocities)
    return np.where((has_forward & has_backward)[..., None], central, velocities)


def _checked_clouds(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both clouds as float arrays ([N, 3], [M, 3]), or a ValueError."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    for name, cloud in (("a", a), ("b", b)):
        if cloud.ndim != 2 or cloud.shape[1] != 3 or len(cloud) == 0:
            raise ValueError(f"cloud {name} must be [N, 3] with N > 0, got shape {cloud.shape}")
    return a, b


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N, M] |a_i - b_j|^2 in m^2.

    The expansion |x|^2 + |y|^2 - 2 x.y (POT's default) leaves ~1e-20 m^2 of round-off where
    points coincide (a cloud ~1e-10 m from itself); scipy's cdist sums squared differences and
    gives exact zeros.
    """
    return cdist(a, b, metric="sqeuclidean")


def _sinkhorn_potentials(
    costs: tuple[np.ndarray, ...], eps: float, tolerance: float
) -> tuple[np.ndarray, ...]:
    """Dual potentials of OT_eps(a, b), OT_eps(a, a), OT_eps(b, b), in m^2.

    Symmetric Sinkhorn with eps-scaling, as in GeomLoss (Feydy et al. 2019): every potential
    moves half-way to its smoothed c-transform at once,

        f_ab <- (f_ab + T(C_ab, g_ab)) / 2     g_ab <- (g_ab + T(C_ba, f_ab)) / 2
        f_aa <- (f_aa + T(C_aa, f_aa)) / 2     g_bb <- (g_bb + T(C_bb, g_bb)) / 2

    first once per eps of a geometric schedule from the largest squared distance down to eps
    (a warm start at each scale), then at eps until no potential moves by more than
    `tolerance`. The averaging damps the oscillation that stalls plain Sinkhorn on the self
    terms. All four run in one loop on the same schedule, so for a == b the cross and self
    potentials are equal bit for bit and S_eps(a, a) = 0 exactly.

    Args:
        costs: (C_ab [N, M], C_ba [M, N] contiguous, C_aa [N, N], C_bb [M, M]) in m^2.
        eps: target regularisation, m^2.
        tolerance: largest accepted change of a potential in the last step, m^2.

    Returns:
        (f_ab [N], g_ab [M], f_aa [N], g_bb [M]).
    """
    partner = (1, 0, 2, 3)  # which potential each one is the c-transform of
    largest = max(max(float(c.max()) for c in costs), eps)
    schedule = _eps_schedule(largest, eps)
    potentials = [_softmin(cost, 0.0, schedule[0]) for cost in costs]

    def step(current: list[np.ndarray], scale: float) -> list[np.ndarray]:
        return [
            0.5 * (own + _softmin(cost, current[k], scale))
            for own, cost, k in zip(current, costs, partner, strict=True)
        ]

    for scale in schedule:
        potentials = step(potentials, scale)
    for _ in range(SINKHORN_MAX_ITERATIONS):
        previous, potentials = potentials, step(potentials, eps)
        change = max(np.abs(new - old).max() for new, old in zip(potentials, previous, strict=True))
        if change <= tolerance:
            return tuple(potentials)
    raise RuntimeError(
        f"Sinkhorn did not settle in {SINKHORN_MAX_ITERATIONS} iterations (last change "
        f"{change:.1e} m^2, eps {eps:.1e} m^2); use a larger reg"
    )


def _eps_schedule(largest: float, eps: float) -> np.ndarray:
    """[K] decreasing eps values from about `largest` to `eps`, SINKHORN_SCALING apart."""
    stages = int(np.ceil(np.log(largest / eps) / np.log(1 / SINKHORN_SCALING)))
    return eps / SINKHORN_SCALING ** np.arange(stages, -1, -1)


def _softmin(cost: np.ndarray, potential: np.ndarray | float, eps: float) -> np.ndarray:
    """Smoothed c-transform [N] of a potential [M] under uniform weights:

    T(C, h)_i = -eps log( (1/M) sum_j exp((h_j - C_ij) / eps) )   (-> min_j C_ij - h_j as eps -> 0)
    """
    return -eps * (logsumexp((potential - cost) / eps, axis=1) - np.log(cost.shape[1]))
