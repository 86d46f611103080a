"""Closest points on triangles within a cutoff: the wall contacts of a Boundary GNN.

Every pair within the cutoff becomes a virtual wall node, so all are returned, not only the
nearest triangle. Broad phase, never forming the N x F matrix: each triangle's bounding box grown
by the cutoff registers in the cells of a uniform grid (cell >= cutoff) it covers, and a sort +
searchsorted join on the cell key pairs it with the points hashed to those cells (unique pairs: a
point lies in one cell, a triangle registers in a cell once). Narrow phase: the exact closest point
(Ericson, Real-Time Collision Detection, §5.1.5), a bounded chunk of candidates at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

# Bounds the grid so that a tiny cutoff in a large scene cannot make a triangle cover billions of
# cells; the cell grows instead, which only adds candidates.
_MAX_CELLS = 1 << 22


class TriangleContacts(NamedTuple):
    """All (point, triangle) pairs within the cutoff, sorted by (point_index, triangle_index).

    Attributes:
        point_index: [P] int64, index into the query points.
        triangle_index: [P] int64, index into the triangles.
        closest: [P, 3] closest point on that triangle, dtype of the points.
        distance: [P] Euclidean distance from the point to `closest`.
    """

    point_index: Tensor
    triangle_index: Tensor
    closest: Tensor
    distance: Tensor


class _Grid(NamedTuple):
    origin: Tensor  # [3] float64, min corner of the points' bounding box
    cell: float  # edge length of a cubic cell
    dims: tuple[int, int, int]  # cells along x, y, z


def closest_point_on_triangles(
    points: Tensor, triangles: Tensor, cutoff: float, chunk_size: int = 1 << 17
) -> TriangleContacts:
    """Finds every triangle within `cutoff` of every point, with the closest point on it.

    Args:
        points: [N, 3] float32 or float64 query points.
        triangles: [F, 3, 3] triangle vertices, same device as `points`.
        cutoff: Largest distance kept (inclusive), > 0.
        chunk_size: Candidate pairs handled at once; bounds the peak memory.

    Returns:
        The pairs with distance <= cutoff, sorted by (point_index, triangle_index), on the
        device of `points`.

    Raises:
        ValueError: If `cutoff` <= 0, shapes are wrong or coordinates are not finite.
    """
    _check_inputs(points, triangles, cutoff)
    triangles = triangles.to(device=points.device, dtype=points.dtype)
    if len(points) == 0 or len(triangles) == 0:
        return _empty_contacts(points)
    grid = _make_grid(points, max(cutoff, _typical_size(triangles)))
    cell_keys, order = torch.sort(_cell_keys(points, grid))
    # Points in cell order: the candidate gathers below then read nearby memory.
    cell_points = points.index_select(0, order)
    # A margin over the cutoff: round-off in the hashing must not drop a pair the kernel keeps.
    pad = cutoff + 16 * torch.finfo(points.dtype).eps * (points.abs().max().item() + cutoff)
    bounds = _bounds(triangles, pad)
    parts = []
    for pairs in _candidate_pairs(cell_keys, triangles, grid, pad, chunk_size):
        parts.append(_narrow_phase(cell_points, triangles, bounds, pairs, cutoff))
    if not parts:
        return _empty_contacts(points)
    return _sorted_contacts(parts, order, len(triangles))


def closest_point_on_triangle_pairs(points: Tensor, triangles: Tensor) -> Tensor:
    """Closest point on triangle i to point i (Ericson's Voronoi-region method, vectorised).

    Each branch of the sequential algorithm is evaluated for all pairs; they are applied in
    reverse order so that, as in the original early returns, the first matching region wins.

    Args:
        points: [P, 3] query points.
        triangles: [P, 3, 3] triangle vertices (a, b, c), same dtype as `points`.

    Returns:
        [P, 3] closest points; finite for degenerate triangles (segments, points) too.
    """
    # Components first ([3, P]): every operation below then runs over contiguous rows, several
    # times faster on CPU than over interleaved [P, 3] rows.
    p = points.T.contiguous()
    a, b, c = triangles.permute(1, 2, 0).contiguous()
    ab, ac, ap, bp, cp = b - a, c - a, p - a, p - b, p - c
    d1, d2 = _dot(ab, ap), _dot(ac, ap)
    d3, d4 = _dot(ab, bp), _dot(ac, bp)
    d5, d6 = _dot(ab, cp), _dot(ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    closest = _face_region(p, a, b, c)
    # An edge region needs an edge of non-zero length (d1 - d3 = |ab|^2, ...): when a == b,
    # Ericson's test for edge ab holds trivially and would hide edge ac.
    d43, d56 = d4 - d3, d5 - d6
    regions = (
        ((va <= 0) & (d43 >= 0) & (d56 >= 0) & (d43 + d56 > 0), b + _fraction(d43, d56) * (c - b)),
        ((vb <= 0) & (d2 >= 0) & (d6 <= 0) & (d2 > d6), a + _fraction(d2, -d6) * ac),
        ((d6 >= 0) & (d5 <= d6), c),
        ((vc <= 0) & (d1 >= 0) & (d3 <= 0) & (d1 > d3), a + _fraction(d1, -d3) * ab),
        ((d3 >= 0) & (d4 <= d3), b),
        ((d1 <= 0) & (d2 <= 0), a),
    )
    for inside, point in regions:
        # = torch.where(inside, point, closest): lerp by a 0/1 weight returns one of its finite
        # inputs exactly, and does not branch per element (where is ~10x slower on CPU here).
        closest = torch.lerp(closest, point, inside.to(closest.dtype))
    return closest.T.contiguous()


def equal_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Groups of equal rows of [R, C] (a particle and its quantised closest point, which
    several triangles meeting at an edge or vertex share).

    Returns:
        order: [R] int64, the rows in lexicographic order; equal rows in their original order.
        starts: [R] bool, whether `rows[order[k]]` starts a group: `order[starts]` is the
            first row of each group, `cumsum(starts) - 1` the group of `rows[order]`.

    numpy's lexsort (stable): the groups of torch.unique(dim=0), in its order, 4-10x faster on
    CPU; this runs every frame of a rollout and every step of a fill.
    """
    order = np.lexsort(rows.T[::-1])  # by column 0, then 1, ...
    ordered = rows[order]
    starts = np.ones(len(rows), dtype=bool)
    starts[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    return order, starts


def _face_region(p: Tensor, a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """[3, P] projection of points p [3, P] on the planes of triangles (a, b, c), each [3, P].

    The projection along the normal is far less sensitive to slivers than Ericson's barycentric
    quotient (error ~ eps / sin(angle) rather than eps / sin(angle)^2). Triangles too thin to have
    a trustworthy normal fall back to their nearest edge.
    """
    ab, ac = b - a, c - a
    normal = torch.linalg.cross(ab, ac, dim=0)
    area2 = _dot(normal, normal)
    thin = area2 <= torch.finfo(p.dtype).eps * _dot(ab, ab) * _dot(ac, ac)
    height = _dot(normal, p - a) / torch.where(thin, 1.0, area2)
    closest = p - height * normal
    thin_index = thin.nonzero().squeeze(1)
    if len(thin_index):
        thin_vertices = (x.index_select(1, thin_index) for x in (p, a, b, c))
        closest[:, thin_index] = _closest_on_edges(*thin_vertices)
    return closest


def _closest_on_edges(p: Tensor, a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """[3, K] closest point on the edges of triangles (a, b, c) [3, K] to points p [3, K]."""
    start = torch.stack((a, b, c))  # [edge, 3, K]
    edge = torch.stack((b, c, a)) - start
    along = _dot(p - start, edge, dim=1)
    on_edge = start + _fraction(along, _dot(edge, edge, dim=1) - along)[:, None] * edge
    nearest = (p - on_edge).square().sum(dim=1).argmin(dim=0)  # [K]
    return on_edge.gather(0, nearest.expand(1, 3, -1)).squeeze(0)


def _fraction(x: Tensor, y: Tensor) -> Tensor:
    """x / (x + y) clamped to [0, 1]; 0 / 0 (a zero-length edge) gives 0, not NaN."""
    total = (x + y).clamp_min(torch.finfo(x.dtype).tiny)
    return (x / total).clamp(0.0, 1.0)


def _dot(u: Tensor, v: Tensor, dim: int = 0) -> Tensor:
    """Dot products over `dim` of component-major vectors ([3, P] and the like), where torch's
    reduction runs over contiguous rows and is fast; `row_dot` serves [..., 3] rows."""
    return torch.linalg.vecdot(u, v, dim=dim)


def row_dot(u: Tensor, v: Tensor) -> Tensor:
    """Dot products [...] of the 3-vectors in the last dimension of u, v [..., 3].

    A matrix-vector product: on CPU torch's reductions over a last dimension of 3 (vecdot, sum)
    take ~10x longer (1.6 against 0.15 ms for 52,000 rows)."""
    return (u * v) @ u.new_ones(3)


def _narrow_phase(
    points: Tensor,
    triangles: Tensor,
    bounds: _Bounds,
    pairs: tuple[Tensor, Tensor],
    cutoff: float,
) -> tuple[Tensor, ...]:
    """Exact distances for one chunk of candidate pairs; keeps those within the cutoff.

    A grid cell is coarser than the cutoff shell around a triangle: two cheap tests first drop
    most candidates, the triangle's padded bounding sphere and the slab of its plane (a long
    triangle's sphere holds much of a drum; its slab, the points near its plane).
    """
    point_index, triangle_index = pairs
    query = points.index_select(0, point_index)
    offset = query - bounds.center.index_select(0, triangle_index)
    in_sphere = row_dot(offset, offset) <= bounds.radius2.index_select(0, triangle_index)
    height = row_dot(offset, bounds.normal.index_select(0, triangle_index))
    near = (in_sphere & (height.abs() <= bounds.pad)).nonzero().squeeze(1)
    point_index, triangle_index, query = (
        x.index_select(0, near) for x in (point_index, triangle_index, query)
    )
    closest = closest_point_on_triangle_pairs(query, triangles.index_select(0, triangle_index))
    distance = torch.linalg.vector_norm(query - closest, dim=1)
    keep = (distance <= cutoff).nonzero().squeeze(1)
    return tuple(x.index_select(0, keep) for x in (point_index, triangle_index, closest, distance))


class _Bounds(NamedTuple):
    """What a point must be within to lie within `pad` of a triangle: a sphere around it (centre
    [F, 3], squared radius [F]) and the slab |(p - centre) . normal| <= pad of its plane (unit
    normal [F, 3]; zero for a triangle too thin to have one, whose slab is then everything)."""

    center: Tensor
    radius2: Tensor
    normal: Tensor
    pad: float


def _bounds(triangles: Tensor, pad: float) -> _Bounds:
    """The padded sphere and slab of each triangle [F, 3, 3]."""
    center = triangles.mean(dim=1)
    radius = torch.linalg.vector_norm(triangles - center[:, None], dim=2).amax(dim=1)
    ab, ac = triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0]
    normal = torch.linalg.cross(ab, ac)
    area2 = row_dot(normal, normal)
    # The same threshold as _face_region's: below it the normal's direction is round-off.
    thin = area2 <= torch.finfo(triangles.dtype).eps * row_dot(ab, ab) * row_dot(ac, ac)
    length = area2.sqrt().clamp_min(torch.finfo(area2.dtype).tiny)
    normal = torch.where(thin[:, None], 0.0, normal / length[:, None])
    return _Bounds(center, (radius + pad).square(), normal, pad)


def _candidate_pairs(
    cell_keys: Tensor, triangles: Tensor, grid: _Grid, pad: float, chunk_size: int
) -> Iterator[tuple[Tensor, Tensor]]:
    """Joins the cells covered by each triangle (box grown by pad) with the points in them.

    Args:
        cell_keys: [N] sorted cell keys of the points.

    Yields:
        point_index: [M] int64 position in `cell_keys`; triangle_index: [M] int64.
    """
    lower, span = _triangle_cell_ranges(triangles, grid, pad)
    for triangle, local in _ragged_chunks(span.prod(dim=1), chunk_size):
        cell = lower.index_select(0, triangle) + _unravel(local, span.index_select(0, triangle))
        key = _key(cell, grid.dims)
        first = torch.searchsorted(cell_keys, key)
        count = torch.searchsorted(cell_keys, key, right=True) - first
        for registration, offset in _ragged_chunks(count, chunk_size):
            point_index = first.index_select(0, registration) + offset
            yield point_index, triangle.index_select(0, registration)


def _typical_size(triangles: Tensor) -> float:
    """Half the median longest side of the triangles' bounding boxes (0 for none).

    Cells much smaller than the triangles make each triangle register in a great many cells (a
    cutoff of microns against centimetre triangles took ~100x longer than a millimetre one):
    cells are never smaller than this.
    """
    extent = (triangles.amax(dim=1) - triangles.amin(dim=1)).amax(dim=1)
    return 0.5 * float(extent.median()) if len(extent) else 0.0


def _make_grid(points: Tensor, cutoff: float) -> _Grid:
    """Grid over the points' bounding box; cells of `cutoff`, doubled until few enough."""
    low = points.amin(dim=0).double()
    extent = (points.amax(dim=0).double() - low).tolist()
    cell = float(cutoff)
    while True:
        dims = tuple(int(e // cell) + 1 for e in extent)
        if dims[0] * dims[1] * dims[2] <= _MAX_CELLS:
            return _Grid(low, cell, dims)
        cell *= 2.0


def _cell_keys(points: Tensor, grid: _Grid) -> Tensor:
    """[N] int64 key of the cell holding each point."""
    upper = torch.tensor(grid.dims, device=points.device) - 1
    ijk = ((points.double() - grid.origin) / grid.cell).floor().long()
    return _key(ijk.clamp(min=torch.zeros_like(upper), max=upper), grid.dims)


def _key(ijk: Tensor, dims: tuple[int, int, int]) -> Tensor:
    """[M] int64 row-major key of integer cell coordinates [M, 3]."""
    return (ijk[:, 2] * dims[1] + ijk[:, 1]) * dims[0] + ijk[:, 0]


def _triangle_cell_ranges(triangles: Tensor, grid: _Grid, pad: float) -> tuple[Tensor, Tensor]:
    """Block of cells covered by each triangle's bounding box grown by `pad`.

    Returns:
        lower: [F, 3] int64 first covered cell.
        span: [F, 3] int64 cells covered per axis, clipped to the grid; zero if the box misses it.
    """
    dims = torch.tensor(grid.dims, device=triangles.device, dtype=torch.float64)
    # Clamped before the int64 cast so that a far-away triangle cannot overflow it.
    lower = ((triangles.amin(dim=1).double() - pad - grid.origin) / grid.cell).floor()
    upper = ((triangles.amax(dim=1).double() + pad - grid.origin) / grid.cell).floor()
    lower = lower.clamp(min=torch.zeros_like(dims), max=dims)
    upper = upper.clamp(min=-torch.ones_like(dims), max=dims - 1)
    return lower.long(), (upper - lower + 1).clamp_min(0).long()


def _unravel(local: Tensor, span: Tensor) -> Tensor:
    """[M, 3] offsets (x fastest) of flat index `local` [M] within blocks of shape `span` [M, 3]."""
    x = local % span[:, 0]
    y = (local // span[:, 0]) % span[:, 1]
    z = local // (span[:, 0] * span[:, 1])
    return torch.stack((x, y, z), dim=1)


def _ragged_chunks(counts: Tensor, chunk_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Yields (owner [M], local [M]) for local in range(counts[owner]), chunk_size at a time.

    The full repeat_interleave may not fit in memory; each chunk expands only the owners it
    overlaps, clipped to the chunk, so a chunk never exceeds chunk_size items.
    """
    ends = counts.cumsum(dim=0)
    starts = ends - counts
    total = int(ends[-1]) if len(ends) else 0
    for begin in range(0, total, chunk_size):
        stop = min(begin + chunk_size, total)
        bounds = torch.tensor([begin, stop - 1], device=counts.device)
        first, last = torch.searchsorted(ends, bounds, right=True).tolist()
        clipped = ends[first : last + 1].clamp_max(stop) - starts[first : last + 1].clamp_min(begin)
        owners = torch.arange(first, last + 1, device=counts.device)
        owner = torch.repeat_interleave(owners, clipped, output_size=stop - begin)
        flat = torch.arange(begin, stop, device=counts.device)
        yield owner, flat - starts.index_select(0, owner)


def _sorted_contacts(parts: list[tuple], order: Tensor, n_triangles: int) -> TriangleContacts:
    """Concatenates chunk results, maps cell-ordered points back, sorts by (point, triangle)."""
    columns = [torch.cat(column) for column in zip(*parts, strict=True)]
    columns[0] = order.index_select(0, columns[0])
    rank = torch.argsort(columns[0] * n_triangles + columns[1])
    return TriangleContacts(*(column.index_select(0, rank) for column in columns))


def _empty_contacts(points: Tensor) -> TriangleContacts:
    index = torch.empty(0, dtype=torch.long, device=points.device)
    return TriangleContacts(index, index.clone(), points.new_empty(0, 3), points.new_empty(0))


def _check_inputs(points: Tensor, triangles: Tensor, cutoff: float) -> None:
    if not cutoff > 0:
        raise ValueError(f"cutoff must be > 0, got {cutoff}")
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be [N, 3], got {list(points.shape)}")
    if triangles.ndim != 3 or triangles.shape[1:] != (3, 3):
        raise ValueError(f"triangles must be [F, 3, 3], got {list(triangles.shape)}")
    if not (torch.isfinite(points).all() and torch.isfinite(triangles).all()):
        raise ValueError("points and triangles must have finite coordinates")
