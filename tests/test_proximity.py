"""closest_point_on_triangles: exact against trimesh, complete against brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from bgnn_sim.geometry.proximity import (
    TriangleContacts,
    closest_point_on_triangle_pairs,
    closest_point_on_triangles,
    equal_rows,
)


def _soup(seed: int = 0, n: int = 300) -> np.ndarray:
    """[n, 3, 3] random triangles in the unit cube: small, slivers, and a few very large ones."""
    rng = np.random.default_rng(seed)
    centers = rng.random((n, 1, 3))
    triangles = centers + 0.1 * rng.standard_normal((n, 3, 3))
    slivers = slice(0, n // 5)  # third vertex ~1e-4 off the first edge (edges are ~0.15 long)
    along = rng.random((n // 5, 1))
    off = 1e-4 * rng.standard_normal((n // 5, 3))
    triangles[slivers, 2] = (
        triangles[slivers, 0] + along * (triangles[slivers, 1] - triangles[slivers, 0]) + off
    )
    triangles[-3:] = centers[-3:] + 3.0 * rng.standard_normal((3, 3, 3))  # span many cells
    return triangles


def _meshes() -> dict[str, trimesh.Trimesh]:
    soup = _soup()
    faces = np.arange(3 * len(soup)).reshape(-1, 3)
    return {
        "icosphere": trimesh.creation.icosphere(subdivisions=3, radius=0.5),
        "box": trimesh.creation.box(extents=(1.0, 0.6, 0.3)),
        "soup": trimesh.Trimesh(soup.reshape(-1, 3), faces, process=False),
    }


def _points_around(mesh: trimesh.Trimesh, n: int, seed: int = 1) -> np.ndarray:
    # Percentiles, not bounds: the soup's few huge triangles would spread the points too thin.
    low, high = np.percentile(mesh.vertices, [2, 98], axis=0)
    margin = 0.2 * (high - low).max()
    return np.random.default_rng(seed).uniform(low - margin, high + margin, size=(n, 3))


def _brute_force(points: torch.Tensor, triangles: torch.Tensor, cutoff: float):
    """All N x F pairs through the kernel; (point, triangle, closest, distance) within cutoff."""
    point_index = torch.arange(len(points)).repeat_interleave(len(triangles))
    triangle_index = torch.arange(len(triangles)).repeat(len(points))
    closest = closest_point_on_triangle_pairs(points[point_index], triangles[triangle_index])
    distance = (points[point_index] - closest).norm(dim=1)
    keep = distance <= cutoff
    return point_index[keep], triangle_index[keep], closest[keep], distance[keep]


def _random_points_on(triangles: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """[F, 3] one uniformly random point on each triangle."""
    u, v = torch.rand(2, len(triangles), 1, generator=generator, dtype=triangles.dtype)
    flip = (u + v) > 1
    u, v = torch.where(flip, 1 - u, u), torch.where(flip, 1 - v, v)
    a, b, c = triangles.unbind(dim=1)
    return a + u * (b - a) + v * (c - a)


def _nearest(contacts: TriangleContacts, n_points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[N] smallest distance per point (inf without contacts) and [N] row of that contact."""
    inf = torch.full((n_points,), torch.inf, dtype=contacts.distance.dtype)
    nearest = inf.scatter_reduce(0, contacts.point_index, contacts.distance, "amin")
    is_min = contacts.distance == nearest[contacts.point_index]
    row = torch.full((n_points,), -1, dtype=torch.long)
    row[contacts.point_index[is_min]] = torch.nonzero(is_min).squeeze(1)
    return nearest, row


@pytest.mark.parametrize("name", ["icosphere", "box", "soup"])
def test_nearest_contact_matches_trimesh(name: str) -> None:
    mesh = _meshes()[name]
    points = _points_around(mesh, 1000)
    cutoff = 0.15
    contacts = closest_point_on_triangles(
        torch.from_numpy(points), torch.tensor(mesh.triangles), cutoff
    )
    expected_point, expected_distance, _ = trimesh.proximity.closest_point(mesh, points)

    nearest, row = _nearest(contacts, len(points))
    has = torch.isfinite(nearest).numpy()
    assert 100 < has.sum() < len(points)  # both cases are exercised
    np.testing.assert_allclose(nearest.numpy()[has], expected_distance[has], rtol=0, atol=1e-9)
    assert (expected_distance[~has] > cutoff).all()
    closest = contacts.closest[row[torch.from_numpy(has)]].numpy()
    np.testing.assert_allclose(closest, expected_point[has], rtol=0, atol=1e-9)


