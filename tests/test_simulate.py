"""`bgnn simulate` end to end on tiny containers with tiny trained models."""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest

from bgnn_sim.geometry.generators import HopperSpec, drum, hopper
from bgnn_sim.geometry.mesh import save_mesh
from bgnn_sim.io import render
from bgnn_sim.io.hdf5 import TrajectoryFile
from tests.helpers import LIGGGHTS_HOPPER, liggghts_hopper_run

RUN_FILES = ("trajectory.h5", "summary.json", "config.toml", "report/metrics.json",
             "paraview/particles.pvd", "paraview/walls.pvd", "snapshot.png")  # fmt: skip


@pytest.fixture
def tiny_hopper_mesh(tmp_path):
    """A conical hopper of the tiny dataset's size (outlet 5.5 d)."""
    path = tmp_path / "tiny_hopper.stl"
    save_mesh(hopper(HopperSpec(outlet=0.022, top=0.042, bin_height=0.01)), path)
    return path


@pytest.fixture
def tiny_drum_mesh(tmp_path):
    path = tmp_path / "tiny_drum.stl"
    save_mesh(drum(radius=0.024, length=0.018, segments=32), path)
    return path


def test_simulate_hopper_writes_the_run_folder(
    run_cli, tiny_hopper_model, tiny_hopper_mesh, tmp_path
):
    out = tmp_path / "run"
    code, stdout, stderr = run_cli(
        "simulate", tiny_hopper_mesh, "--model", tiny_hopper_model, "--particles", "120",
        "--open-at", "0.005", "--duration", "0.02", "--vtk-every", "5", "--out", out,
    )  # fmt: skip
    assert code == 0, stderr
    assert "hopper: outlet 22.0 mm wide" in stdout
    assert "the gate under the outlet opens at 0.005 s (--open-at)" in stdout
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    with TrajectoryFile(out / "trajectory.h5") as traj:
        assert traj.complete and traj.n_particles == 120
        assert traj.n_frames == 5 + 20  # the resting history, then 20 frames
        assert traj.attrs["kind"] == "hopper" and traj.attrs["scenario"]["open_at"] == 0.005
        first = traj.frame(0)
        assert np.all(first.positions[:, 2] > 0)  # the bed rests on the closed gate
        gate = [w for w in traj.walls if w.name == "gate"][0]
        assert gate.present_at(0.0) and not gate.present_at(0.006)
        corrections = traj.guard_corrections  # the wall guard is on by default
        assert len(corrections) == traj.n_frames and not corrections[:5].any()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["particles"] == 120 and summary["frames"] == 20
    assert summary["kind"] == "hopper" and summary["frames_per_s"] > 0
    assert "discharged_fraction_final" in summary["metrics"]
    assert summary["wall_guard"] is True
    assert summary["guard_corrections"] == summary["metrics"]["guard_corrections"]
    assert summary["guard_corrections"] == corrections.sum()
    assert f"wall guard: {corrections.sum()} corrections" in stdout
    config = tomllib.loads((out / "config.toml").read_text())
    assert config["particles"] == 120 and config["model"] == str(tiny_hopper_model)
    walls = (out / "paraview" / "walls.pvd").read_text()
    assert len(set(_files(walls))) == 2  # the gate is drawn until it opens, then not


def test_simulate_opens_the_gate_on_a_model_frame(
    run_cli, tiny_hopper_model, tiny_hopper_mesh, tmp_path
):
    out = tmp_path / "run"
    code, stdout, stderr = run_cli(
        "simulate", tiny_hopper_mesh, "--model", tiny_hopper_model, "--particles", "60",
        "--open-at", "0.0083", "--duration", "0.003", "--out", out,
    )  # fmt: skip
    assert code == 0, stderr
    # 1 ms frames from t = 0.005 (5 frames of history): 0.0083 s lies between two of them.
    assert "the gate opens at 0.008 s, on the model's 1 ms frames (--open-at 0.0083)" in stdout
    with TrajectoryFile(out / "trajectory.h5") as traj:
        assert traj.attrs["scenario"]["open_at"] == 0.008
        (gate,) = [w for w in traj.walls if w.name == "gate"]
        assert gate.present_at(0.007) and not gate.present_at(0.008)
    assert tomllib.loads((out / "config.toml").read_text())["open_at"] == 0.008


