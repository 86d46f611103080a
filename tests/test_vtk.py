"""ParaView export read back with pyvista, and once with ParaView's own reader (pvpython)."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap

import numpy as np
import pytest
import pyvista as pv

from bgnn_sim.errors import OutputExistsError
from bgnn_sim.io.hdf5 import TrajectoryFile, write_trajectory
from bgnn_sim.io.vtk import export_vtk, walls_polydata
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


# Run by ParaView's own Python (pvpython), not by the tests' interpreter: for each .pvd given,
# every time step as ParaView reads it (time, points, cells, point and cell arrays) as JSON.
_PARAVIEW_READER = textwrap.dedent(
    """
    import json, sys
    from paraview import servermanager
    from paraview.simple import PVDReader, UpdatePipeline
    from vtkmodules.util.numpy_support import vtk_to_numpy

    def arrays(data):
        return {
            data.GetArray(i).GetName(): {
                "dtype": vtk_to_numpy(data.GetArray(i)).dtype.str,
                "values": vtk_to_numpy(data.GetArray(i)).tolist(),
            }
            for i in range(data.GetNumberOfArrays())
        }

    series = {}
    for pvd in sys.argv[2:]:
        reader = PVDReader(FileName=pvd)
        steps = []
        for time in reader.TimestepValues:
            UpdatePipeline(time=time, proxy=reader)
            data = servermanager.Fetch(reader)
            points = data.GetPoints()
            steps.append({
                "time": time,
                "n_points": data.GetNumberOfPoints(),
                "n_cells": data.GetNumberOfCells(),
                "points": vtk_to_numpy(points.GetData()).tolist() if points else [],
                "point_data": arrays(data.GetPointData()),
                "cell_data": arrays(data.GetCellData()),
            })
        series[pvd] = steps
    with open(sys.argv[1], "w") as out:
        json.dump(series, out)
    """
)


@pytest.mark.skipif(shutil.which("pvpython") is None, reason="ParaView (pvpython) not installed")
def test_paraview_reads_the_series(tmp_path):
    """ParaView's PVD reader sees every time, particle, wall triangle and array that was written,
    a frame that every particle has left included."""
    original = make_trajectory(n_frames=6, n_particles=7)
    original.active[5] = False  # the last frame is empty: arrays with no values
    write_trajectory(tmp_path / "t.h5", original)
    with TrajectoryFile(tmp_path / "t.h5") as traj:
        particles_pvd = export_vtk(traj, tmp_path / "vtk")
    walls_pvd = particles_pvd.with_name("walls.pvd")
    (tmp_path / "read.py").write_text(_PARAVIEW_READER)
    result = subprocess.run(
        ["pvpython", tmp_path / "read.py", tmp_path / "seen.json", particles_pvd, walls_pvd],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads((tmp_path / "seen.json").read_text())
    particles, walls = seen[str(particles_pvd)], seen[str(walls_pvd)]

    assert [step["time"] for step in particles] == original.time.tolist()
    assert [step["time"] for step in walls] == original.time.tolist()
    assert [step["n_points"] for step in particles] == [7, 7, 7, 7, 4, 0]
    written = {  # name: (values [T][...], dtype the writer gave them)
        "id": ([original.ids[a] for a in original.active], "<i8"),
        "type": ([original.types[a] for a in original.active], "<i4"),
        "radius": ([original.radius[a] for a in original.active], "<f8"),
        "velocity": (
            [v[a] for v, a in zip(original.velocities, original.active, strict=True)],
            "<f4",
        ),
    }
    for t, step in enumerate(particles):
        active = original.active[t]
        assert step["n_cells"] == active.sum()  # one vertex cell per particle
        np.testing.assert_array_equal(
            np.reshape(step["points"], (-1, 3)), original.positions[t][active]
        )
        assert step["point_data"].keys() == written.keys()
        for name, (values, dtype) in written.items():
            array = step["point_data"][name]
            assert array["dtype"] == dtype, name
            expected = np.asarray(values[t], dtype=dtype)
            np.testing.assert_array_equal(np.reshape(array["values"], expected.shape), expected)

    # The drum turns (posed per frame); the gate's 2 triangles are gone once it opens at 3 ms.
    drum_faces = len(original.walls[0].faces)
    assert [step["n_cells"] for step in walls] == [drum_faces + 2] * 3 + [drum_faces] * 3
    for time, step in zip(original.time, walls, strict=True):
        drawn = walls_polydata(original.walls, time)
        assert step["n_points"] == drawn.n_points
        np.testing.assert_allclose(step["points"], drawn.points, rtol=1e-6)
        velocity = step["point_data"]["velocity"]
        assert velocity["dtype"] == "<f4"
        np.testing.assert_allclose(velocity["values"], drawn.point_data["velocity"], rtol=1e-6)
        assert step["cell_data"]["wall"]["values"] == drawn.cell_data["wall"].tolist()
