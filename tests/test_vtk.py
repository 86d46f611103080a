"""ParaView export read back with pyvista."""

from __future__ import annotations

import numpy as np
import pytest
import pyvista as pv

from bgnn_sim.errors import OutputExistsError
from bgnn_sim.io.hdf5 import TrajectoryFile, write_trajectory
from bgnn_sim.io.vtk import export_vtk
from tests.helpers import make_trajectory


def read_series(pvd, time):
    reader = pv.get_reader(str(pvd))
    reader.set_active_time_value(time)
    return reader.read()[0]


def test_series_reads_back_with_times_and_moving_walls(tmp_path):
    original = make_trajectory()
    write_trajectory(tmp_path / "t.h5", original)
    with TrajectoryFile(tmp_path / "t.h5") as traj:
        pvd = export_vtk(traj, tmp_path / "vtk")
    reader = pv.get_reader(str(pvd))
    np.testing.assert_allclose(reader.time_values, original.time)
    for t in (0, 5):
        cloud = read_series(pvd, original.time[t])
        active = original.active[t]
        np.testing.assert_array_equal(cloud.points, original.positions[t][active])
        np.testing.assert_array_equal(cloud["id"], original.ids[active])
        np.testing.assert_array_equal(cloud["type"], original.types[active])
        np.testing.assert_array_equal(cloud["velocity"], original.velocities[t][active])
        np.testing.assert_array_equal(cloud["radius"], original.radius[active])
    # The drum rotates: walls posed per frame; the gate (2 triangles) is gone after 3 ms.
    walls_pvd = pvd.with_name("walls.pvd")
    early, late = read_series(walls_pvd, 0.0), read_series(walls_pvd, 5e-3)
    drum_wall = original.walls[0]
    assert early.n_cells == len(drum_wall.faces) + 2
    assert late.n_cells == len(drum_wall.faces)
    np.testing.assert_allclose(late.points, drum_wall.vertices_at(5e-3), atol=1e-12)


def test_static_walls_written_once_and_no_silent_overwrite(tmp_path):
    original = make_trajectory()
    original.walls = original.walls[:1]
    original.walls[0].motion = type(original.walls[0].motion)((0, 1, 0), rpm=0.0)
    write_trajectory(tmp_path / "t.h5", original)
    with TrajectoryFile(tmp_path / "t.h5") as traj:
        export_vtk(traj, tmp_path / "vtk", every=2)
        assert len(list((tmp_path / "vtk").glob("walls_*.vtp"))) == 1
        assert len(list((tmp_path / "vtk").glob("particles_*.vtp"))) == 3
        with pytest.raises(OutputExistsError, match="--force"):
            export_vtk(traj, tmp_path / "vtk")
        export_vtk(traj, tmp_path / "vtk", force=True)
    assert len(list((tmp_path / "vtk").glob("particles_*.vtp"))) == 6


def test_velocity_from_positions_when_not_stored(tmp_path):
    original = make_trajectory()
    original.velocities = None
    write_trajectory(tmp_path / "t.h5", original)
    with TrajectoryFile(tmp_path / "t.h5") as traj:
        pvd = export_vtk(traj, tmp_path / "vtk")
    cloud = read_series(pvd, original.time[2])
    expected = (original.positions[2] - original.positions[1]) / 1e-3
    np.testing.assert_allclose(cloud["velocity"], expected, rtol=1e-5)
