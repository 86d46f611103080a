"""LIGGGHTS dump reader: a real hopper discharge, small constructed dumps, and every bad input."""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import trimesh

from bgnn_sim.errors import DumpError
from bgnn_sim.io.liggghts import iter_dump_frames, read_dumps
from tests.helpers import LIGGGHTS_HOPPER

FIXTURE = LIGGGHTS_HOPPER
DEM_DT = 2.5e-5
FRAME_DT = 40 * DEM_DT
RADIUS = 0.002
COLUMNS = ("id", "type", "x", "y", "z", "vx", "vy", "vz", "radius")
BOX = ((-1.0, 1.0), (-1.0, 1.0), (-2.0, 1.0))


@pytest.fixture(scope="module")
def hopper_run():
    return read_dumps(FIXTURE / "post" / "dump*.liggghts.gz", dem_dt=DEM_DT)


# --- the real fixture -------------------------------------------------------------------------


def test_fixture_shapes_ids_and_time(hopper_run):
    traj = hopper_run
    steps = sorted(int(re.search(r"\d+", p.name)[0]) for p in (FIXTURE / "post").glob("*.gz"))
    assert traj.positions.shape == (len(steps), 200, 3)
    assert traj.velocities.shape == traj.positions.shape and traj.velocities.dtype == np.float32
    np.testing.assert_array_equal(traj.ids, np.arange(1, 201))
    np.testing.assert_allclose(traj.time, np.array(steps) * DEM_DT, rtol=1e-12)
    np.testing.assert_allclose(np.diff(traj.time), FRAME_DT, rtol=1e-9)
    assert (traj.types == 1).all() and (traj.radius == RADIUS).all()
    assert traj.attrs["source"] == "liggghts" and traj.attrs["dem_dt"] == DEM_DT
    assert set(COLUMNS) <= set(traj.attrs["dump_columns"])


def test_fixture_sink_deactivates_particles_for_good(hopper_run):
    counts = hopper_run.active.sum(axis=1)
    assert counts[0] == 200 and counts[-1] < 170
    assert (np.diff(counts) <= 0).all()
    # Deleted atoms never come back, and their slots hold zeros.
    assert (hopper_run.active[:-1] >= hopper_run.active[1:]).all()
    assert (hopper_run.positions[~hopper_run.active] == 0).all()


def test_fixture_positions_inside_hopper_or_below_outlet(hopper_run):
    (lo, hi) = trimesh.load(FIXTURE / "hopper.stl").bounds
    pos = hopper_run.positions[hopper_run.active]
    above = pos[:, 2] >= 0
    assert (np.abs(pos[above, :2]) <= hi[:2] - 0.9 * RADIUS).all()
    assert (pos[above, 2] <= hi[2]).all()
    # Below the outlet (radius 0.01) the jet stays narrow until the sink at z = -0.02 removes it.
    below = pos[~above]
    assert len(below) > 100
    assert (np.hypot(below[:, 0], below[:, 1]) < 0.015).all()
    assert (below[:, 2] > -0.025).all()


def test_fixture_velocities_match_positions_in_free_fall(hopper_run):
    pos, vel, act = hopper_run.positions, hopper_run.velocities, hopper_run.active
    # Central differences are exact for constant acceleration: compare where the particle is
    # well below the outlet (no wall) at three consecutive frames.
    falling = act[:-2] & act[1:-1] & act[2:] & (pos[:-2, :, 2] < -2 * RADIUS)
    falling &= (pos[2:, :, 2] < -2 * RADIUS) & (pos[1:-1, :, 2] < -2 * RADIUS)
    assert falling.sum() > 50
    v_diff = (pos[2:] - pos[:-2]) / (2 * FRAME_DT)
    error = np.linalg.norm(v_diff - vel[1:-1], axis=-1)[falling]
    # Positions carry 10 digits (the deck's dump format), so free flight matches to ~1e-7 m/s;
    # the few misses are collisions inside the jet.
    assert np.median(error) < 1e-5 and np.quantile(error, 0.9) < 1e-4
    accel_z = (pos[2:, :, 2] - 2 * pos[1:-1, :, 2] + pos[:-2, :, 2]) / FRAME_DT**2
    assert np.median(accel_z[falling]) == pytest.approx(-9.81, abs=0.01)


