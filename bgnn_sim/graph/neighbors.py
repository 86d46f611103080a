"""Particle neighbour search: every ordered pair within a cutoff, from either of two backends.

The semantics are fixed here, not by the backend: a pair (i, j), i != j, is an edge when
``torch.linalg.vector_norm(x[i] - x[j]) <= cutoff`` evaluated in the positions' dtype on their
device (inclusive). Each backend only proposes candidates within a slightly larger radius; the
same exact test then decides every pair, so both backends return identical tensors, and pairs at
exactly the cutoff are kept whatever the backend's own rounding or strict inequality.
"""

from __future__ import annotations

import importlib

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

BACKENDS = ("auto", "kdtree", "torch_cluster")
# torch_cluster caps the neighbours per point (and allocates N x cap slots on the GPU); the cap
# starts here and doubles until no point saturates it.
_FIRST_CAP = 64


def radius_graph(positions: Tensor, cutoff: float, backend: str = "auto") -> Tensor:
    """All ordered pairs of points within `cutoff` of each other (inclusive), both directions.

    No self loops and no cap on the number of neighbours.

    Args:
        positions: [N, 3] float point coordinates.
        cutoff: Largest distance kept (inclusive), > 0, in the units of `positions`.
        backend: "kdtree" (scipy cKDTree on the CPU; data moves there and back),
            "torch_cluster" (`torch_cluster.radius_graph` on the positions' device) or "auto"
            (torch_cluster for CUDA tensors when it is installed, kdtree otherwise).

    Returns:
        [2, E] int64 edge index on the device of `positions`: row 0 the sender, row 1 the
        receiver, sorted by (receiver, sender).

    Raises:
        ValueError: On an unknown backend, a bad shape, non-finite coordinates or cutoff <= 0.
        ImportError: If backend="torch_cluster" and torch_cluster is not installed.
    """
    _check_inputs(positions, cutoff, backend)
    positions = positions.detach()
    if len(positions) < 2:
        return torch.empty(2, 0, dtype=torch.long, device=positions.device)
    if backend == "auto":
        backend = "torch_cluster" if positions.is_cuda and _has_torch_cluster() else "kdtree"
    # Margin over the cutoff for the candidate search: it must cover the backends' round-off
    # (float32 differences of coordinates far from the origin) and torch_cluster's strict "<".
    eps = torch.finfo(positions.dtype).eps
    search = cutoff * (1.0 + 1e-4) + 16.0 * eps * (positions.abs().max().item() + cutoff)
    if backend == "kdtree":
        candidates = _kdtree_candidates(positions, search)
    else:
        candidates = _torch_cluster_candidates(positions, search)
    return _sorted(_within(positions, candidates, cutoff), len(positions))


def _kdtree_candidates(positions: Tensor, radius: float) -> Tensor:
    """[2, C] int64 pairs (both directions) within `radius`, from scipy's cKDTree."""
    # float64 holds float32 coordinates exactly: the tree sees the same points.
    points = positions.cpu().double().numpy()
    pairs = cKDTree(points).query_pairs(radius, output_type="ndarray")
    pairs = torch.from_numpy(pairs.astype(np.int64, copy=False)).to(positions.device)
    return torch.cat((pairs.T, pairs.T.flip(0)), dim=1)


def _torch_cluster_candidates(positions: Tensor, radius: float) -> Tensor:
    """[2, C] int64 pairs within `radius` from torch_cluster, never truncated by its cap.

    With loop=True each point counts itself, so a point with `cap` results may have lost
    neighbours: the query is repeated with a doubled cap until no point reaches it (a cap >= N
    cannot bind).
    """
    torch_cluster = _import_torch_cluster()
    n = len(positions)
    cap = min(_FIRST_CAP, n)
    while True:
        edges = torch_cluster.radius_graph(positions, radius, loop=True, max_num_neighbors=cap)
        counts = torch.bincount(edges[1], minlength=n)
        if cap >= n or int(counts.max()) < cap:
            return edges
        cap = min(2 * cap, n)


def _within(positions: Tensor, edges: Tensor, cutoff: float) -> Tensor:
    """The candidate edges [2, C] that are true edges: distinct ends, distance <= cutoff."""
    sender, receiver = edges
    distance = torch.linalg.vector_norm(positions[receiver] - positions[sender], dim=1)
    keep = (distance <= cutoff) & (sender != receiver)
    return edges[:, keep]


def _sorted(edges: Tensor, n: int) -> Tensor:
    """Edges [2, E] sorted by (receiver, sender); keys are unique, so the order is canonical."""
    order = torch.argsort(edges[1] * n + edges[0])
    return edges[:, order].contiguous()


def _import_torch_cluster():
    """The torch_cluster module; ImportError with a hint when it is missing or broken."""
    try:
        return importlib.import_module("torch_cluster")
    except (ImportError, OSError) as error:  # OSError: a build that does not match torch
        raise ImportError(
            f"radius_graph backend 'torch_cluster' needs a working torch-cluster ({error}); "
            "install it (pip install torch-cluster) or use backend='kdtree'"
        ) from error


def _has_torch_cluster() -> bool:
    try:
        _import_torch_cluster()
    except ImportError:
        return False
    return True


def _check_inputs(positions: Tensor, cutoff: float, backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown neighbour backend {backend!r}; expected one of {BACKENDS}")
    if not cutoff > 0:
        raise ValueError(f"cutoff must be > 0, got {cutoff}")
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions must be [N, 3], got {list(positions.shape)}")
    if not positions.is_floating_point():
        raise ValueError(f"positions must be floating point, got {positions.dtype}")
    if not torch.isfinite(positions).all():
        raise ValueError("positions must be finite")