def test_simulate_drum_turns_two_labelled_halves(
    run_cli, tiny_drum_model, tiny_drum_mesh, tmp_path
):
    out = tmp_path / "run"
    code, stdout, stderr = run_cli(
        "simulate", tiny_drum_mesh, "--model", tiny_drum_model, "--particles", "100",
        "--rotate", "35", "--duration", "0.01", "--out", out,
    )  # fmt: skip
    assert code == 0, stderr
    assert "closed drum: axis y, radius 24.0 mm" in stdout
    assert "the drum turns at 35 rpm about y (--rotate, --axis)" in stdout
    with TrajectoryFile(out / "trajectory.h5") as traj:
        frame = traj.frame(0)
        assert set(np.unique(traj.types)) == {1, 2}
        assert np.all((traj.types == 2) == (frame.positions[:, 0] < 0))
        assert traj.walls[0].motion.rpm == 35
    walls = (out / "paraview" / "walls.pvd").read_text()
    assert len(set(_files(walls))) > 1  # the drum is drawn where it has turned to


def test_simulate_keeps_a_previous_run_and_explains_bad_input(
    run_cli, tiny_hopper_model, tiny_hopper_mesh, tmp_path
):
    out = tmp_path / "run"
    args = ("simulate", tiny_hopper_mesh, "--model", tiny_hopper_model, "--particles", "60",
            "--duration", "0.003", "--out", out)  # fmt: skip
    assert run_cli(*args)[0] == 0
    before = (out / "trajectory.h5").read_bytes()
    code, _, stderr = run_cli(*args)
    assert code == 1 and stderr.count("\n") == 1 and "--force" in stderr
    assert (out / "trajectory.h5").read_bytes() == before

    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    code, _, stderr = run_cli(*args[:-1], other, "--force")
    assert code == 1 and "holds other files" in stderr
    assert (other / "notes.txt").read_text() == "keep me"

    for bad, message in [
        (("--particles", "100000"), "do not fit"),
        (("--model", tmp_path / "missing.pt"), "no such checkpoint"),
        (("--scale", "1000"), "millimetres"),
        (("--particles", "10", "--fill-height", "0.01"), "not both"),
    ]:
        code, _, stderr = run_cli("simulate", tiny_hopper_mesh, "--model", tiny_hopper_model,
                                  "--out", tmp_path / "bad", *bad)  # fmt: skip
        assert code == 1 and message in stderr, stderr
        assert stderr.count("\n") == 1


def test_simulate_without_the_wall_guard_runs_the_raw_model(
    run_cli, tiny_hopper_model, tiny_hopper_mesh, tmp_path
):
    out = tmp_path / "run"
    code, stdout, stderr = run_cli(
        "simulate", tiny_hopper_mesh, "--model", tiny_hopper_model, "--particles", "60",
        "--duration", "0.003", "--out", out, "--no-wall-guard",
    )  # fmt: skip
    assert code == 0, stderr
    assert "(raw model)" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["wall_guard"] is False and summary["guard_corrections"] is None
    assert "guard_corrections" not in summary["metrics"]
    with TrajectoryFile(out / "trajectory.h5") as traj:
        assert traj.guard_corrections is None and traj.attrs["wall_guard"] is None
    assert tomllib.loads((out / "config.toml").read_text())["wall_guard"] is False


def test_simulate_runs_a_bfloat16_processor_and_refuses_an_unknown_precision(
    run_cli, tiny_hopper_model, tiny_hopper_mesh, tmp_path
):
    out = tmp_path / "run"
    args = ("simulate", tiny_hopper_mesh, "--model", tiny_hopper_model, "--particles", "60",
            "--duration", "0.003", "--out", out)  # fmt: skip
    code, _, stderr = run_cli(*args, "--precision", "float16")
    assert code == 2 and "float16" in stderr and not out.exists()
    code, _, stderr = run_cli(*args, "--precision", "bfloat16")
    assert code == 0, stderr
    assert tomllib.loads((out / "config.toml").read_text())["precision"] == "bfloat16"


