"""The wall guard: particles stay on their side of static, removable and turning walls."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from bgnn_sim.analysis.compare import compare
from bgnn_sim.analysis.summary import analyze
from bgnn_sim.engine import guard as guard_module
from bgnn_sim.engine.guard import Clearance, WallGuard, guard_frame
from bgnn_sim.engine.rollout import rollout_to_file, step, successive_states, window_steps
from bgnn_sim.engine.state import ParticleState, Scene
from bgnn_sim.geometry.generators import HopperSpec, drum, hopper
from bgnn_sim.geometry.proximity import closest_point_on_triangle_pairs, closest_point_on_triangles
from bgnn_sim.geometry.wall import Rotation, Wall, make_gate, present_triangles
from bgnn_sim.graph.walls import wall_contacts
from bgnn_sim.io.hdf5 import TrajectoryFile, read_trajectory, write_trajectory

GAP = 1e-3
DT = 1e-3


def floor(half: float = 0.05) -> Wall:
    """A static square of two triangles in the plane z = 0."""
    corners = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], float) * half
    return Wall("floor", corners, np.array([[0, 1, 2], [0, 2, 3]]))


def mesh_wall(mesh, name: str, motion=None) -> Wall:
    wall = Wall(name, np.asarray(mesh.vertices, float), np.asarray(mesh.faces, np.int64))
    if motion is not None:
        wall.motion = motion
    return wall


def guard(walls, x0, x1, t0=0.0, gap=GAP):
    x0, x1 = (torch.from_numpy(np.array(x, dtype=np.float64)) for x in (x0, x1))
    return guard_frame(walls, x0, x1, t0, DT, torch.full((len(x0),), gap, dtype=torch.float64))


def distance_to(walls, points, t) -> np.ndarray:
    """[n] distance from points [n, 3] to the walls present at t."""
    triangles = torch.from_numpy(present_triangles(walls, t))
    found = closest_point_on_triangles(torch.as_tensor(points), triangles, 1.0)
    out = torch.full((len(points),), math.inf, dtype=torch.float64)
    return out.scatter_reduce(0, found.point_index, found.distance, "amin").numpy()


def test_a_particle_shot_through_a_static_wall_comes_back_at_the_gap():
    x0 = [[0.010, 0.020, 0.003], [0.0, 0.0, 0.0002], [0.03, 0.0, 0.003]]
    x1 = [[0.012, 0.021, -0.002], [0.001, 0.0, 0.0005], [0.031, 0.0, 0.0004]]
    out = guard([floor()], x0, x1)
    assert out.corrected == 3
    x1_ = out.positions.numpy()
    v = (out.positions - out.previous).numpy()
    # Crossed: back along the normal to the gap, its motion along the wall kept, none into it.
    np.testing.assert_allclose(x1_[0], [0.012, 0.021, GAP], atol=1e-15)
    np.testing.assert_allclose(v[0], [0.002, 0.001, 0.0], atol=1e-15)
    # Too close but leaving: pushed out to the gap, its velocity (away from the wall) kept.
    np.testing.assert_allclose(x1_[1], [0.001, 0.0, GAP], atol=1e-15)
    np.testing.assert_allclose(v[1], [0.001, 0.0, 0.0003], atol=1e-15)
    # Too close and approaching: pushed out, the approach removed.
    np.testing.assert_allclose(x1_[2], [0.031, 0.0, GAP], atol=1e-15)
    np.testing.assert_allclose(v[2], [0.001, 0.0, 0.0], atol=1e-15)


def test_a_particle_shot_into_a_corner_is_put_back_in_it():
    """Put back on its side of the first wall it crossed, it is still through the second: the
    next pass catches it."""
    side = Wall("side", np.array([[0, -1, 0], [0, 1, 0], [0, 1, 1], [0, -1, 1]], float) * 0.05,
                np.array([[0, 1, 2], [0, 2, 3]]))  # fmt: skip
    out = guard([floor(), side], [[0.003, 0.0, 0.003]], [[-0.002, 0.0, -0.001]])
    assert out.corrected == 1
    np.testing.assert_allclose(out.positions[0].numpy(), [GAP, 0.0, GAP], atol=1e-15)
    np.testing.assert_allclose((out.positions - out.previous)[0].numpy(), 0.0, atol=1e-15)


def test_a_particle_below_the_wall_is_put_back_below():
    """The side it came from, not a side fixed by the mesh's winding."""
    out = guard([floor()], [[0.0, 0.0, -0.004]], [[0.0, 0.0, 0.003]])
    assert out.corrected == 1
    np.testing.assert_allclose(out.positions[0].numpy(), [0.0, 0.0, -GAP], atol=1e-15)
    np.testing.assert_allclose((out.positions - out.previous)[0].numpy(), 0.0, atol=1e-15)