def test_vtk_frames_match_text_frames(hopper_run):
    # The glob also matches LIGGGHTS's hopper_boundingBox_*.vtk files, which must be skipped.
    vtk = read_dumps(str(FIXTURE / "post" / "vtk" / "*.vtk"), dem_dt=DEM_DT)
    assert vtk.n_frames == 4
    frames = np.searchsorted(hopper_run.time, vtk.time)
    np.testing.assert_allclose(hopper_run.time[frames], vtk.time, rtol=1e-12)
    cols = np.searchsorted(hopper_run.ids, vtk.ids)
    np.testing.assert_array_equal(hopper_run.ids[cols], vtk.ids)
    text_active = hopper_run.active[frames][:, cols]
    np.testing.assert_array_equal(vtk.active, text_active)
    assert vtk.active.sum(axis=1)[-1] < vtk.active.sum(axis=1)[0]  # the sink acts in between
    text_pos = hopper_run.positions[frames][:, cols]
    # VTK points are float32: about 2e-9 m at these coordinates.
    np.testing.assert_allclose(vtk.positions[vtk.active], text_pos[vtk.active], atol=1e-8)
    text_vel = hopper_run.velocities[frames][:, cols]
    np.testing.assert_allclose(vtk.velocities[vtk.active], text_vel[vtk.active], atol=1e-5)
    np.testing.assert_array_equal(vtk.radius, hopper_run.radius[cols])


def test_vtk_frame_columns_and_timestep_from_name():
    (frame,) = iter_dump_frames(FIXTURE / "post" / "vtk" / "hopper_15840.vtk")
    assert frame.timestep == 15840
    assert set(COLUMNS) <= set(frame.columns)
    assert len({len(v) for v in frame.columns.values()}) == 1


def test_vtk_errors(tmp_path):
    unnamed = tmp_path / "hopper.vtk"
    shutil.copy(FIXTURE / "post" / "vtk" / "hopper_15800.vtk", unnamed)
    with pytest.raises(DumpError, match=rf"{re.escape(str(unnamed))}: no timestep number"):
        read_dumps(unnamed, DEM_DT)
    box = FIXTURE / "post" / "vtk" / "hopper_boundingBox_15800.vtk"
    with pytest.raises(DumpError, match="not a particle dump"):
        read_dumps(box, DEM_DT)


# --- constructed dumps --------------------------------------------------------------------------


def make_frames() -> list[tuple[int, np.ndarray]]:
    """Three frames (timestep, rows [n, 9] in COLUMNS order): atom 5 (type 2, larger) appears
    at the second frame, atom 2 is gone from the third; rows are not sorted by id."""
    rng = np.random.default_rng(7)
    frames = []
    for step, ids in ((200, [3, 1, 2, 4]), (1000, [1, 2, 5, 3, 4]), (1400, [4, 1, 5, 3])):
        ids = np.array(ids, dtype=float)
        n = len(ids)
        kind = np.where(ids == 5, 2.0, 1.0)
        xyz, vel = rng.uniform(-0.9, 0.9, (n, 3)), rng.normal(size=(n, 3))
        frames.append((step, np.column_stack([ids, kind, xyz, vel, kind * 1e-3])))
    return frames


def block(step: int, rows: np.ndarray, names=COLUMNS, box=BOX, box_head="ff ff ff") -> str:
    head = [f"ITEM: TIMESTEP\n{step}\nITEM: NUMBER OF ATOMS\n{len(rows)}\n"]
    head += [f"ITEM: BOX BOUNDS {box_head}\n"] + [" ".join(map(str, b)) + "\n" for b in box]
    body = ["ITEM: ATOMS " + " ".join(names) + "\n"]
    body += [" ".join(format(v, ".17g") for v in row) + "\n" for row in rows]
    return "".join(head + body)


