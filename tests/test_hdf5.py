"""The HDF5 trajectory store: round trip, streaming, a killed writer, bad files."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from bgnn_sim.errors import OutputExistsError, TrajectoryError
from bgnn_sim.io.hdf5 import TrajectoryFile, TrajectoryWriter, read_trajectory, write_trajectory
from tests.helpers import make_trajectory


def test_round_trip_is_exact(tmp_path):
    original = make_trajectory()
    write_trajectory(tmp_path / "t.h5", original)
    back = read_trajectory(tmp_path / "t.h5")
    for name in ("time", "positions", "active", "ids", "types", "radius", "velocities"):
        np.testing.assert_array_equal(getattr(back, name), getattr(original, name), err_msg=name)
    assert back.attrs == original.attrs
    assert [w.name for w in back.walls] == ["drum", "gate"]
    assert back.walls[0].motion == original.walls[0].motion
    assert back.walls[1].removed_at == 0.003
    np.testing.assert_array_equal(back.walls[0].faces, original.walls[0].faces)


def test_lazy_frames_and_slices(tmp_path):
    original = make_trajectory(n_frames=10)
    write_trajectory(tmp_path / "t.h5", original)
    with TrajectoryFile(tmp_path / "t.h5") as traj:
        assert traj.complete and traj.n_frames == 10 and traj.n_particles == 20
        frame = traj.frame(-1)
        np.testing.assert_array_equal(frame.positions, original.positions[9])
        assert frame.time == pytest.approx(9e-3)
        part = traj.read(3, 7)
        np.testing.assert_array_equal(part.positions, original.positions[3:7])
        with pytest.raises(IndexError):
            traj.frame(10)


def test_writer_refuses_overwrite_and_nan(tmp_path):
    path = tmp_path / "t.h5"
    write_trajectory(path, make_trajectory())
    with pytest.raises(OutputExistsError, match="--force"):
        write_trajectory(path, make_trajectory())
    bad = make_trajectory(seed=1)
    bad.positions[2, 5, 0] = np.nan
    with pytest.raises(TrajectoryError, match="non-finite"):
        write_trajectory(path, bad, force=True)
    # The frames before the bad one are kept, and the file says it is incomplete.
    with TrajectoryFile(path) as traj:
        assert traj.n_frames == 2 and not traj.complete


def test_killed_writer_leaves_readable_file(tmp_path):
    path = tmp_path / "killed.h5"
    script = textwrap.dedent(
        f"""
        import os, signal
        import numpy as np
        from bgnn_sim.io.hdf5 import TrajectoryWriter
        n = 300
        writer = TrajectoryWriter({str(path)!r}, np.arange(n), np.ones(n), np.full(n, 0.002))
        for t in range(7):
            writer.append(t * 1e-3, np.full((n, 3), t, float), np.ones(n, bool), np.zeros((n, 3)))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", script])
    assert result.returncode == -9
    with TrajectoryFile(path) as traj:
        assert traj.n_frames == 7 and not traj.complete
        assert np.all(traj.frame(6).positions == 6.0)


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(TrajectoryError, match="no such file"):
        TrajectoryFile(tmp_path / "missing.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(TrajectoryError, match="not a readable HDF5 file"):
        TrajectoryFile(junk)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    with pytest.raises(TrajectoryError, match="not a bgnn-sim trajectory"):
        TrajectoryFile(other)
    future = tmp_path / "future.h5"
    write_trajectory(future, make_trajectory())
    with h5py.File(future, "a") as f:
        f.attrs["version"] = 99
    with pytest.raises(TrajectoryError, match="version 99 is not supported"):
        TrajectoryFile(future)
    broken = tmp_path / "broken.h5"
    write_trajectory(broken, make_trajectory())
    with h5py.File(broken, "a") as f:
        del f["particles/radius"]
    with pytest.raises(TrajectoryError, match="corrupt"):
        TrajectoryFile(broken)


def test_frame_times_must_increase(tmp_path):
    with TrajectoryWriter(tmp_path / "t.h5", np.arange(2), np.ones(2), np.ones(2)) as writer:
        writer.append(0.0, np.zeros((2, 3)), np.ones(2, bool), np.zeros((2, 3)))
        with pytest.raises(ValueError, match="does not follow"):
            writer.append(0.0, np.zeros((2, 3)), np.ones(2, bool), np.zeros((2, 3)))