def test_a_particle_shot_out_of_a_hopper_cone_stays_inside():
    spec = HopperSpec()
    walls = [mesh_wall(hopper(spec), "hopper")]
    z = 0.02
    wall_radius = spec.outlet / 2 + z * math.tan(math.radians(spec.angle))
    angle = math.pi / spec.segments  # the middle of a facet
    radial = np.array([math.cos(angle), math.sin(angle), 0.0])
    x0 = radial * (wall_radius - 0.003) + [0, 0, z]
    x1 = radial * (wall_radius + 0.002) + [0, 0, z - 0.001]
    out = guard(walls, [x0], [x1])
    assert out.corrected == 1
    moved = out.positions[0].numpy()
    inscribed = (spec.outlet / 2 + moved[2] * math.tan(math.radians(spec.angle))) * math.cos(angle)
    assert np.hypot(*moved[:2]) < inscribed  # inside the cone
    assert distance_to(walls, out.positions, DT)[0] == pytest.approx(GAP, rel=1e-9)
    triangles = torch.from_numpy(present_triangles(walls, DT))
    contact = closest_point_on_triangles(out.positions, triangles, 2 * GAP)
    inward = (out.positions[0] - contact.closest[0]) / contact.distance[0]
    velocity = out.positions[0] - out.previous[0]
    assert float(velocity @ inward) >= -1e-15  # nothing left into the wall


def test_a_gate_holds_until_it_is_removed():
    walls = [make_gate((0, 0, 0), 0.03, open_at=0.3)]
    x0, x1 = [[0.001, 0.0, 0.002]], [[0.001, 0.0, -0.003]]
    closed = guard(walls, x0, x1, t0=0.2)
    assert closed.corrected == 1
    np.testing.assert_allclose(closed.positions[0].numpy(), [0.001, 0.0, GAP], atol=1e-15)
    for t0 in (0.299, 0.3):  # a frame ending at the opening, or after it: the gate is gone
        opened = guard(walls, x0, x1, t0=t0)
        assert opened.corrected == 0
        np.testing.assert_array_equal(opened.positions.numpy(), x1)


class Coasting:
    """A backend with no acceleration: particles keep their velocity."""

    history = 1

    def acceleration(self, scene, state):
        return torch.zeros((int(state.active.sum()), 3), dtype=state.history.dtype)


def falling_state(x0, velocity, t0: float) -> ParticleState:
    """Particles at x0 [n, 3] that moved by `velocity` [n, 3] (m per frame) to get there."""
    x0 = torch.tensor(x0, dtype=torch.float64)
    history = torch.stack([x0 - torch.tensor(velocity, dtype=torch.float64), x0])
    n = len(x0)
    return ParticleState(torch.arange(n), torch.ones(n, dtype=torch.long),
                         torch.full((n,), 2 * GAP, dtype=torch.float64), history,
                         torch.ones(n, dtype=torch.bool), t0)  # fmt: skip


def test_the_engine_guards_the_active_particles_against_the_gate():
    scene = Scene([make_gate((0, 0, 0), 0.03, open_at=0.3)], frame_dt=DT)
    state = falling_state([[0.0, 0.0, 0.002], [0.01, 0.0, 0.0002]], [[0, 0, -0.005]] * 2, 0.2)
    state.active[1] = False  # gone into a sink: not guarded, though it lies within the gap
    guarded = step(Coasting(), scene, state, WallGuard())
    assert guarded.guard_corrections == 1
    # Default gap: half of each particle's radius; the velocity into the gate is gone.
    np.testing.assert_allclose(guarded.positions[0].numpy(), [0.0, 0.0, GAP], atol=1e-15)
    np.testing.assert_allclose(guarded.velocity[0].numpy(), 0.0, atol=1e-15)
    assert torch.equal(guarded.history[:, 1], state.history[[-1, -1], 1])
    raw = step(Coasting(), scene, state)
    assert raw.guard_corrections is None and raw.positions[0, 2] == pytest.approx(-0.003)
    opened = step(Coasting(), scene, falling_state([[0, 0, 0.002]], [[0, 0, -0.005]], 0.3),
                  WallGuard())  # fmt: skip
    assert opened.guard_corrections == 0 and opened.positions[0, 2] == pytest.approx(-0.003)


