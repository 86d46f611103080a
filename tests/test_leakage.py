"""Leakage: wall crossings of particle paths and particles outside a closed container."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from bgnn_sim.analysis.leakage import (
    leakage_report,
    outside_count,
    segment_crossings,
    wall_crossings,
)
from bgnn_sim.geometry.generators import drum
from bgnn_sim.geometry.wall import Rotation, Wall, make_gate
from bgnn_sim.io.hdf5 import read_trajectory
from bgnn_sim.trajectory import Trajectory
from tests.helpers import liggghts_hopper_run

TRIANGLE = np.array([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])


def scene(positions, walls, active=None, dt=1e-3) -> Trajectory:
    """A trajectory of hand-placed particles: positions [T, N, 3]."""
    positions = np.asarray(positions, dtype=float)
    n_frames, n_particles = positions.shape[:2]
    active = np.ones((n_frames, n_particles), bool) if active is None else active
    return Trajectory(
        time=np.arange(n_frames) * dt,
        positions=np.where(active[..., None], positions, 0.0),
        active=active,
        ids=np.arange(1, n_particles + 1),
        types=np.ones(n_particles, np.int32),
        radius=np.full(n_particles, 0.002),
        walls=walls,
    )


def plane_wall(z=0.0, half=1.0, **kwargs) -> Wall:
    corners = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], float)
    vertices = corners * [half, half, 0] + [0, 0, z]
    return Wall("plane", vertices, np.array([[0, 1, 2], [0, 2, 3]]), **kwargs)


def drum_wall(motion) -> Wall:
    mesh = drum()  # radius 0.05 (64-gon, inscribed radius 0.0499), length 0.04, axis y
    return Wall("drum", np.asarray(mesh.vertices), np.asarray(mesh.faces), motion)


def rigidly_moved(wall: Wall, body_points, time) -> np.ndarray:
    """[T, N, 3] world positions of points at rest in the wall's body frame."""
    poses = [wall.motion.transform(t) for t in time]
    return np.stack([body_points @ pose[:3, :3].T + pose[:3, 3] for pose in poses])


def winding_number(mesh: trimesh.Trimesh, points: np.ndarray) -> np.ndarray:
    """[P] generalized winding number (solid angles, Van Oosterom & Strackee): ~1 in, ~0 out."""
    corners = mesh.triangles[None] - points[:, None, None]  # [P, F, 3, 3]
    a, b, c = corners[:, :, 0], corners[:, :, 1], corners[:, :, 2]
    la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
    dot = lambda u, v: np.einsum("pfi,pfi->pf", u, v)  # noqa: E731
    denominator = la * lb * lc + dot(a, b) * lc + dot(b, c) * la + dot(c, a) * lb
    return 2 * np.arctan2(dot(a, np.cross(b, c)), denominator).sum(axis=1) / (4 * np.pi)


@pytest.mark.parametrize(
    ("start", "end", "crosses"),
    [
        ((0.2, 0.2, -1), (0.2, 0.2, 1), True),  # straight through the face
        ((0.2, 0.2, 1), (0.3, 0.1, -0.5), True),  # obliquely, the other way
        ((0.2, 0.2, 0.5), (0.9, 0.05, 0.5), False),  # parallel, above the plane
        ((0.2, 0.2, -1), (0.2, 0.2, -1e-6), False),  # stops short of the face
        ((0.2, 0.2, -1), (0.2, 0.2, 0.0), True),  # ends on the face: touching counts
        ((0.2, 0.2, 0.0), (0.2, 0.2, 1.0), True),  # starts on the face
        ((0.5, 0.0, -1), (0.5, 0.0, 1), True),  # through an edge (closed triangle)
        ((0.5, -1e-6, -1), (0.5, -1e-6, 1), False),  # just past the edge
        ((0.0, 0.0, -1), (0.0, 0.0, 1), True),  # through a vertex
        ((-0.5, 0.2, 0.0), (0.5, 0.2, 0.0), False),  # grazing: slides in the plane across it
        ((2.0, 2.0, -1), (2.0, 2.0, 1), False),  # through the plane, beside the triangle
        ((0.2, 0.2, 0.3), (0.2, 0.2, 0.3), False),  # zero length
    ],
)
def test_segment_against_one_triangle(start, end, crosses):
    result = segment_crossings(np.array([start]), np.array([end]), TRIANGLE)
    assert result.dtype == bool and result.tolist() == [crosses]


