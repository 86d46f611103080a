"""Overlaps between grains: how far a rollout's grains sink into each other.

A DEM's soft contacts overlap a little (LIGGGHTS's hopper beds ~4-10 um at 4 mm grains); a
learned simulator that does not push touching grains apart hard enough packs them deeper
(benchmarks/TRAINING.md, fifteenth session: the 4 ms hoppers' grains overlap 2.6-2.8x as deep
as LIGGGHTS's, the 2 ms model's 1.3x; there, a symptom of the longer frame, not what slows
their discharge).

    overlaps   r_i + r_j - |x_i - x_j| of each touching pair                   [P] metres
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def overlaps(positions: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Overlaps [P] (m, > 0) of the touching pairs of spheres at positions [n, 3] with radii
    [n]; empty when none touch."""
    if len(positions) < 2:
        return np.zeros(0)
    pairs = cKDTree(positions).query_pairs(2 * float(radius.max()), output_type="ndarray")
    i, j = pairs.T
    overlap = radius[i] + radius[j] - np.linalg.norm(positions[i] - positions[j], axis=1)
    return overlap[overlap > 0]