@pytest.mark.parametrize("chunk_size", [97, 1 << 18])
def test_all_pairs_within_cutoff_match_brute_force(chunk_size: int) -> None:
    triangles = torch.from_numpy(_soup(seed=2))
    # Unequal grid dimensions, so that a wrong cell key would alias cells and duplicate pairs.
    scale = torch.tensor([1.0, 0.5, 0.3], dtype=torch.float64)
    points = scale * torch.rand(400, 3, generator=torch.Generator().manual_seed(3)).double()
    cutoff = 0.1
    contacts = closest_point_on_triangles(points, triangles, cutoff, chunk_size=chunk_size)
    point_index, triangle_index, closest, distance = _brute_force(points, triangles, cutoff)

    assert len(point_index) > 1000
    # The brute force enumerates pairs point-major, so this also checks the sort order.
    assert torch.equal(contacts.point_index, point_index)
    assert torch.equal(contacts.triangle_index, triangle_index)
    torch.testing.assert_close(contacts.closest, closest, rtol=0, atol=1e-12)
    torch.testing.assert_close(contacts.distance, distance, rtol=0, atol=1e-12)


def test_tiny_cutoff_in_large_scene_matches_brute_force() -> None:
    # 1e-3 cells over 100 m would be 1e15 cells: the grid must coarsen instead.
    generator = torch.Generator().manual_seed(4)
    triangles = 100 * torch.rand(50, 3, 3, generator=generator, dtype=torch.float64)
    on_surface = _random_points_on(triangles, generator)
    points = torch.cat([on_surface, 100 * torch.rand(200, 3, dtype=torch.float64)])
    points[:50] += 4e-4 * torch.randn(50, 3, generator=generator, dtype=torch.float64)
    contacts = closest_point_on_triangles(points, triangles, 1e-3)
    expected = _brute_force(points, triangles, 1e-3)
    assert len(expected[0]) >= 25
    assert torch.equal(contacts.point_index, expected[0])
    assert torch.equal(contacts.triangle_index, expected[1])


def test_points_on_triangles_have_zero_distance() -> None:
    triangles = torch.tensor(trimesh.creation.icosphere(subdivisions=2).triangles)
    points = _random_points_on(triangles, torch.Generator().manual_seed(5))
    contacts = closest_point_on_triangles(points, triangles, 1e-3)
    own = contacts.triangle_index == contacts.point_index
    assert torch.equal(contacts.point_index[own], torch.arange(len(points)))
    assert contacts.distance[own].max() < 1e-12
    torch.testing.assert_close(contacts.closest[own], points, rtol=0, atol=1e-12)


def test_cutoff_is_inclusive() -> None:
    triangle = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]], dtype=torch.float64)
    points = torch.tensor([[0.25, 0.25, 0.25], [0.25, 0.25, 0.2500001]], dtype=torch.float64)
    contacts = closest_point_on_triangles(points, triangle, 0.25)
    assert contacts.point_index.tolist() == [0] and contacts.distance.tolist() == [0.25]


@pytest.mark.parametrize("height", [0.0, 0.05, -0.05])
def test_closest_point_in_every_voronoi_region(height: float) -> None:
    a, b, c = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0.0, 1, 0]], dtype=torch.float64)
    d = 0.01  # in-plane offset outside the triangle
    expected = torch.stack([a, b, c, (a + b) / 2, (b + c) / 2, (a + c) / 2, (a + b + c) / 3])
    in_plane = expected + torch.tensor(
        [[-d, -d, 0], [d, -d / 2, 0], [-d / 2, d, 0], [0, -d, 0], [d, d, 0], [-d, 0, 0], [0, 0, 0]],
        dtype=torch.float64,
    )
    points = in_plane + torch.tensor([0.0, 0.0, height], dtype=torch.float64)
    closest = closest_point_on_triangle_pairs(points, torch.stack([a, b, c]).expand(7, 3, 3))
    torch.testing.assert_close(closest, expected, rtol=0, atol=1e-15)


def test_degenerate_triangles_give_finite_exact_points() -> None:
    triangles = torch.tensor(
        [
            [[0, 0, 0], [0, 0, 0], [0, 0, 0]],  # a point
            [[0, 0, 0], [0, 0, 0], [1, 0, 0]],  # a segment (a == b)
            [[0, 0, 0], [0.5, 0, 0], [1, 0, 0]],  # collinear
            [[1, 0, 0], [0, 0, 0], [0.5, 0, 1e-13]],  # sliver of height 1e-13
            [[1, 0, 0], [0, 0, 0], [0.5, 0, 1e-13]],  # the same, point over its inside
        ],
        dtype=torch.float64,
    )
    p = torch.tensor([[0.3, 0.2, 0.1]] * 4 + [[0.4, 0.2, 1e-14]], dtype=torch.float64)
    expected = torch.tensor(
        [[0, 0, 0], [0.3, 0, 0], [0.3, 0, 0], [0.3, 0, 0], [0.4, 0, 0]], dtype=torch.float64
    )
    closest = closest_point_on_triangle_pairs(p, triangles)
    assert torch.isfinite(closest).all()
    torch.testing.assert_close(closest, expected, rtol=0, atol=1e-12)


