"""Containers as types (Hopper, Drum) and the sinks a trajectory records next to its walls."""

from __future__ import annotations

from dataclasses import replace

import h5py
import numpy as np
import pytest

from bgnn_sim.app.scenario import scene_for, simulated_seconds
from bgnn_sim.app.simulation_config import SimulationConfig
from bgnn_sim.defaults import DEFAULT_DRUM_SECONDS, DEFAULT_HOPPER_SECONDS, SINK_DEPTH
from bgnn_sim.engine.state import scene_from_trajectory
from bgnn_sim.geometry.container import Drum, Hopper, inspect_container
from bgnn_sim.geometry.generators import drum
from bgnn_sim.geometry.sink import Sink
from bgnn_sim.geometry.wall import Rotation, Wall
from bgnn_sim.io.hdf5 import TrajectoryFile, read_trajectory, write_trajectory
from bgnn_sim.trajectory import Trajectory
from tests.helpers import MESHES, make_trajectory
from tests.test_fill import walls_of

CONFIG = SimulationConfig(mesh=MESHES / "hopper.stl", out="unused", open_at=0.2, rpm=12.0)


@pytest.fixture(scope="module")
def hopper() -> Hopper:
    from bgnn_sim.geometry.mesh import load_walls

    return inspect_container(load_walls(MESHES / "hopper.stl"))


@pytest.fixture(scope="module")
def a_drum() -> Drum:
    return inspect_container(walls_of(drum(radius=0.05, length=0.04)))  # axis y


def test_a_hopper_discharges_behind_a_gate_into_a_sink(hopper):
    assert isinstance(hopper, Hopper) and hopper.empties and not hopper.mixes
    scene = scene_for(hopper, CONFIG, 1e-3)
    gates = [w for w in scene.walls if w.removed_at is not None]
    assert [g.removed_at for g in gates] == [0.2]
    assert scene.sinks == [Sink(hopper.outlet.z - SINK_DEPTH)]
    assert hopper.scenario_attrs(CONFIG)["sink_z"] == pytest.approx(hopper.outlet.z - SINK_DEPTH)
    assert simulated_seconds(hopper, CONFIG) == pytest.approx(0.2 + DEFAULT_HOPPER_SECONDS)
    assert hopper.outlet_z == hopper.outlet.z
    assert set(hopper.labels(np.random.default_rng(0).normal(size=(10, 3)))) == {1}


def test_a_drum_turns_without_a_sink_and_is_labelled_in_halves(a_drum):
    assert isinstance(a_drum, Drum) and a_drum.mixes and not a_drum.empties
    scene = scene_for(a_drum, CONFIG, 1e-3)
    assert scene.sinks == [] and a_drum.outlet_z is None
    assert all(isinstance(w.motion, Rotation) and w.motion.rpm == 12.0 for w in scene.walls)
    np.testing.assert_allclose(scene.walls[0].motion.axis, [0, 1, 0])
    assert simulated_seconds(a_drum, CONFIG) == DEFAULT_DRUM_SECONDS
    assert simulated_seconds(a_drum, replace(CONFIG, duration=0.3)) == 0.3
    points = np.array([[-0.01, 0.0, 0.0], [0.01, 0.0, 0.0]]) + a_drum.center
    assert a_drum.labels(points).tolist() == [2, 1]
    assert a_drum.scenario_attrs(CONFIG)["rpm"] == 12.0


def test_the_training_range_checks_are_the_containers_own(hopper, a_drum):
    trained = [{"spec": {"outlet": 0.01}, "radius": 0.05, "rpm": 30.0}]
    (what, value, values, _), = hopper.outside_training(trained, 0.004, CONFIG)  # fmt: skip
    assert what == "outlet width" and value == pytest.approx(hopper.outlet.width / 0.004)
    assert [c[0] for c in a_drum.outside_training(trained, 0.004, CONFIG)] == [
        "drum radius", "rotation speed"]  # fmt: skip
    tilted = replace(a_drum, axis="x")
    assert a_drum.training_notes() == [] and "about x" in tilted.training_notes()[0]


def test_sinks_round_trip_next_to_the_walls(tmp_path):
    traj = replace(make_trajectory(), sinks=[Sink(-0.03), Sink(-0.5)])
    write_trajectory(tmp_path / "t.h5", traj)
    with TrajectoryFile(tmp_path / "t.h5") as f:
        assert f.sinks == [Sink(-0.03), Sink(-0.5)]
        assert scene_from_trajectory(f).sinks == [Sink(-0.03), Sink(-0.5)]
    assert read_trajectory(tmp_path / "t.h5").sinks == [Sink(-0.03), Sink(-0.5)]
    empty = replace(make_trajectory(), sinks=[])
    write_trajectory(tmp_path / "e.h5", empty)
    assert read_trajectory(tmp_path / "e.h5").sinks == []


def test_the_stored_sink_wins_over_the_scenario_attrs(tmp_path):
    traj = make_trajectory()
    traj = replace(traj, attrs={**traj.attrs, "scenario": {"sink_z": -0.2}}, sinks=[Sink(-0.07)])
    write_trajectory(tmp_path / "t.h5", traj)
    assert read_trajectory(tmp_path / "t.h5").sinks == [Sink(-0.07)]


@pytest.mark.parametrize(
    ("scenario", "sinks"),
    [({"sink_z": -0.05}, [Sink(-0.05)]), ({"sink_depth": 0.03}, [Sink(-0.03)]), ({}, [])],
)
def test_an_older_file_without_sinks_reads_them_from_its_scenario(tmp_path, scenario, sinks):
    traj = make_trajectory()
    traj.attrs["scenario"] = scenario
    write_trajectory(tmp_path / "old.h5", traj)
    with h5py.File(tmp_path / "old.h5", "a") as f:  # as written before sinks were stored
        del f["sinks"]
    with TrajectoryFile(tmp_path / "old.h5") as f:
        assert f.sinks == sinks
        assert scene_from_trajectory(f).sinks == sinks
    assert read_trajectory(tmp_path / "old.h5").sinks == sinks


def test_an_in_memory_trajectory_without_sinks_takes_its_scenarios():
    traj = make_trajectory()
    made = Trajectory(traj.time, traj.positions, traj.active, traj.ids, traj.types, traj.radius,
                      attrs={"scenario": {"sink_depth": 0.02}})  # fmt: skip
    assert made.sinks == [Sink(-0.02)]
    assert made.read(1, 3).sinks == [Sink(-0.02)]
    walls = [Wall("w", np.zeros((3, 3)), np.array([[0, 1, 2]]))]
    assert Trajectory(traj.time, traj.positions, traj.active, traj.ids, traj.types,
                      traj.radius, walls=walls).sinks == []  # fmt: skip


def test_analysis_reads_the_recorded_outlet_and_sinks():
    from bgnn_sim.analysis.scene import container_kind, outlet_height

    traj = make_trajectory()
    bare = replace(traj, walls=[w for w in traj.walls if w.removed_at is None])
    assert container_kind(replace(bare, walls=[], sinks=[Sink(-0.03)])) == "hopper"
    assert container_kind(replace(bare, walls=[], sinks=[])) is None
    recorded = replace(traj, attrs={"scenario": {"outlet_z": 0.011}})
    assert outlet_height(recorded) == 0.011
    assert outlet_height(recorded, outlet_z=0.02) == 0.02