def test_simulate_without_off_screen_opengl_skips_only_the_picture(
    run_cli, tiny_hopper_model, tiny_hopper_mesh, tmp_path, monkeypatch
):
    """VTK would crash the process without EGL or OSMesa: the run says so and writes the rest."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setattr(render.ctypes.util, "find_library", lambda name: None)
    out = tmp_path / "run"
    code, stdout, stderr = run_cli(
        "simulate", tiny_hopper_mesh, "--model", tiny_hopper_model, "--particles", "60",
        "--duration", "0.003", "--out", out,
    )  # fmt: skip
    assert code == 0, stderr
    assert "warning: no snapshot.png: no off-screen OpenGL here" in stdout
    assert "apt-get install libegl1 libegl-mesa0" in stdout
    assert not (out / "snapshot.png").exists()
    for name in set(RUN_FILES) - {"snapshot.png"}:
        assert (out / name).is_file(), name


def test_simulate_warns_outside_the_training_range(run_cli, tiny_hopper_model, tmp_path):
    mesh = tmp_path / "wide.stl"
    save_mesh(hopper(HopperSpec(outlet=0.05, top=0.07, bin_height=0.0)), mesh)
    code, stdout, stderr = run_cli(
        "simulate", mesh, "--model", tiny_hopper_model, "--particles", "80",
        "--duration", "0.002", "--out", tmp_path / "run",
    )  # fmt: skip
    assert code == 0, stderr
    assert "warning: outlet width 12.5 diameters is outside the training range" in stdout


def _files(pvd: str) -> list[str]:
    return [part.split('"')[1] for part in pvd.split("file=")[1:]]


def test_simulate_starts_from_a_liggghts_state(run_cli, tiny_hopper_model, tmp_path):
    dumps = str(LIGGGHTS_HOPPER / "post" / "dump*.liggghts.gz")
    out = tmp_path / "run"
    code, stdout, stderr = run_cli(
        "simulate", LIGGGHTS_HOPPER / "hopper.stl", "--model", tiny_hopper_model,
        "--init", dumps, "--duration", "0.003", "--out", out,
    )  # fmt: skip
    assert code == 0, stderr
    truth = liggghts_hopper_run()
    last = truth.active[-1]
    with TrajectoryFile(out / "trajectory.h5") as traj:
        assert traj.n_particles == truth.n_particles
        np.testing.assert_array_equal(traj.ids, truth.ids)
        first = traj.frame(traj.n_frames - 4)  # the last frame of the LIGGGHTS state
        np.testing.assert_allclose(first.positions[last], truth.positions[-1][last])


def test_simulate_fill_liggghts_settles_the_bed_with_the_dem(
    run_cli, tiny_hopper_model, tiny_hopper_mesh, tmp_path
):
    runs = {}
    for fill in ("geometric", "liggghts"):
        out = tmp_path / fill
        code, _, stderr = run_cli(
            "simulate", tiny_hopper_mesh, "--model", tiny_hopper_model, "--particles", "80",
            "--fill", fill, "--duration", "0.002", "--out", out,
        )  # fmt: skip
        assert code == 0, stderr
        with TrajectoryFile(out / "trajectory.h5") as traj:
            runs[fill] = traj.frame(0).positions
    moved = np.linalg.norm(runs["liggghts"] - runs["geometric"], axis=1)
    assert 0 < moved.max() < 0.004  # LIGGGHTS adjusts the rested bed, it does not rebuild it
    assert runs["liggghts"][:, 2].min() > 0.0019  # resting on the closed gate at z = 0


def test_a_failing_forced_run_keeps_the_previous_one(
    run_cli, tiny_hopper_model, tiny_hopper_mesh, tmp_path
):
    out = tmp_path / "run"
    args = ("simulate", tiny_hopper_mesh, "--model", tiny_hopper_model, "--duration", "0.002",
            "--out", out, "--force")  # fmt: skip
    assert run_cli(*args, "--particles", "50")[0] == 0
    before = (out / "trajectory.h5").read_bytes()
    code, _, stderr = run_cli(*args, "--particles", "100000")  # does not fit: fails in the fill
    assert code == 1 and "do not fit" in stderr
    assert (out / "trajectory.h5").read_bytes() == before
