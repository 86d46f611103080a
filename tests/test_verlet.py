"""bgnn_sim.graph.verlet: a rollout's kept neighbour lists give the graph of a fresh search,
frame after frame, in a turning drum with particles leaving and in a hopper whose gate opens."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from bgnn_sim.geometry.generators import drum
from bgnn_sim.geometry.wall import Rotation, Static, Wall, make_gate
from bgnn_sim.graph.features import GraphSpec, build_graph
from bgnn_sim.graph.verlet import VerletLists
from bgnn_sim.graph.walls import wall_contacts

RADIUS = 0.002
SPEC = GraphSpec(cutoff=3 * RADIUS, wall_cutoff=4 * RADIUS, radius=RADIUS,
                 contact_features=True, merge_wall_nodes=True)  # fmt: skip
STATS = {"velocity": {"mean": [0.0, 0.0, -1e-5], "std": [1e-4, 1e-4, 2e-4]}}
FRAME_DT = 1e-3


def _walk(n: int, frames: int, start: np.ndarray, step: float, seed: int) -> torch.Tensor:
    """[frames, n, 3] random walks of `step` metres per frame from `start` [n, 3]."""
    rng = np.random.default_rng(seed)
    steps = step * rng.standard_normal((frames, n, 3))
    steps[0] = start
    return torch.from_numpy(np.cumsum(steps, axis=0))


def _assert_same_graphs(lists, positions, active_at, walls, frames):
    """Graphs built from the lists equal fresh graphs at every frame; returns how many times
    the particle pairs and the wall contacts were searched."""
    history = 5
    types = torch.zeros(positions.shape[1], dtype=torch.long)
    for frame in range(history, frames):
        time = frame * FRAME_DT
        active = active_at(frame)
        window = positions[frame - history : frame + 1, active]
        kept = lists.neighbours(positions[frame], active, walls, time)
        with_lists = build_graph(window, types[active], walls, time, SPEC, STATS, FRAME_DT,
                                 "kdtree", kept)  # fmt: skip
        fresh = build_graph(window, types[active], walls, time, SPEC, STATS, FRAME_DT, "kdtree")
        for field in dataclasses.fields(fresh):
            a, b = getattr(with_lists, field.name), getattr(fresh, field.name)
            assert (a == b) if isinstance(a, int) else torch.equal(a, b), (frame, field.name)
    return lists.pair_builds, lists.wall_builds


def _turning_drum() -> Wall:
    mesh = drum()  # radius 0.05 m, length 0.04 m, axis y
    return Wall(
        "drum",
        np.asarray(mesh.vertices),
        np.asarray(mesh.faces),
        Rotation(axis=(0.0, 1.0, 0.0), rpm=30.0),
    )  # ~0.16 mm per frame at the rim


def _walks_in_the_drum(rng, n: int, frames: int) -> torch.Tensor:
    """[frames, n, 3] random walks from points spread through the drum."""
    radius, angle = 0.048 * np.sqrt(rng.random(n)), 2 * math.pi * rng.random(n)
    start = np.column_stack((radius * np.cos(angle), rng.uniform(-0.018, 0.018, n),
                             radius * np.sin(angle)))  # fmt: skip
    return _walk(n, frames, start, 1e-4, seed=1)


@pytest.mark.parametrize("wall_skin", [None, 3e-3])
def test_lists_give_the_fresh_graph_in_a_turning_drum_as_particles_leave(wall_skin):
    wall = _turning_drum()
    rng = np.random.default_rng(0)
    n, frames = 300, 45
    positions = _walks_in_the_drum(rng, n, frames)
    leaving = torch.from_numpy(rng.random(n) < 0.3)  # a third leave, one by one, mid-run

    def active_at(frame):
        gone = leaving & (torch.arange(n) % 30 < frame - 10)
        return ~gone

    lists = VerletLists(SPEC.cutoff, SPEC.walls_reach, skin=1e-3, wall_skin=wall_skin)
    pair_builds, wall_builds = _assert_same_graphs(lists, positions, active_at, [wall], frames)
    print(pair_builds, wall_builds)
    # The turning wall and the walks force rebuilds, but the wall contacts outlive most frames.
    assert 2 <= wall_builds <= (frames - 5) // 2 and pair_builds >= 1


def test_lists_of_walls_only_give_the_fresh_wall_contacts():
    """Without a particle cutoff (the wall guard's lists): no particle pairs, and each frame's
    wall contacts are those of a fresh search, pair for pair and bit for bit."""
    wall = _turning_drum()
    positions = _walks_in_the_drum(np.random.default_rng(4), 200, 30)
    lists = VerletLists(None, SPEC.walls_reach, skin=1e-3)
    everyone = torch.ones(200, dtype=torch.bool)
    for frame in range(30):
        kept = lists.neighbours(positions[frame], everyone, [wall], frame * FRAME_DT)
        fresh = wall_contacts(positions[frame], [wall], frame * FRAME_DT, SPEC.walls_reach)
        assert kept.particle_edges.shape == (2, 0)
        for a, b in zip(kept.walls.contacts, fresh.contacts, strict=True):
            assert torch.equal(a, b), frame
    assert 2 <= lists.wall_builds <= 15 and lists.pair_builds == 0


def test_lists_follow_a_gate_that_opens():
    gate = make_gate((0.0, 0.0, 0.0), 0.03, open_at=0.012)
    rng = np.random.default_rng(2)
    start = rng.uniform([-0.012, -0.012, 0.001], [0.012, 0.012, 0.01], (120, 3))
    positions = _walk(120, 20, start, 2e-5, seed=3)
    lists = VerletLists(SPEC.cutoff, SPEC.walls_reach, skin=2e-3)
    all_active = torch.ones(120, dtype=torch.bool)
    builds = _assert_same_graphs(lists, positions, lambda frame: all_active, [gate], 20)
    assert builds == (1, 2)  # the walls before and after the opening


def test_a_skin_must_be_positive():
    with pytest.raises(ValueError, match="skin"):
        VerletLists(0.006, 0.008, skin=0.0)


@pytest.mark.parametrize("rpm", [0.0, 30.0])
def test_only_the_fast_particles_wall_contacts_are_searched_again(rpm):
    """A bed at rest beside a few fast grains (as at a hopper's outlet): the fast grains' wall
    contacts are searched again alone, frame after frame, in a still or a turning drum, and
    every graph is the fresh one."""
    mesh = drum()
    motion = Rotation(axis=(0.0, 1.0, 0.0), rpm=rpm) if rpm else Static()
    wall = Wall("drum", np.asarray(mesh.vertices), np.asarray(mesh.faces), motion)
    rng = np.random.default_rng(5)
    n, frames = 300, 30
    positions = _walks_in_the_drum(rng, n, frames)
    fall = 1.5e-3 * torch.arange(frames, dtype=positions.dtype)  # 1.5 mm a frame
    positions[:, :10, 2] -= fall[:, None]
    lists = VerletLists(SPEC.cutoff, SPEC.walls_reach, skin=1e-3, wall_skin=3e-3)
    everyone = torch.ones(n, dtype=torch.bool)
    _assert_same_graphs(lists, positions, lambda frame: everyone, [wall], frames)
    assert lists.wall_partial_builds >= 5
    assert lists.wall_builds <= (1 if not rpm else 6)