def test_sliver_reached_through_face_region_falls_back_to_its_edges() -> None:
    # c lies 1e-12 off edge ab; round-off sends this point to the face region, whose plane is
    # then meaningless (found by a random search over 20000 such slivers).
    a, b, c = (
        [0.14757525747567002, 0.18360166074438355, 0.5439444232324528],
        [0.983352667412748, 0.4488354551566457, 0.07583630711993317],
        [0.52441631178982, 0.3031920942002467, 0.33288062333659924],
    )
    point = np.array([0.5779371622009387, 0.3191265673464045, 0.30506527223780233])
    triangle = torch.tensor([[a, b, c]], dtype=torch.float64)
    a, b = np.array(a), np.array(b)
    expected = a + np.dot(point - a, b - a) / np.dot(b - a, b - a) * (b - a)
    closest = closest_point_on_triangle_pairs(torch.from_numpy(point[None]), triangle)
    np.testing.assert_allclose(closest[0].numpy(), expected, rtol=0, atol=1e-10)


def test_float32_matches_float64() -> None:
    mesh = _meshes()["icosphere"]
    points = _points_around(mesh, 2000)
    contacts = closest_point_on_triangles(
        torch.from_numpy(points).float(), torch.tensor(mesh.triangles).float(), 0.1
    )
    assert contacts.closest.dtype == contacts.distance.dtype == torch.float32
    assert contacts.point_index.dtype == contacts.triangle_index.dtype == torch.int64
    _, expected_distance, _ = trimesh.proximity.closest_point(mesh, points)
    nearest, _ = _nearest(contacts, len(points))
    clear = np.abs(expected_distance - 0.1) > 1e-5  # away from the cutoff's rounding
    has = torch.isfinite(nearest).numpy()
    assert np.array_equal(has[clear], expected_distance[clear] <= 0.1)
    np.testing.assert_allclose(nearest.numpy()[has], expected_distance[has], rtol=0, atol=2e-6)


@pytest.mark.parametrize(("n_points", "n_triangles"), [(0, 5), (5, 0), (0, 0)])
def test_empty_inputs_give_empty_contacts(n_points: int, n_triangles: int) -> None:
    contacts = closest_point_on_triangles(
        torch.rand(n_points, 3), torch.rand(n_triangles, 3, 3), 0.1
    )
    assert contacts.point_index.shape == contacts.triangle_index.shape == (0,)
    assert contacts.point_index.dtype == torch.int64
    assert contacts.closest.shape == (0, 3) and contacts.closest.dtype == torch.float32
    assert contacts.distance.shape == (0,)


def test_far_points_give_empty_contacts() -> None:
    contacts = closest_point_on_triangles(torch.rand(10, 3) + 5, torch.rand(4, 3, 3), 0.1)
    assert len(contacts.point_index) == 0 and contacts.closest.shape == (0, 3)


@pytest.mark.parametrize("cutoff", [0.0, -1.0, float("nan")])
def test_invalid_cutoff_raises(cutoff: float) -> None:
    with pytest.raises(ValueError, match="cutoff"):
        closest_point_on_triangles(torch.rand(3, 3), torch.rand(2, 3, 3), cutoff)


def test_non_finite_points_raise() -> None:
    points = torch.tensor([[0.0, 0.0, float("nan")]])
    with pytest.raises(ValueError, match="finite"):
        closest_point_on_triangles(points, torch.rand(2, 3, 3), 0.1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    triangles = torch.from_numpy(_soup(seed=6))
    points = torch.rand(3000, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    expected = closest_point_on_triangles(points, triangles, 0.05)
    contacts = closest_point_on_triangles(points.cuda(), triangles.cuda(), 0.05)
    assert contacts.closest.device.type == "cuda"
    assert torch.equal(contacts.point_index.cpu(), expected.point_index)
    assert torch.equal(contacts.triangle_index.cpu(), expected.triangle_index)
    torch.testing.assert_close(contacts.closest.cpu(), expected.closest, rtol=0, atol=1e-12)
    torch.testing.assert_close(contacts.distance.cpu(), expected.distance, rtol=0, atol=1e-12)


def test_equal_rows_groups_as_torch_unique_does():
    generator = torch.Generator().manual_seed(0)
    rows = torch.randint(-3, 3, (500, 4), generator=generator)  # many repeats
    order, starts = equal_rows(rows.numpy())
    distinct, inverse, counts = torch.unique(rows, dim=0, return_inverse=True, return_counts=True)
    order, starts = torch.from_numpy(order), torch.from_numpy(starts)
    assert torch.equal(rows[order[starts]], distinct)
    group = torch.cumsum(starts, 0) - 1
    assert torch.equal(inverse[order], group)
    assert torch.equal(torch.bincount(group), counts)
    # Within a group the rows keep their original order: the first is the lowest index.
    for k in range(len(distinct)):
        assert order[starts][k] == (inverse == k).nonzero()[0, 0]