def write(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def one_file(tmp_path: Path, name: str = "all.liggghts", **kwargs) -> Path:
    return write(tmp_path / name, "".join(block(s, r, **kwargs) for s, r in make_frames()))


def test_constructed_dump_aligned_by_id(tmp_path):
    traj = read_dumps(one_file(tmp_path), dem_dt=1e-4)
    np.testing.assert_array_equal(traj.ids, [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(traj.active, [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 0, 1, 1, 1]])
    np.testing.assert_allclose(traj.time, [0.02, 0.1, 0.14], rtol=1e-12)
    np.testing.assert_array_equal(traj.types, [1, 1, 1, 1, 2])
    np.testing.assert_array_equal(traj.radius, [1e-3, 1e-3, 1e-3, 1e-3, 2e-3])
    for t, (_, rows) in enumerate(make_frames()):
        cols = rows[:, 0].astype(int) - 1
        np.testing.assert_array_equal(traj.positions[t, cols], rows[:, 2:5])
        np.testing.assert_array_equal(traj.velocities[t, cols], rows[:, 5:8].astype(np.float32))
    assert (traj.positions[~traj.active] == 0).all() and (traj.velocities[~traj.active] == 0).all()


def assert_same(a, b):
    for name in ("time", "positions", "active", "ids", "types", "radius", "velocities"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_permuted_columns_give_identical_arrays(tmp_path):
    order = [7, 4, 0, 8, 2, 6, 1, 3, 5]
    text = "".join(block(s, r[:, order], [COLUMNS[k] for k in order]) for s, r in make_frames())
    permuted = write(tmp_path / "permuted.liggghts", text)
    assert_same(read_dumps(permuted, 1e-4), read_dumps(one_file(tmp_path), 1e-4))


def test_one_file_per_step_ordered_by_timestep_not_name(tmp_path):
    folder = tmp_path / "post"
    folder.mkdir()
    for step, rows in make_frames():  # dump1000 sorts before dump200 by name
        write(folder / f"dump{step}.liggghts", block(step, rows))
    per_step = read_dumps(str(folder / "dump*.liggghts"), 1e-4)
    assert_same(per_step, read_dumps(one_file(tmp_path), 1e-4))
    listed = read_dumps([folder / "dump1400.liggghts", str(folder / "dump[12]*")], 1e-4)
    assert_same(listed, per_step)


def test_gzip_equals_plain(tmp_path):
    zipped = one_file(tmp_path, "all.liggghts.gz")
    assert zipped.read_bytes()[:2] == b"\x1f\x8b"
    assert_same(read_dumps(zipped, 1e-4), read_dumps(one_file(tmp_path), 1e-4))


def test_scaled_and_unwrapped_coordinates(tmp_path):
    lo, hi = np.array(BOX).T
    scaled, unwrapped = [], []
    for step, rows in make_frames():
        s = rows.copy()
        s[:, 2:5] = (rows[:, 2:5] - lo) / (hi - lo)
        scaled.append(block(step, s, ("id", "type", "xs", "ys", "zs", "vx", "vy", "vz", "radius")))
        unwrapped.append(block(step, rows, ("id", "type", "xu", "yu", "zu") + COLUMNS[5:]))
    plain = read_dumps(one_file(tmp_path), 1e-4)
    from_scaled = read_dumps(write(tmp_path / "scaled.liggghts", "".join(scaled)), 1e-4)
    np.testing.assert_allclose(from_scaled.positions, plain.positions, atol=1e-15)
    from_unwrapped = read_dumps(write(tmp_path / "unwrapped.liggghts", "".join(unwrapped)), 1e-4)
    assert_same(from_unwrapped, plain)


def test_scaled_coordinates_in_a_triclinic_box(tmp_path):
    # Cell edges a = (1, 0, 0), b = (0.5, 1, 0), c = (0, 0, 2) from the origin: LAMMPS writes the
    # bounds of the tilted cell (x up to 1.5) and the tilt factors xy xz yz.
    rows = np.array([[1, 1, 0.0, 1.0, 0.0], [2, 1, 1.0, 1.0, 0.5]])
    text = block(0, rows, ("id", "type", "xs", "ys", "zs"), ((0, 1.5, 0.5), (0, 1, 0), (0, 2, 0)))
    traj = read_dumps(write(tmp_path / "tri.liggghts", text), 1e-4, radius=0.001)
    np.testing.assert_allclose(traj.positions[0], [[0.5, 1.0, 0.0], [1.5, 1.0, 1.0]], atol=1e-15)


def test_optional_columns(tmp_path):
    rows = make_frames()[0][1][:, [0, 2, 3, 4]]
    path = write(tmp_path / "min.liggghts", block(5, rows, ("id", "x", "y", "z")))
    traj = read_dumps(path, 1e-4, radius=0.003)
    assert traj.velocities is None
    assert (traj.types == 1).all() and (traj.radius == 0.003).all()
    assert traj.attrs["radius_from"] == "argument"
    with pytest.raises(DumpError, match=rf"{re.escape(str(path))}:1: .*--radius"):
        read_dumps(path, 1e-4)


# --- bad input ---------------------------------------------------------------------------------


def lines_of_one_file() -> list[str]:
    """Two blocks of 4 and 5 atoms: lines 1-9 header, 10-13 rows; the second block at line 14."""
    frames = make_frames()[:2]
    return "".join(block(s, r) for s, r in frames).splitlines(keepends=True)


def edit(line: int, text: str | None):
    """Replace (or, with None, delete) 1-based `line`."""

    def apply(lines: list[str]) -> list[str]:
        lines = list(lines)
        if text is None:
            del lines[line - 1]
        else:
            lines[line - 1] = text
        return lines

    return apply


BAD_FILES = {
    "garbled first header": (edit(1, "TIMESTEP\n"), 1, "expected 'ITEM: TIMESTEP'"),
    "garbled count header": (edit(3, "ITEM: ATOMS COUNT\n"), 3, "expected 'ITEM: NUMBER OF ATOMS'"),
    "missing box header": (edit(5, None), 5, "expected 'ITEM: BOX BOUNDS'"),
    "non-integer timestep": (edit(2, "20x0\n"), 2, "expected the timestep"),
    "negative atom count": (edit(4, "-4\n"), 4, "expected the number of atoms"),
    "garbled box line": (edit(7, "-1.0\n"), 7, "expected box bounds"),
    "short row": (edit(11, "2 1 0.1 0.2 0.3 0 0 0\n"), 11, "has 8 values, expected 9"),
    "long row": (edit(12, "3 1 0.1 0.2 0.3 0 0 0 0.001 7\n"), 12, "has 10 values, expected 9"),
    "blank row": (edit(12, "\n"), 12, "has 0 values, expected 9"),
    "non-numeric value": (edit(12, "3 1 0.1 abc 0.3 0 0 0 0.001\n"), 12, "'abc' in column 'y'"),
    "too few rows": (
        edit(13, None),
        13,
        "found 'ITEM: TIMESTEP' after 3 atom rows, NUMBER OF ATOMS is 4",
    ),
    "file ends mid-rows": (lambda ls: ls[:12], 13, "file ends after 3 of 4 atom rows"),
    "file ends mid-header": (lambda ls: ls[:4], 5, "file ends where 'ITEM: BOX BOUNDS'"),
    "file ends after box": (lambda ls: ls[:8], 9, "file ends where 'ITEM: ATOMS'"),
    "no id column": (edit(9, "ITEM: ATOMS ident type x y z vx vy vz radius\n"), 9, "needs an 'id'"),
    "no positions": (
        edit(9, "ITEM: ATOMS id type x y q vx vy vz radius\n"),
        9,
        "needs an 'id' and x y z",
    ),
    "duplicate id": (edit(12, "1 1 0.1 0.2 0.3 0 0 0 0.001\n"), 12, "atom id 1 appears twice"),
    "nan position": (edit(11, "1 1 0.1 nan 0.3 0 0 0 0.001\n"), 11, "non-finite position"),
    "inf position": (edit(23, "1 1 0.1 0.2 -inf 0 0 0 0.001\n"), 23, "non-finite position"),
    "type changes": (edit(26, "3 2 0.1 0.2 0.3 0 0 0 0.001\n"), 26, "atom 3 has type 2 here but 1"),
    "radius changes": (edit(27, "4 1 0.1 0.2 0.3 0 0 0 0.005\n"), 27, "atom 4 has radius 0.005"),
    "same timestep": (edit(15, "200\n"), 14, "timestep 200 appears twice"),
}


@pytest.mark.parametrize("case", BAD_FILES, ids=list(BAD_FILES))
def test_bad_text_dump_names_file_and_line(tmp_path, case):
    mutate, line, message = BAD_FILES[case]
    lines = lines_of_one_file()
    assert lines[13] == "ITEM: TIMESTEP\n" and lines[15] == "ITEM: NUMBER OF ATOMS\n"
    path = write(tmp_path / "bad.liggghts", "".join(mutate(lines)))
    with pytest.raises(DumpError, match=re.escape(f"{path}:{line}: ")) as info:
        read_dumps(path, 1e-4)
    assert message in str(info.value)
    assert "\n" not in str(info.value)  # the CLI prints it as one line


def test_empty_file(tmp_path):
    for name, data in (("empty.liggghts", b""), ("blank.liggghts", b"\n\n"), ("e.gz", b"")):
        path = tmp_path / name
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
        with pytest.raises(DumpError, match=re.escape(f"{path}:1: empty dump file")):
            read_dumps(path, 1e-4)


def test_truncated_gzip(tmp_path):
    data = gzip.compress("".join(lines_of_one_file()).encode())
    path = tmp_path / "cut.liggghts.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DumpError, match=re.escape(str(path)) + ":[0-9]+: "):
        read_dumps(path, 1e-4)


def test_same_timestep_in_two_files(tmp_path):
    step, rows = make_frames()[0]
    first = write(tmp_path / "a.liggghts", block(step, rows))
    second = write(tmp_path / "b.liggghts", block(step, rows))
    with pytest.raises(DumpError, match="timestep 200 appears twice") as info:
        read_dumps([first, second], 1e-4)
    assert f"{first}:1" in str(info.value) and f"{second}:1" in str(info.value)


def test_velocities_missing_in_some_frames(tmp_path):
    (s0, r0), (s1, r1), _ = make_frames()
    cols = [0, 1, 2, 3, 4, 8]
    text = block(s0, r0) + block(s1, r1[:, cols], [COLUMNS[k] for k in cols])
    path = write(tmp_path / "mixed.liggghts", text)
    with pytest.raises(DumpError, match=re.escape(f"{path}:14: no vx vy vz")):
        read_dumps(path, 1e-4)


def test_bad_arguments_and_missing_files(tmp_path):
    path = one_file(tmp_path)
    for dem_dt in (0.0, -2.5e-5, float("nan")):
        with pytest.raises(DumpError, match="DEM time step must be positive"):
            read_dumps(path, dem_dt)
    with pytest.raises(DumpError, match="radius must be positive"):
        read_dumps(path, 1e-4, radius=0.0)
    with pytest.raises(DumpError, match="no dump file matches"):
        read_dumps(str(tmp_path / "post" / "dump*.liggghts"), 1e-4)
    with pytest.raises(DumpError, match=re.escape(f"{tmp_path / 'nope.liggghts'}: no such")):
        read_dumps(tmp_path / "nope.liggghts", 1e-4)
    with pytest.raises(DumpError, match="no dump files given"):
        read_dumps([], 1e-4)
