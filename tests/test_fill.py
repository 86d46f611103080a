"""Recognising containers in meshes and filling them with settled beds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh

from bgnn_sim.dem.config import Material
from bgnn_sim.errors import MeshError
from bgnn_sim.geometry.container import closed_solid, inspect_container
from bgnn_sim.geometry.fill import (
    FillError,
    bed_packing,
    fill_container,
    volume_below,
)
from bgnn_sim.geometry.generators import HopperSpec, drum, hopper
from bgnn_sim.geometry.mesh import load_walls
from bgnn_sim.geometry.proximity import closest_point_on_triangles
from bgnn_sim.geometry.wall import Wall
from tests.helpers import MESHES

RADIUS = 0.002


def walls_of(mesh: trimesh.Trimesh) -> list[Wall]:
    return [Wall("container", np.asarray(mesh.vertices), np.asarray(mesh.faces, np.int64))]


@pytest.mark.parametrize(
    ("name", "width", "length"),
    [("hopper", 0.024, 0.024), ("wedge_hopper", 0.02, 0.04), ("pyramid_hopper", 0.024, 0.024)],
)
def test_shipped_hoppers_are_recognised_with_their_outlets(name, width, length):
    container = inspect_container(load_walls(MESHES / f"{name}.stl"))
    assert container.kind == "hopper"
    assert container.outlet.z == pytest.approx(0.0, abs=1e-9)
    assert container.outlet.width == pytest.approx(width, rel=1e-3)
    assert container.outlet.length == pytest.approx(length, rel=1e-3)
    assert container.top.z == pytest.approx(container.bounds[1, 2])
    assert closed_solid(container).is_watertight


@pytest.mark.parametrize("axis", ["x", "y", "z"])
def test_a_drum_is_recognised_with_its_axis_radius_and_length(axis):
    mesh = drum(radius=0.05, length=0.04)  # axis y
    turn = {"x": [0, 0, 1], "y": None, "z": [1, 0, 0]}[axis]
    if turn is not None:
        mesh.apply_transform(trimesh.transformations.rotation_matrix(math.pi / 2, turn))
    mesh.apply_translation([0.01, -0.02, 0.3])
    container = inspect_container(walls_of(mesh))
    assert (container.kind, container.axis) == ("drum", axis)
    assert container.radius == pytest.approx(0.05, rel=1e-6)
    assert container.length == pytest.approx(0.04, rel=1e-6)
    np.testing.assert_allclose(container.center, [0.01, -0.02, 0.3], atol=1e-9)


def test_meshes_that_are_neither_hopper_nor_drum_are_refused():
    cup = trimesh.creation.box([0.05, 0.05, 0.05])
    cup.update_faces(cup.face_normals[:, 2] < 0.5)  # no lid: open at the top only
    with pytest.raises(MeshError, match="no outlet"):
        inspect_container(walls_of(cup))
    tilted = hopper(HopperSpec())
    tilted.apply_transform(trimesh.transformations.rotation_matrix(0.3, [1, 0, 0]))
    with pytest.raises(MeshError, match="not horizontal"):
        inspect_container(walls_of(tilted))
    with pytest.raises(MeshError, match="--axis applies to closed drums"):
        inspect_container(walls_of(hopper(HopperSpec())), axis="y")


def test_volume_below_a_plane_is_exact_for_a_drum():
    mesh = drum(radius=0.05, length=0.04, segments=256)
    solid = closed_solid(inspect_container(walls_of(mesh)))
    assert volume_below(solid, 0.0) == pytest.approx(solid.volume / 2, rel=1e-9)
    assert volume_below(solid, 1.0) == pytest.approx(solid.volume)
    assert volume_below(solid, -1.0) == 0.0
    # A circular segment of height h = R/2: area R^2 (pi/3 - sqrt(3)/4).
    segment = 0.05**2 * (math.pi / 3 - math.sqrt(3) / 4) * 0.04
    assert volume_below(solid, -0.025) == pytest.approx(segment, rel=1e-3)
    half = Material(radius=RADIUS).settled_count(volume_below(solid, 0.0))
    assert half == int(0.6 * solid.volume / 2 / 3.351e-8 + 0.5)


@pytest.mark.slow
@pytest.mark.parametrize("mesh", ["pyramid_hopper", "drum"])
def test_fill_gives_a_settled_bed_inside_the_walls(mesh):
    container = inspect_container(load_walls(MESHES / f"{mesh}.stl"))
    solid = closed_solid(container)
    positions = fill_container(solid, 600, RADIUS, seed=1)
    assert positions.shape == (600, 3)
    assert solid.contains(positions).all()
    gaps = np.linalg.norm(positions[:, None] - positions[None], axis=2) + np.eye(600)
    assert gaps.min() > 0.95 * 2 * RADIUS  # overlaps under 5 % of a diameter
    triangles = torch.tensor(np.asarray(solid.triangles))
    contacts = closest_point_on_triangles(torch.tensor(positions), triangles, RADIUS)
    assert contacts.distance.min().item() > RADIUS - 0.05 * 2 * RADIUS
    assert 0.55 <= bed_packing(positions, RADIUS, solid) <= 0.64
    # The bed rests at the bottom: no particle floats above a compact bed.
    assert positions[:, 2].max() - positions[:, 2].min() < 0.6 * np.ptp(container.bounds[:, 2])


def test_fill_refuses_more_particles_than_fit():
    solid = closed_solid(inspect_container(load_walls(MESHES / "pyramid_hopper.stl")))
    with pytest.raises(FillError, match="do not fit"):
        fill_container(solid, 100_000, RADIUS)
