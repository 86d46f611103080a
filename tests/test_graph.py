"""bgnn_sim.graph: neighbour backends agree with brute force, wall nodes with trimesh, and the
frame graph has the BGNN layout and is invariant to translating the whole scene."""

from __future__ import annotations

import importlib.util
import math
import os
import sys

import numpy as np
import pytest
import torch
import trimesh

from bgnn_sim.geometry.generators import HopperSpec, drum, hopper
from bgnn_sim.geometry.wall import Rotation, Static, Wall, make_gate
from bgnn_sim.graph.features import GraphSpec, build_graph
from bgnn_sim.graph.neighbors import radius_graph
from bgnn_sim.graph.walls import wall_nodes

CUTOFF = 0.01  # metres, a drum of radius 5 cm
STATS = {"velocity": {"mean": [1e-5, 0.0, -2e-5], "std": [1e-4, 2e-4, 3e-4]}, "cutoff_m": CUTOFF}
FRAME_DT = 1e-3


def _brute_force_edges(distance: torch.Tensor, cutoff: float) -> torch.Tensor:
    """[2, E] (sender, receiver) sorted by (receiver, sender), from a distance matrix [N, N]."""
    close = (distance <= cutoff) & ~torch.eye(len(distance), dtype=torch.bool)
    receiver, sender = close.nonzero().T  # nonzero is row-major: sorted by (receiver, sender)
    return torch.stack((sender, receiver))


def _cloud(seed: int, dtype=torch.float64, dense: bool = False) -> torch.Tensor:
    """[N, 3] 400 uniform points in the unit cube, then a grid of spacing 1/8 (exact in binary:
    many pairs at exactly 0.125) and, if `dense`, 100 points in a cube of side 0.05."""
    generator = torch.Generator().manual_seed(seed)
    grid = torch.stack(torch.meshgrid(*[torch.arange(4.0, dtype=dtype)] * 3, indexing="ij"), -1)
    points = [torch.rand(400, 3, generator=generator, dtype=dtype), 2.0 + grid.view(-1, 3) / 8]
    if dense:
        points.append(0.5 + 0.05 * torch.rand(100, 3, generator=generator, dtype=dtype))
    return torch.cat(points)


def _drum_wall(motion=None) -> Wall:
    mesh = drum()  # radius 0.05 m, length 0.04 m, axis y, 256 triangles
    return Wall("drum", np.asarray(mesh.vertices), np.asarray(mesh.faces), motion or Static())


def _points_in_drum(n: int, seed: int = 0) -> np.ndarray:
    """[n, 3] points inside the default drum, many within the cutoff of its walls."""
    rng = np.random.default_rng(seed)
    radius, angle = 0.049 * np.sqrt(rng.random(n)), 2.0 * math.pi * rng.random(n)
    y = rng.uniform(-0.019, 0.019, n)
    return np.column_stack((radius * np.cos(angle), y, radius * np.sin(angle)))


def _history(n: int = 150, frames: int = 6, seed: int = 0) -> torch.Tensor:
    """[frames, n, 3] positions in the drum moving by ~1e-4 m per frame."""
    rng = np.random.default_rng(seed)
    steps = 1e-4 * rng.standard_normal((frames, n, 3))
    steps[0] = _points_in_drum(n, seed)
    return torch.from_numpy(np.cumsum(steps, axis=0))


# --- neighbours -------------------------------------------------------------------------------


def test_kdtree_matches_brute_force_and_keeps_pairs_at_exactly_the_cutoff():
    x = _cloud(0)
    edges = radius_graph(x, 0.125, backend="kdtree")
    assert edges.dtype == torch.long
    distance = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")
    assert torch.equal(edges, _brute_force_edges(distance, 0.125))
    on_grid = ((edges >= 400) & (edges < 464)).all(dim=0).sum()
    assert on_grid == 2 * 3 * 4 * 4 * 3  # every axis-aligned grid neighbour, both directions