def drum_at(wall: Wall, t: float):
    """The drum's mesh posed at time t (trimesh)."""
    return wall.to_trimesh(t)


def test_a_particle_pushed_out_of_a_turning_drum_stays_inside():
    motion = Rotation((0, 1, 0), rpm=30.0)
    wall = mesh_wall(drum(0.05, 0.04), "drum", motion)
    t0, t1 = 0.1, 0.1 + DT
    # Near the bottom of the drum, moving outward through the wall while the wall turns.
    direction = np.array([math.sin(0.3), 0.0, -math.cos(0.3)])
    x0, x1 = 0.047 * direction, 0.053 * direction + [0.0, 0.001, 0.0]
    out = guard([wall], [x0], [x1], t0=t0)
    assert out.corrected == 1
    assert drum_at(wall, t1).contains(out.positions.numpy()).all()  # inside, on its side
    assert distance_to([wall], out.positions, t1)[0] == pytest.approx(GAP, rel=1e-9)
    # Nothing left into the wall relative to the wall's own motion at the contact; the motion
    # along the axis (along the wall) kept.
    triangles = torch.from_numpy(present_triangles([wall], t1))
    contact = closest_point_on_triangles(out.positions, triangles, 2 * GAP)
    nearest = int(torch.argmin(contact.distance))
    foot = contact.closest[nearest]
    inward = ((out.positions[0] - foot) / contact.distance[nearest]).numpy()
    wall_velocity = motion.velocity(foot[None].numpy(), t1)[0] * DT
    velocity = (out.positions - out.previous)[0].numpy()
    assert (velocity - wall_velocity) @ inward == pytest.approx(0.0, abs=1e-15)
    assert velocity[1] == pytest.approx(0.001)


def cap_vertex_direction(wall: Wall, t: float) -> np.ndarray:
    """Unit direction (in the x-z plane) of a vertex of the drum's polygon at time t."""
    vertex = wall.vertices_at(t)[np.argmax(np.abs(wall.vertices_at(t)[:, 0]))]
    return np.array([vertex[0], 0.0, vertex[2]]) / np.hypot(vertex[0], vertex[2])


def test_a_particle_carried_along_by_a_turning_wall_is_not_a_crossing():
    """Judged in the wall's frame, a particle that turned with the drum did not move, although
    its start lies outside the drum as posed at the end of the frame."""
    motion = Rotation((0, 1, 0), rpm=3000.0)  # 18 degrees per frame
    wall = mesh_wall(drum(0.05, 0.04, segments=8), "drum", motion)
    t0, t1 = 0.01, 0.01 + DT
    x0 = 0.0485 * cap_vertex_direction(wall, t0)  # in the corner at a vertex
    relative = motion.transform(t1) @ np.linalg.inv(motion.transform(t0))
    x1 = relative[:3, :3] @ x0 + relative[:3, 3]
    assert not drum_at(wall, t1).contains([x0]).any()  # a naive test would call it a crossing
    assert guard([wall], [x0], [x1], t0=t0).corrected == 0


def test_a_turning_wall_that_sweeps_over_a_resting_particle_pushes_it_inside():
    motion = Rotation((0, 1, 0), rpm=600.0)  # 3.6 degrees per frame
    wall = mesh_wall(drum(0.05, 0.04, segments=8), "drum", motion)
    t0, t1 = 0.01, 0.01 + DT
    x = 0.049 * cap_vertex_direction(wall, t0)  # in the corner at t0; the facet then sweeps in
    assert drum_at(wall, t0).contains([x]).all() and not drum_at(wall, t1).contains([x]).any()
    out = guard([wall], [x], [x], t0=t0)
    assert out.corrected == 1
    assert drum_at(wall, t1).contains(out.positions.numpy()).all()
    assert distance_to([wall], out.positions, t1)[0] == pytest.approx(GAP, rel=1e-9)


