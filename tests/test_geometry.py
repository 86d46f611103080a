"""Mesh generators, mesh loading and validation, wall motion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh

from bgnn_sim.errors import MeshError
from bgnn_sim.geometry.generators import HOPPER_SHAPES, HopperSpec, drum, hopper
from bgnn_sim.geometry.mesh import load_walls, summarize_walls
from bgnn_sim.geometry.wall import (
    Rotation,
    Static,
    Translation,
    Wall,
    make_gate,
    motion_from_dict,
    motion_to_dict,
)
from tests.helpers import MESHES


@pytest.mark.parametrize("shape", HOPPER_SHAPES)
def test_hopper_outlet_and_wall_angle(shape):
    spec = HopperSpec(shape=shape, outlet=0.02, angle=25.0, top=0.06, bin_height=0.02)
    mesh = hopper(spec)
    vertices = np.asarray(mesh.vertices)
    outlet = vertices[np.isclose(vertices[:, 2], 0.0)]
    # The outlet is centred at the origin with the requested width along x.
    assert np.isclose(np.ptp(outlet[:, 0]), 0.02)
    assert np.allclose(outlet[:, :2].mean(axis=0), 0.0, atol=1e-12)
    assert np.isclose(vertices[:, 2].max(), spec.height)
    # Wall angle from the vertical: the half-width grows by tan(angle) per metre of height.
    top_of_cone = vertices[np.isclose(vertices[:, 2], spec.cone_height)]
    growth = (np.ptp(top_of_cone[:, 0]) - 0.02) / 2 / spec.cone_height
    assert np.isclose(math.degrees(math.atan(growth)), 25.0)
    assert not mesh.is_watertight  # open at the top and at the outlet


def test_drum_is_closed_cylinder_along_y():
    mesh = drum(radius=0.04, length=0.03, segments=128)
    assert mesh.is_watertight
    assert np.allclose(mesh.extents, [0.08, 0.03, 0.08], atol=1e-9)
    assert np.isclose(mesh.volume, math.pi * 0.04**2 * 0.03, rtol=1e-3)


@pytest.mark.parametrize(
    "bad", [dict(angle=0.0), dict(angle=95.0), dict(outlet=0.1), dict(shape="x")]
)
def test_hopper_spec_rejects_bad_dimensions(bad):
    with pytest.raises(ValueError):
        HopperSpec(**bad)


@pytest.mark.parametrize("name", ["hopper", "wedge_hopper", "pyramid_hopper", "drum"])
def test_shipped_meshes_load_in_metres(name):
    walls = load_walls(MESHES / f"{name}.stl")
    summary = summarize_walls(walls)
    assert 0.05 < np.ptp(summary.bounds, axis=0).max() < 0.2
    assert summary.watertight == (name == "drum")


def test_load_walls_scale_and_merge(tmp_path):
    mesh = drum(radius=50.0, length=40.0)  # millimetres
    mesh.export(tmp_path / "drum_mm.stl")
    walls = load_walls(tmp_path / "drum_mm.stl", scale=0.001)
    assert np.allclose(np.ptp(walls[0].vertices, axis=0), [0.1, 0.04, 0.1], atol=1e-9)
    assert len(walls[0].vertices) == len(mesh.vertices)  # STL corners merged again


def _write_stl(path, vertices, faces):
    trimesh.Trimesh(vertices, faces, process=False).export(path)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_text("solid x\n this is not an stl\n"), "no triangles|cannot read"),
        (lambda p: None, "no such file"),
    ],
)
def test_unreadable_files(tmp_path, make, message):
    path = tmp_path / "bad.stl"
    make(path)
    with pytest.raises(MeshError, match=message):
        load_walls(path)


def test_nan_degenerate_and_millimetre_meshes(tmp_path):
    tri = np.array([[0, 0, 0], [0.1, 0, 0], [0, 0.1, 0], [0.1, 0.1, 0.0]])
    nan = tri.copy()
    nan[1, 0] = np.nan
    path = tmp_path / "nan.obj"
    path.write_text("".join(f"v {x} {y} {z}\n" for x, y, z in nan) + "f 1 2 3\nf 2 4 3\n")
    with pytest.raises(MeshError, match="NaN"):
        load_walls(path)
    flat = _write_stl(tmp_path / "flat.stl", tri, [[0, 1, 2], [0, 1, 1]])
    with pytest.raises(MeshError, match="1 of 2 triangles are degenerate"):
        load_walls(flat)
    big = _write_stl(tmp_path / "mm.stl", tri * 1000, [[0, 1, 2]])
    with pytest.raises(MeshError, match=r"millimetres.*--scale 0\.001"):
        load_walls(big)
    assert len(load_walls(big, scale=0.001)) == 1


def test_rotation_pose_and_contact_velocity():
    motion = Rotation(axis=(0.0, 1.0, 0.0), origin=(0.0, 0.0, 0.0), rpm=30.0)
    wall = Wall("drum", np.array([[0.05, 0.0, 0.0]]), np.zeros((0, 3), np.int64), motion)
    quarter_turn = 0.5  # 30 rpm = 0.5 s per half turn, 0.5 s is a quarter of the 2 s period
    assert np.allclose(wall.vertices_at(quarter_turn), [[0.0, 0.0, -0.05]], atol=1e-12)
    speed = np.linalg.norm(wall.velocity_at(wall.vertices_at(0.3), 0.3))
    assert np.isclose(speed, 2 * math.pi * 0.5 * 0.05)  # omega * r
    # The velocity of the wall is the time derivative of its vertices.
    eps = 1e-6
    numeric = (wall.vertices_at(0.3 + eps) - wall.vertices_at(0.3 - eps)) / (2 * eps)
    assert np.allclose(wall.velocity_at(wall.vertices_at(0.3), 0.3), numeric, atol=1e-7)


def test_translation_and_static():
    motion = Translation(velocity_ms=(0.0, 0.0, -0.1), start=0.1, stop=0.3)
    assert np.allclose(motion.transform(0.05)[:3, 3], 0.0)
    assert np.allclose(motion.transform(1.0)[:3, 3], [0, 0, -0.02])
    assert np.allclose(motion.velocity(np.zeros((2, 3)), 0.2), [[0, 0, -0.1]] * 2)
    assert np.allclose(motion.velocity(np.zeros((2, 3)), 0.4), 0.0)
    assert np.allclose(Static().transform(3.0), np.eye(4))


def test_gate_is_removed_at_open_time():
    gate = make_gate((0.0, 0.0, 0.0), half_width=0.02, open_at=0.5)
    assert gate.present_at(0.49) and not gate.present_at(0.5)
    # A rollout's clock sums its frame steps: ten 3 ms frames land a few ulp short of 0.03 s.
    clock = sum([0.003] * 10)
    assert clock < 0.03 and not make_gate((0, 0, 0), 0.02, open_at=0.03).present_at(clock)
    assert np.allclose(np.ptp(gate.triangles_at(0.0).reshape(-1, 3), axis=0), [0.04, 0.04, 0.0])


@pytest.mark.parametrize(
    "motion", [Static(), Rotation((0, 1, 0), (0.1, 0, 0), 12.0, 0.2), Translation((1, 0, 0), 0, 2)]
)
def test_motion_json_round_trip(motion):
    assert motion_from_dict(motion_to_dict(motion)) == motion