def test_kdtree_float32_bad_inputs_and_missing_torch_cluster(monkeypatch):
    x = _cloud(1, dtype=torch.float32)
    distance = torch.linalg.vector_norm(x[:, None] - x[None], dim=2)  # the same float32 formula
    expected = _brute_force_edges(distance, 0.125)
    assert torch.equal(radius_graph(x, 0.125, backend="kdtree"), expected)
    assert radius_graph(x[:1], 0.1).shape == (2, 0)
    with pytest.raises(ValueError, match="unknown neighbour backend"):
        radius_graph(x, 0.1, backend="octree")
    with pytest.raises(ValueError, match="cutoff"):
        radius_graph(x, 0.0)
    monkeypatch.setitem(sys.modules, "torch_cluster", None)  # makes the import fail
    with pytest.raises(ImportError, match="torch-cluster"):
        radius_graph(x, 0.1, backend="torch_cluster")
    assert torch.equal(radius_graph(x, 0.125, backend="auto"), expected)


@pytest.mark.skipif(
    importlib.util.find_spec("torch_cluster") is None and os.environ.get("CI") != "true",
    reason="torch-cluster is the GPU extra (CI installs it, and there a missing one fails)",
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_cluster_matches_kdtree_beyond_its_neighbour_cap(dtype):
    import torch_cluster  # noqa: F401

    for seed in range(3):
        x = _cloud(seed, dtype=dtype, dense=True)
        expected = radius_graph(x, 0.125, backend="kdtree")
        # The dense cube gives 99 neighbours each: torch_cluster's default cap of 32 (and our
        # first cap of 64) would truncate them.
        assert torch.bincount(expected[1]).max() > 64
        assert torch.equal(radius_graph(x, 0.125, backend="torch_cluster"), expected)


# --- wall nodes -------------------------------------------------------------------------------


def _trimesh_pairs(mesh: trimesh.Trimesh, points: np.ndarray, cutoff: float):
    """All (point, triangle) pairs within cutoff: indices sorted by (point, triangle), closest."""
    point_index = np.repeat(np.arange(len(points)), len(mesh.faces))
    triangle_index = np.tile(np.arange(len(mesh.faces)), len(points))
    closest = trimesh.triangles.closest_point(mesh.triangles[triangle_index], points[point_index])
    keep = np.linalg.norm(points[point_index] - closest, axis=1) <= cutoff
    return point_index[keep], triangle_index[keep], closest[keep]


@pytest.mark.parametrize("name", ["drum", "hopper"])
def test_wall_nodes_agree_with_trimesh(name):
    if name == "drum":
        mesh, points = drum(), _points_in_drum(120)
    else:
        mesh = hopper(HopperSpec(segments=24))
        rng = np.random.default_rng(3)
        points = rng.uniform([-0.03, -0.03, -0.005], [0.03, 0.03, 0.06], (120, 3))
    wall = Wall(name, np.asarray(mesh.vertices), np.asarray(mesh.faces))
    nodes = wall_nodes(torch.from_numpy(points), [wall], 0.0, CUTOFF)
    point_index, triangle_index, closest = _trimesh_pairs(mesh, points, CUTOFF)
    assert len(nodes) > len(points) // 2  # the test must see plenty of contacts
    assert np.array_equal(nodes.particle_index.numpy(), point_index)
    np.testing.assert_allclose(nodes.position.numpy(), closest, atol=1e-12)
    np.testing.assert_allclose(nodes.normal.numpy(), mesh.face_normals[triangle_index], atol=1e-12)
    # trimesh's closest point on the whole mesh is one of the particle's nodes, and none is
    # closer (trimesh breaks near-ties, squared distances within 1e-8, by face normal, so its
    # pick may be a hair farther than the strict nearest node).
    expected, distance, _ = trimesh.proximity.closest_point(mesh, points)
    particles = np.unique(point_index)
    matches = np.linalg.norm(nodes.position.numpy() - expected[point_index], axis=1) < 1e-12
    assert np.array_equal(np.unique(point_index[matches]), particles)
    gap = np.linalg.norm(points[point_index] - nodes.position.numpy(), axis=1)
    nearest = np.full(len(points), np.inf)
    np.minimum.at(nearest, point_index, gap)
    assert (nearest[particles] <= distance[particles] + 1e-15).all()
    assert (distance[particles] ** 2 - nearest[particles] ** 2 < trimesh.tol.merge).all()
    weight_sum = np.bincount(point_index, nodes.weight.numpy(), minlength=len(points))
    np.testing.assert_allclose(weight_sum[particles], 1.0)
    assert np.count_nonzero(weight_sum) == len(particles)


def test_rotating_drum_gives_wall_velocity_omega_cross_r():
    wall = _drum_wall(Rotation(axis=(0.0, 1.0, 0.0), rpm=30.0))
    t, points = 0.37, _points_in_drum(100, seed=4)
    nodes = wall_nodes(torch.from_numpy(points), [wall], t, CUTOFF)
    omega = np.array([0.0, 2.0 * math.pi * 30.0 / 60.0, 0.0])
    position = nodes.position.numpy()
    np.testing.assert_allclose(nodes.velocity.numpy(), np.cross(omega, position), atol=1e-15)
    assert np.abs(nodes.velocity.numpy()).max() > 0.9 * omega[1] * 0.05  # side wall: omega R
    # Nodes lie on the mesh posed at t (rotated), not on the mesh as loaded.
    _, distance, _ = trimesh.proximity.closest_point(wall.to_trimesh(t), position)
    np.testing.assert_allclose(distance, 0.0, atol=1e-12)


def test_removed_gate_yields_no_wall_nodes_after_opening():
    gate = make_gate((0.0, 0.0, 0.0), 0.02, open_at=0.5)
    rng = np.random.default_rng(5)
    points = torch.from_numpy(rng.uniform([-0.01, -0.01, 0.001], [0.01, 0.01, 0.005], (30, 3)))
    before = wall_nodes(points, [gate], 0.49, CUTOFF)
    assert before.particle_index.unique().tolist() == list(range(30))
    np.testing.assert_allclose(before.position[:, 2].numpy(), 0.0, atol=1e-15)
    for t in (0.5, 0.8):
        assert len(wall_nodes(points, [gate], t, CUTOFF)) == 0
    no_walls = wall_nodes(points.float(), [], 0.0, CUTOFF)
    assert no_walls.position.shape == (0, 3) and no_walls.position.dtype == torch.float32


# --- graph features ---------------------------------------------------------------------------


LEGACY_SPEC = GraphSpec(CUTOFF)  # the shipped models' graph: one cutoff, linear features


def _build(history, walls, t=0.2, backend="kdtree", types=None, spec=LEGACY_SPEC):
    if types is None:
        types = torch.arange(history.shape[1]) % 2
    return build_graph(history, types, walls, t, spec, STATS, FRAME_DT, backend=backend)


def test_build_graph_layout_and_values():
    history = _history()
    n = history.shape[1]
    wall = _drum_wall(Rotation(axis=(0.0, 1.0, 0.0), rpm=20.0))
    graph = _build(history, [wall])
    nodes = wall_nodes(history[-1], [wall], 0.2, CUTOFF)
    n_edges, w = radius_graph(history[-1], CUTOFF).shape[1], len(nodes)
    assert graph.n_particles == n and graph.n_wall_nodes == w > 0
    assert graph.particle_features.shape == (n, 20) and graph.wall_features.shape == (w, 10)
    assert graph.edge_index.shape == (2, n_edges + w) and graph.types.dtype == torch.long
    assert graph.edge_features.shape == (n_edges + w, 4)
    with pytest.raises(ValueError, match="0-based"):
        _build(history, [], types=torch.full((n,), -1))
    mean, std = (torch.tensor(STATS["velocity"][k], dtype=torch.float64) for k in ("mean", "std"))
    newest = history[-1] - history[-2]
    torch.testing.assert_close(graph.particle_features[:, 16:19], (newest - mean) / std)
    torch.testing.assert_close(graph.particle_features[:, 19], newest.norm(dim=1) / std.norm())
    # Particle edges first, all between particles, weight 1; then wall node N + w -> particle.
    particle_edges, wall_edges = graph.edge_index[:, :n_edges], graph.edge_index[:, n_edges:]
    assert (particle_edges < n).all()
    assert torch.equal(wall_edges[0], n + torch.arange(w))
    assert torch.equal(wall_edges[1], nodes.particle_index)
    assert (graph.edge_weight[:n_edges] == 1).all()
    torch.testing.assert_close(graph.edge_weight[n_edges:], nodes.weight)
    # d = x_receiver - x_sender: wall edges point from the wall to the particle.
    d = graph.edge_features[n_edges:, :3] * CUTOFF
    torch.testing.assert_close(d, history[-1][nodes.particle_index] - nodes.position)
    assert (graph.edge_features[:, 3] <= 1.0).all()
    # Wall features: n, -n, velocity in m/frame over std (no mean shift), magnitude.
    torch.testing.assert_close(graph.wall_features[:, 3:6], -graph.wall_features[:, :3])
    velocity = nodes.velocity * FRAME_DT
    torch.testing.assert_close(graph.wall_features[:, 6:9], velocity / std)
    torch.testing.assert_close(graph.wall_features[:, 9], velocity.norm(dim=1) / std.norm())


def test_build_graph_is_invariant_to_translating_particles_and_walls():
    history = _history(seed=6)
    shift = torch.tensor([0.37, -1.2, 2.5], dtype=torch.float64)
    mesh = drum()
    gate = make_gate((0.0, 0.0, -0.045), 0.03, open_at=1.0)

    def walls(offset):
        return [
            Wall("drum", np.asarray(mesh.vertices) + offset, np.asarray(mesh.faces), Static()),
            Wall("gate", gate.vertices + offset, gate.faces, removed_at=1.0),
        ]

    here, there = _build(history, walls(0.0)), _build(history + shift, walls(shift.numpy()))
    assert here.n_wall_nodes > 0
    assert torch.equal(here.edge_index, there.edge_index)
    for name in ("particle_features", "wall_features", "edge_features", "edge_weight"):
        torch.testing.assert_close(getattr(there, name), getattr(here, name), atol=1e-6, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_graph_equals_cpu_graph():
    history = _history(n=400, seed=7)
    walls = [_drum_wall(Rotation(axis=(0.0, 1.0, 0.0), rpm=20.0))]
    cpu, gpu = _build(history, walls), _build(history.cuda(), walls, backend="auto")
    assert gpu.edge_index.is_cuda
    assert torch.equal(gpu.edge_index.cpu(), cpu.edge_index)
    for name in ("particle_features", "wall_features", "edge_features", "edge_weight"):
        torch.testing.assert_close(getattr(gpu, name).cpu(), getattr(cpu, name))
    x = _cloud(8, dense=True).cuda()
    assert torch.equal(radius_graph(x, 0.1).cpu(), radius_graph(x.cpu(), 0.1, backend="kdtree"))


# --- today's recipe: merged wall nodes, contact features ---------------------------------------


def _points_in_cone(n: int = 150, seed: int = 9) -> tuple[Wall, torch.Tensor]:
    """A conical hopper of long thin triangles and points near its wall and outlet."""
    mesh = hopper(HopperSpec(segments=48))
    rng = np.random.default_rng(seed)
    points = rng.uniform([-0.03, -0.03, 0.0005], [0.03, 0.03, 0.04], (n, 3))
    return Wall("hopper", np.asarray(mesh.vertices), np.asarray(mesh.faces)), torch.from_numpy(
        points
    )


def test_merged_wall_nodes_keep_the_exact_closest_points_once_each():
    wall, points = _points_in_cone()
    every = wall_nodes(points, [wall], 0.0, CUTOFF)
    merged = wall_nodes(points, [wall], 0.0, CUTOFF, merge=True)
    assert len(merged) < 0.5 * len(every)  # the edges and vertices of neighbouring triangles
    away = points[every.particle_index] - every.position
    distance = away.norm(dim=1)
    # Face contacts: the particle lies along the triangle's normal (a tighter test than the
    # code's, so that round-off cannot decide).
    face = torch.linalg.cross(away, every.normal, dim=1).norm(dim=1) <= 1e-8 * distance
    for particle in every.particle_index.unique().tolist():
        mine, kept = every.particle_index == particle, merged.position[merged.particle_index ==
                                                                       particle]  # fmt: skip
        # Each kept node is exactly one of the original closest points, once.
        exact = (kept[:, None] == every.position[mine][None]).all(dim=2)
        assert exact.any(dim=1).all()
        assert len(torch.unique(torch.round(kept / 1e-9), dim=0)) == len(kept)
        # The nearest point and every face contact are among them (a shared edge's point seen
        # through two triangles differs by round-off: one of the two is kept).
        wanted = every.position[mine & (face | (distance == distance[mine].min()))]
        assert (torch.cdist(wanted, kept) < 1e-12).any(dim=1).all()
    assert torch.equal(merged.particle_index, merged.particle_index.sort().values)
    present = merged.particle_index.unique()
    torch.testing.assert_close(torch.bincount(merged.particle_index, merged.weight)[present],
                               torch.ones(len(present), dtype=torch.float64))  # fmt: skip
    # Normals are unit vectors turned towards their particle.
    away = points[merged.particle_index] - merged.position
    assert (torch.linalg.vecdot(merged.normal, away) >= 0).all()
    torch.testing.assert_close(merged.normal.norm(dim=1), torch.ones(len(merged)).double())


def test_contact_features_near_a_wall_and_between_particles():
    spec = GraphSpec(0.006, 0.008, radius=0.002, contact_features=True, merge_wall_nodes=True)
    plate = make_gate((0.0, 0.0, 0.0), 0.05, open_at=1.0)
    # Two particles touching each other, the first resting on the plate (centre one radius up).
    s = 0.004 / math.sqrt(2.0)  # both on the plate's diagonal, an edge of both its triangles
    x = torch.tensor([[0.0, 0.0, 0.002], [s, s, 0.002], [0.02, 0.02, 0.02]]).double()
    graph = _build(torch.stack([x, x]), [plate], t=0.5, spec=spec)
    assert graph.particle_features.shape == (3, 8) and graph.edge_features.shape[1] == 8
    n_edges = graph.edge_index.shape[1] - graph.n_wall_nodes
    assert n_edges == 2 and graph.n_wall_nodes == 2
    # r / |d| reads 1/2 at a particle contact, 1 on the wall; r d / |d|^2 points along d.
    torch.testing.assert_close(graph.edge_features[:n_edges, 7], torch.full((2,), 0.5).double(),
                               rtol=2e-3, atol=0)  # fmt: skip
    torch.testing.assert_close(graph.edge_features[n_edges:, 7], torch.ones(2).double(),
                               rtol=2e-3, atol=0)  # fmt: skip
    torch.testing.assert_close(
        graph.edge_features[n_edges:, 4:7],
        torch.tensor([[0.0, 0.0, 1.0]] * 2).double(),
        rtol=2e-3,
        atol=0,
    )
    # Nearest wall: r / s = 1 and the direction up for the two resting particles, zeros for the
    # one far from any wall.
    nearest = graph.particle_features[:, 4:]
    torch.testing.assert_close(nearest[:2], torch.tensor([[1.0, 0, 0, 1]] * 2).double(),
                               rtol=2e-3, atol=1e-12)  # fmt: skip
    assert torch.equal(nearest[2], torch.zeros(4).double())


@pytest.mark.parametrize("contact", [False, True])
def test_contact_features_are_invariant_to_translation(contact):
    spec = GraphSpec(0.008, 0.01, radius=0.002, contact_features=contact, merge_wall_nodes=True)
    wall, points = _points_in_cone()
    history = torch.stack([points, points + 1e-4])
    shift = torch.tensor([0.37, -1.2, 2.5], dtype=torch.float64)
    moved = Wall(wall.name, wall.vertices + shift.numpy(), wall.faces)
    here = _build(history, [wall], spec=spec)
    there = _build(history + shift, [moved], spec=spec)
    assert here.n_wall_nodes > 0 and torch.equal(here.edge_index, there.edge_index)
    for name in ("particle_features", "wall_features", "edge_features", "edge_weight"):
        torch.testing.assert_close(getattr(there, name), getattr(here, name), atol=1e-6, rtol=0)