def test_particles_away_from_the_walls_are_left_bit_for_bit():
    spec = HopperSpec()
    walls = [mesh_wall(hopper(spec), "hopper"), make_gate((0, 0, 0), 0.03, open_at=1.0)]
    rng = np.random.default_rng(0)
    x0 = rng.uniform(-0.006, 0.006, (50, 3)) + [0, 0, 0.02]
    x1 = x0 + rng.normal(scale=3e-4, size=x0.shape)
    out = guard(walls, x0, x1)
    assert out.corrected == 0
    np.testing.assert_array_equal(out.positions.numpy(), x1)
    np.testing.assert_array_equal(out.previous.numpy(), x0)
    # With one fast particle through the gate (searched on its own), the others still keep
    # every bit.
    x0[0], x1[0] = [0.0, 0.0, 0.004], [0.0, 0.0, -0.002]
    out = guard(walls, x0, x1)
    assert out.corrected == 1
    np.testing.assert_allclose(out.positions[0].numpy(), [0.0, 0.0, GAP], atol=1e-15)
    np.testing.assert_array_equal(out.positions.numpy()[1:], x1[1:])
    np.testing.assert_array_equal(out.previous.numpy()[1:], x0[1:])


class RainWindow:
    """A windowed backend (as LaM-SLidE): 3 frames of constant velocity per call."""

    history = 1

    def window(self, scene, state):
        velocity = state.velocity
        return torch.stack([state.positions + k * velocity for k in (1, 2, 3)])


@pytest.mark.parametrize(
    "backend, expected",
    # Frame 0 is the history. Per frame: particle 1 reaches the gap at frame 2, particle 0 at
    # frame 3, and both then rest there (their velocity into the floor removed). A window's
    # frames come from its start: particle 1 comes through the floor again at frame 3.
    [(Coasting(), [0, 0, 1, 1, 0, 0, 0]), (RainWindow(), [0, 0, 1, 2, 0, 0, 0])],
    ids=["per-frame", "windowed"],
)
def test_rollouts_record_the_guards_corrections(tmp_path, backend, expected):
    scene = Scene([floor()], frame_dt=DT)
    x0 = [[0.0, 0.0, 0.006], [0.01, 0.0, 0.0035], [0.02, 0.02, 0.03]]
    state = falling_state(x0, [[0.0, 0.0, -0.002]] * 3, 0.0)
    rollout_to_file(backend, scene, state, 6, tmp_path / "guarded.h5")
    with TrajectoryFile(tmp_path / "guarded.h5") as f:
        counts, positions = f.guard_corrections, f.read().positions
        assert f.attrs["wall_guard"] == {"gap_radii": 0.5}
    np.testing.assert_array_equal(counts, expected)
    assert positions[:, :2, 2].min() == pytest.approx(GAP)
    trajectory = read_trajectory(tmp_path / "guarded.h5")
    np.testing.assert_array_equal(trajectory.guard_corrections, counts)
    np.testing.assert_array_equal(trajectory.read(2, 5).guard_corrections, counts[2:5])
    assert analyze(trajectory).scalars()["guard_corrections"] == sum(expected)
    write_trajectory(tmp_path / "copy.h5", trajectory)
    np.testing.assert_array_equal(read_trajectory(tmp_path / "copy.h5").guard_corrections, counts)

    rollout_to_file(backend, scene, state, 6, tmp_path / "raw.h5", wall_guard=None)
    with TrajectoryFile(tmp_path / "raw.h5") as f:
        assert f.guard_corrections is None and f.attrs["wall_guard"] is None
        assert f.read().positions[:, :2, 2].min() < 0  # the raw model goes through the floor
    raw = read_trajectory(tmp_path / "raw.h5")
    assert "guard_corrections" not in analyze(raw).scalars()
    assert compare(trajectory, raw, distance_frames=1).metrics["guard_corrections"] == sum(expected)
    assert "guard_corrections" not in compare(raw, trajectory, distance_frames=1).metrics


def test_the_gap_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        WallGuard(gap=0.0)


