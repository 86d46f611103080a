"""The `bgnn` command: outputs, and one clear error line with exit code 1 for bad input."""

from __future__ import annotations

import gzip

import h5py
import numpy as np
import pytest
import pyvista as pv
import trimesh

from bgnn_sim.geometry.mesh import load_walls
from bgnn_sim.io.hdf5 import write_trajectory
from tests.helpers import LIGGGHTS_HOPPER, MESHES, make_trajectory


def test_info_mesh(run_cli):
    code, out, _ = run_cli("info", MESHES / "drum.stl")
    assert code == 0
    assert "triangles:   256" in out and "watertight:  yes" in out
    assert "volume:      0.000313" in out


def test_info_trajectory(run_cli, tmp_path):
    write_trajectory(tmp_path / "t.h5", make_trajectory())
    code, out, _ = run_cli("info", tmp_path / "t.h5")
    assert code == 0
    assert "particles:   20" in out and "frames:      6" in out and "complete" in out
    assert "active:      17 at the last frame" in out


def test_mesh_commands_write_and_refuse_overwrite(run_cli, tmp_path):
    out_file = tmp_path / "wedge.stl"
    args = ("mesh", "hopper", "--shape", "wedge", "--outlet", "0.03", "--angle", "20", "-o")
    code, out, _ = run_cli(*args, out_file)
    assert code == 0 and "wrote" in out
    extent = np.ptp(load_walls(out_file)[0].vertices, axis=0)
    assert np.isclose(extent[1], 0.04)  # default wedge depth
    before = out_file.read_bytes()
    code, _, err = run_cli("mesh", "drum", "-o", out_file)
    assert code == 1 and err.strip() == f"error: {out_file} exists; pass --force to overwrite it"
    assert out_file.read_bytes() == before
    assert run_cli("mesh", "drum", "--radius", "0.06", "-o", out_file, "--force")[0] == 0
    assert np.isclose(np.ptp(load_walls(out_file)[0].vertices, axis=0)[0], 0.12)


def test_mesh_rejects_bad_dimensions(run_cli, tmp_path):
    code, _, err = run_cli("mesh", "hopper", "--outlet", "0.2", "-o", tmp_path / "h.stl")
    assert code == 2 and "narrower than top" in err
    assert not (tmp_path / "h.stl").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"solid broken\n facet normal 0 0 1\n", "no triangles|cannot read"),
    ],
)
def test_info_bad_mesh_is_one_line(run_cli, tmp_path, content, message):
    path = tmp_path / "broken.stl"
    path.write_bytes(content)
    code, out, err = run_cli("info", path)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"error: {path}")
    assert any(m in err for m in message.split("|"))


def test_info_millimetre_mesh_hints_scale(run_cli, tmp_path):
    mm = tmp_path / "drum_mm.stl"
    load_walls(MESHES / "drum.stl")[0].to_trimesh().apply_scale(1000).export(mm)
    code, _, err = run_cli("info", mm)
    assert code == 1 and "--scale 0.001" in err and err.count("\n") == 1
    code, out, _ = run_cli("info", mm, "--scale", "0.001")
    assert code == 0 and "extent (m):  (0.1, 0.04, 0.1)" in out