@pytest.mark.slow
def test_segments_agree_with_trimesh_rays():
    """Generic segments of very different lengths (several broad-phase batches) against a
    closed mesh, checked with trimesh's independent ray-triangle intersection."""
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=0.05)
    rng = np.random.default_rng(3)
    starts = rng.uniform(-0.07, 0.07, size=(3000, 3))
    lengths = 10.0 ** rng.uniform(-5, -0.5, size=(3000, 1))
    directions = rng.normal(size=(3000, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    ends = starts + lengths * directions
    ours = segment_crossings(starts, ends, mesh.triangles)
    locations, ray_index, _ = mesh.ray.intersects_location(starts, directions)
    reach = np.linalg.norm(locations - starts[ray_index], axis=1)
    expected = np.zeros(len(starts), bool)
    expected[ray_index[reach <= lengths[ray_index, 0]]] = True
    assert 100 < expected.sum() < len(starts) - 100  # both kinds are well represented
    np.testing.assert_array_equal(ours, expected)


def test_particle_pushed_through_a_static_plane_counts_once_at_its_step():
    # z by frame: particle 0 goes down through the plane between frames 2 and 3, particle 1
    # slides above it, particle 2 ends below it but was inactive at frame 3 (where its zero
    # position lies on the plane), so neither of its steps counts.
    z = np.array(
        [[0.3, 0.3, 0.5], [0.2, 0.3, 0.5], [0.1, 0.3, 0.5], [-0.1, 0.3, 0], [-0.2, 0.3, -0.5]]
    )
    xy = np.array([[0.1, 0.1], [0.5, -0.5], [-0.2, 0.2]])
    positions = np.stack([np.column_stack([xy + [0, 0.1 * t], z[t]]) for t in range(5)])
    active = np.ones((5, 3), bool)
    active[3, 2] = False
    trajectory = scene(positions, [plane_wall()], active)
    np.testing.assert_array_equal(wall_crossings(trajectory), [0, 0, 1, 0])
    report = leakage_report(trajectory)
    np.testing.assert_array_equal(report.crossings, [0, 0, 0, 1, 0])
    assert report.outside is None and report.total_crossings == 1 and not report.clean


def test_gate_removed_between_frames_lets_particles_through():
    # z by frame: particle 0 falls through the gate plane between frames 0 and 1, particle 1
    # between frames 2 and 3, after the gate was removed.
    z = np.array([[0.01, 0.01], [-0.01, 0.01], [-0.01, 0.01], [-0.01, -0.01], [-0.01, -0.01]])
    positions = np.stack([np.column_stack([[0.001, 0.0], [0.0, 0.0], z_t]) for z_t in z])
    gate = make_gate((0.0, 0.0, 0.0), 0.02, open_at=2.5e-3)  # frames are 1 ms apart
    np.testing.assert_array_equal(wall_crossings(scene(positions, [gate])), [1, 0, 0, 0])
    kept = make_gate((0.0, 0.0, 0.0), 0.02, open_at=np.inf)
    np.testing.assert_array_equal(wall_crossings(scene(positions, [kept])), [1, 0, 1, 0])


def test_particle_at_rest_in_a_rotating_drum_never_crosses_or_leaves():
    # Off-centre axis: the drum swings far, so using its rest pose for the particles (or one
    # pose for both ends of a step) would put them through its wall.
    wall = drum_wall(Rotation(axis=(0, 1, 0), origin=(0.03, 0, 0), rpm=600))  # 36 deg a frame
    body = np.array([[0.048, 0.0, 0.0], [-0.048, 0.019, 0.0], [0.0, 0.0, -0.048]])
    trajectory = scene(rigidly_moved(wall, body, np.arange(40) * 0.01), [wall], dt=0.01)
    assert np.abs(trajectory.positions[1] - trajectory.positions[0]).max() > 0.02  # it moves
    report = leakage_report(trajectory)
    assert report.total_crossings == 0
    np.testing.assert_array_equal(report.outside, np.zeros(40))
    assert report.clean


def test_particle_moved_out_of_a_rotating_drum_crosses_and_is_outside():
    wall = drum_wall(Rotation(axis=(0, 1, 0), origin=(0.03, 0, 0), rpm=60))
    time = np.arange(6) * 0.01
    inside, beyond = [0.048, 0.0, 0.0], [0.052, 0.0, 0.0]
    body = [[inside, inside]] * 3 + [[beyond, inside]] * 3  # particle 0 leaves at step 2 -> 3
    positions = np.stack(
        [rigidly_moved(wall, np.array(b), [t])[0] for b, t in zip(body, time, strict=True)]
    )
    report = leakage_report(scene(positions, [wall], dt=0.01))
    np.testing.assert_array_equal(report.crossings, [0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(report.outside, [0, 0, 0, 1, 1, 1])
    assert report.peak_outside == 1


def spiky_ball(rng) -> trimesh.Trimesh:
    """A closed star-shaped mesh with sharp convex and concave edges and saddle vertices."""
    ball = trimesh.creation.icosphere(subdivisions=1, radius=0.05)
    scale = rng.uniform(0.3, 1.7, size=(len(ball.vertices), 1))
    return trimesh.Trimesh(ball.vertices * scale, ball.faces, process=False)


def test_outside_count_matches_the_winding_number():
    rng = np.random.default_rng(0)
    mesh = spiky_ball(rng)
    wall = Wall("spiky", np.asarray(mesh.vertices), np.asarray(mesh.faces))
    # Near a vertex the pseudonormal decides (this seed has a point that equal weights of the
    # faces at the vertex would put on the wrong side), near a face the face normal.
    corners = np.repeat(mesh.vertices, 200, axis=0)
    corners = corners + rng.normal(scale=1e-3, size=corners.shape)
    surface = trimesh.sample.sample_surface(mesh, len(corners), seed=0)[0]
    surface = surface + rng.normal(scale=1e-5, size=surface.shape)
    uniform = rng.uniform(-0.09, 0.09, size=corners.shape)
    positions = np.stack([corners, surface, uniform])
    active = rng.uniform(size=positions.shape[:2]) < 0.9
    counts = outside_count(scene(positions, [wall], active))
    outside = np.stack([winding_number(mesh, p) < 0.5 for p in positions]) & active
    assert outside.sum(axis=1).min() > 1000
    np.testing.assert_array_equal(counts, outside.sum(axis=1))


def test_walls_combine_by_the_even_odd_rule():
    box = trimesh.creation.box((0.02, 0.02, 0.02))
    obstacle = Wall("obstacle", np.asarray(box.vertices), np.asarray(box.faces))
    walls = [drum_wall(Rotation(axis=(0, 1, 0))), obstacle]
    positions = [[[0.03, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.1, 0.0]]] * 2
    # in the drum only: inside; in the obstacle too: outside; beyond the drum's end: outside.
    np.testing.assert_array_equal(outside_count(scene(positions, walls)), [2, 2])
    assert outside_count(scene(positions, [plane_wall()])) is None  # not closed


def test_liggghts_hopper_has_no_wall_crossings():
    run = liggghts_hopper_run()  # the hopper mesh and the plug removed at 0.3 s
    assert run.time[0] < 0.3 < run.time[-1] and len(run.walls) == 2
    report = leakage_report(run)
    assert report.outside is None  # an open hopper
    np.testing.assert_array_equal(report.crossings, np.zeros(run.n_frames))
    # The detector sees these paths: had the plug stayed, the discharge would cross it.
    hopper, plug = run.walls
    run.walls = [hopper, make_gate((0, 0, 0), 0.03, open_at=np.inf)]
    assert wall_crossings(run)[run.time[1:] > 0.3].sum() > 20


def test_real_drum_has_no_leakage(tiny_drum_dataset):
    run = read_trajectory(tiny_drum_dataset / "trajectories" / "drum_000.h5")
    assert isinstance(run.walls[0].motion, Rotation) and run.walls[0].motion.rpm > 0
    report = leakage_report(run)
    np.testing.assert_array_equal(report.crossings, np.zeros(run.n_frames))
    np.testing.assert_array_equal(report.outside, np.zeros(run.n_frames))
    # Shifted sideways by more than the drum's radius halfway through, every particle leaves.
    half = run.n_frames // 2
    run.positions[half:] += np.where(run.active[half:, :, None], [0.06, 0.0, 0.0], 0.0)
    report = leakage_report(run)
    assert report.crossings[half] == (run.active[half - 1] & run.active[half]).sum() > 0
    np.testing.assert_array_equal(report.outside[half:], run.active[half:].sum(axis=1))