@pytest.mark.parametrize("scene", ["turning drum", "drum at 30 rpm", "hopper as its gate opens"])
def test_a_backends_clearance_skips_particles_without_changing_the_frame(scene, monkeypatch):
    """The particles found far from the walls at t0 are not searched again, those near a wall
    are tested against the triangles found near them at t0 (when the walls are the same and
    moved little), and the frame is bit for bit the one of a search over all (fast particles
    and a wall that moves included)."""
    searched, exact = [], []

    def counting(points, triangles, cutoff):
        searched.append(len(points))
        return closest_point_on_triangles(points, triangles, cutoff)

    def counting_pairs(points, triangles):
        exact.append(len(points))
        return closest_point_on_triangle_pairs(points, triangles)

    monkeypatch.setattr(guard_module, "closest_point_on_triangles", counting)
    monkeypatch.setattr(guard_module, "closest_point_on_triangle_pairs", counting_pairs)
    rng = np.random.default_rng(0)
    if "drum" in scene:
        rpm = 30.0 if "30" in scene else 600.0
        walls = [mesh_wall(drum(0.05, 0.04), "drum", Rotation((0, 1, 0), rpm=rpm))]
        x0 = rng.uniform(-0.035, 0.035, (400, 3)) * [1, 0.5, 1]
        x0 = np.concatenate([x0, 0.048 * rng.normal(size=(100, 3)) / [1, 3, 1]])  # near walls
    else:
        spec = HopperSpec()
        walls = [mesh_wall(hopper(spec), "hopper"), make_gate((0, 0, 0), spec.top, open_at=DT)]
        x0 = rng.uniform(-0.02, 0.02, (500, 3)) + [0, 0, 0.03]
    x1 = x0 + rng.normal(scale=4e-4, size=x0.shape)
    x1[:5] += rng.normal(scale=2e-2, size=(5, 3))  # a few thrown far, through walls
    x0, x1 = torch.from_numpy(x0), torch.from_numpy(x1)
    gap = torch.full((len(x0),), GAP, dtype=torch.float64)
    cutoff = 8e-3
    clearance = Clearance.of(wall_contacts(x0, walls, 0.0, cutoff), len(x0), cutoff, 0.0)
    assert 0 < int(clearance.far.sum()) < len(x0)
    full = guard_frame(walls, x0, x1, 0.0, DT, gap)
    searched_by_full = sum(searched)
    searched.clear()
    exact.clear()
    skipping = guard_frame(walls, x0, x1, 0.0, DT, gap, clearance)
    assert sum(searched) < 0.7 * searched_by_full  # the particles of the far interior skipped
    if scene == "drum at 30 rpm":  # only the few thrown far are searched
        assert 0 < sum(searched) <= 3 * 5
        # The known pairs too far apart at t0 to be within reach at t1 are not tested.
        assert sum(exact) < 0.7 * len(clearance.contacts.point_index)
    assert full.corrected > 0 and skipping.corrected == full.corrected
    assert torch.equal(skipping.positions, full.positions)
    assert torch.equal(skipping.previous, full.previous)


class JitteryWindow:
    """A windowed backend whose frames scatter particles (towards and through walls): 4 frames
    per call of constant velocity plus noise seeded by the window's time."""

    history = 1

    def window(self, scene, state):
        rng = np.random.default_rng(round(state.time / DT))
        jitter = torch.from_numpy(rng.normal(scale=6e-4, size=(4, *state.positions.shape)))
        steps = torch.arange(1, 5, dtype=torch.float64)[:, None, None]
        return state.positions + steps * state.velocity + jitter.cumsum(dim=0)


def test_a_windowed_backends_guard_lists_change_no_frame(monkeypatch):
    """A windowed backend searches no walls: the engine keeps wall-contact lists for its guard
    (rollout.guard_lists), which spare most of the guard's searches and give the same frames as
    its own search of all."""
    searched = []

    def counting(points, triangles, cutoff):
        searched.append(len(points))
        return closest_point_on_triangles(points, triangles, cutoff)

    monkeypatch.setattr(guard_module, "closest_point_on_triangles", counting)
    walls = [mesh_wall(drum(0.05, 0.04), "drum", Rotation((0, 1, 0), rpm=30.0))]
    scene = Scene(walls, frame_dt=DT)
    rng = np.random.default_rng(1)
    direction = rng.normal(size=(300, 3))
    x0 = direction / np.linalg.norm(direction, axis=1, keepdims=True) * [0.045, 0.018, 0.045]
    x0 *= rng.uniform(0.3, 1.0, size=(300, 1))  # from the axis to near the walls
    state = falling_state(x0, rng.normal(scale=3e-4, size=x0.shape), 0.0)
    frames = successive_states(JitteryWindow(), scene, state, WallGuard())
    listed = list(itertools.islice(frames, 24))
    searched_with_lists = sum(searched)
    unlisted, now = [], state
    for _ in range(6):
        unlisted += window_steps(JitteryWindow(), scene, now, WallGuard())
        now = unlisted[-1]
    assert searched_with_lists < 0.2 * (sum(searched) - searched_with_lists)
    assert sum(s.guard_corrections for s in listed) > 10
    for a, b in zip(listed, unlisted, strict=True):
        assert torch.equal(a.history, b.history) and a.guard_corrections == b.guard_corrections