def test_info_unknown_and_missing_files(run_cli, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    code, _, err = run_cli("info", tmp_path / "notes.txt")
    assert code == 1 and "unknown file type" in err
    code, _, err = run_cli("info", tmp_path / "missing.h5")
    assert code == 1 and err == f"error: {tmp_path / 'missing.h5'}: no such file\n"
    (tmp_path / "fake.h5").write_text("not hdf5")
    code, _, err = run_cli("export", tmp_path / "fake.h5", "--vtk", tmp_path / "vtk")
    assert code == 1 and "not a readable HDF5 file" in err and err.count("\n") == 1


def _dump_rows(path):
    """Rows of one LIGGGHTS text dump parsed by hand: {column: values}, sorted by id."""
    with gzip.open(path, "rt") as f:
        lines = f.read().splitlines()
    columns = lines[8].split()[2:]
    table = np.loadtxt(lines[9:], ndmin=2)
    table = table[np.argsort(table[:, columns.index("id")])]
    return {name: table[:, k] for k, name in enumerate(columns)}, int(lines[1])


def test_liggghts_dumps_round_trip_to_paraview(run_cli, tmp_path):
    """Real LIGGGHTS output -> bgnn convert -> HDF5 -> bgnn export -> pyvista: same positions."""
    dumps = sorted((LIGGGHTS_HOPPER / "post").glob("dump*.liggghts.gz"))
    h5 = tmp_path / "run.h5"
    code, out, _ = run_cli(
        "convert", LIGGGHTS_HOPPER / "post" / "dump*.liggghts.gz", "-o", h5,
        "--mesh", LIGGGHTS_HOPPER / "hopper.stl",
    )  # fmt: skip
    assert code == 0 and f"{len(dumps)} frames" in out
    code, _, _ = run_cli("export", h5, "--vtk", tmp_path / "vtk")
    assert code == 0
    reader = pv.get_reader(str(tmp_path / "vtk" / "particles.pvd"))
    for dump in (dumps[0], dumps[-1]):
        rows, step = _dump_rows(dump)
        reader.set_active_time_value(step * 2.5e-5)
        cloud = reader.read()[0]
        np.testing.assert_array_equal(cloud["id"], rows["id"])
        expected = np.column_stack([rows["x"], rows["y"], rows["z"]])
        np.testing.assert_allclose(cloud.points, expected, rtol=0, atol=1e-15)
    walls = pv.read(tmp_path / "vtk" / "walls_000000.vtp")
    assert walls.n_cells == len(load_walls(LIGGGHTS_HOPPER / "hopper.stl")[0].faces)


def test_convert_truncated_dump_is_one_line_and_writes_nothing(run_cli, tmp_path):
    source = sorted((LIGGGHTS_HOPPER / "post").glob("dump*.liggghts.gz"))[3]
    with gzip.open(source, "rt") as f:
        lines = f.read().splitlines()
    broken = tmp_path / "dump_broken.liggghts"
    broken.write_text("\n".join(lines[:-5]) + "\n")  # the last 5 atoms are missing
    out = tmp_path / "run.h5"
    code, stdout, err = run_cli("convert", broken, "-o", out)
    assert code == 1 and stdout == "" and err.count("\n") == 1
    assert err.startswith(f"error: {broken}:") and not out.exists()


def test_convert_keeps_existing_output(run_cli, tmp_path):
    out = tmp_path / "run.h5"
    out.write_bytes(b"precious")
    code, _, err = run_cli("convert", LIGGGHTS_HOPPER / "post" / "dump*.liggghts.gz", "-o", out)
    assert code == 1 and "--force" in err and out.read_bytes() == b"precious"


def _nan_obj(path):
    path.write_text("v 0 0 0\nv nan 0 0\nv 0 0.1 0\nf 1 2 3\n")


def _degenerate_stl(path):
    tri = np.array([[0, 0, 0], [0.1, 0, 0], [0, 0.1, 0]], float)
    trimesh.Trimesh(tri, [[0, 1, 2], [0, 1, 1]], process=False).export(path)


def _foreign_h5(path):
    with h5py.File(path, "w") as f:
        f["x"] = 1


def _empty_dump(path):
    path.write_text("")


@pytest.mark.parametrize(
    ("name", "make", "command", "message"),
    [
        ("nan.obj", _nan_obj, "info", "NaN or infinite coordinates"),
        ("flat.stl", _degenerate_stl, "info", "1 of 2 triangles are degenerate"),
        ("other.h5", _foreign_h5, "info", "not a bgnn-sim trajectory"),
        ("dump1.liggghts", _empty_dump, "convert", "empty dump file"),
    ],
)
def test_bad_inputs_exit_1_with_one_line(run_cli, tmp_path, name, make, command, message):
    path = tmp_path / name
    make(path)
    args = (command, path) if command == "info" else (command, path, "-o", tmp_path / "t.h5")
    code, out, err = run_cli(*args)
    assert code == 1 and out == "" and err.count("\n") == 1
    assert err.startswith(f"error: {path}") and message in err
