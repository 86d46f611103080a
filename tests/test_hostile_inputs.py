"""Bad input as a new user gives it: one `error:` line, the right exit code, nothing written.

Exit codes (README): 1 an error in the input or the environment, 2 a usage error (the command
line itself), 3 a `--fail-above` limit broken by a comparison that ran.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from bgnn_sim.analysis.compare import METRICS, compare
from bgnn_sim.dem.runner import run_deck
from bgnn_sim.geometry.generators import drum
from bgnn_sim.io.hdf5 import TrajectoryFile, write_trajectory
from bgnn_sim.io.liggghts import read_dumps
from tests.helpers import LIGGGHTS_HOPPER, MESHES, liggghts_hopper_run, make_trajectory

HOPPER = MESHES / "hopper.stl"
INSERTION_DECK = Path(__file__).parent / "fixtures" / "liggghts_insertion" / "in.deck"
needs_liggghts = pytest.mark.skipif(shutil.which("liggghts") is None, reason="no liggghts")


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder in which nothing can be created (root ignores permission bits: then a folder of
    a read-only or virtual file system)."""
    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    for candidate in (Path("/sys"), Path("/proc")):
        try:
            tempfile.TemporaryFile(dir=candidate).close()
        except OSError:
            yield candidate
            return
    pytest.skip("no read-only folder on this machine")


def _files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _dump_lines() -> list[str]:
    """One frame of the committed LIGGGHTS run: 200 atom rows."""
    source = sorted((LIGGGHTS_HOPPER / "post").glob("dump*.liggghts.gz"))[0]
    with gzip.open(source, "rt") as f:
        return f.read().splitlines()


# Each case builds its inputs in tmp_path and returns (command line, exit code, words of the
# error line, a path the command must not create).


def _device(tmp, ro):
    return ["simulate", HOPPER, "--device", "tpu", "--out", tmp / "run"], 2, "'tpu' is not a device"


def _device_syntax(tmp, ro):
    return ["simulate", HOPPER, "--device", "cuda:x", "--out", tmp / "run"], 2, "--device"


def _read_only_out(tmp, ro):
    return ["simulate", HOPPER, "--out", ro / "run"], 1, "cannot write in"


def _out_is_a_file(tmp, ro):
    (tmp / "run").write_text("mine")
    return ["simulate", HOPPER, "--out", tmp / "run"], 1, "is a file"


def _users_trajectory_forced(tmp, ro):
    (tmp / "mine").mkdir()
    write_trajectory(tmp / "mine" / "trajectory.h5", liggghts_hopper_run())
    args = ["simulate", HOPPER, "--out", tmp / "mine", "--force"]
    return args, 1, "trajectory.h5, which bgnn simulate did not write"


def _foreign_file_in_paraview(tmp, ro):
    (tmp / "run" / "paraview").mkdir(parents=True)
    (tmp / "run" / "paraview" / "notes.txt").write_text("mine")
    return ["simulate", HOPPER, "--out", tmp / "run", "--force"], 1, "holds other files"


def _sphere(tmp, ro):
    trimesh.creation.icosphere(3, radius=0.05).export(tmp / "ball.stl")
    args = ["simulate", tmp / "ball.stl", "--out", tmp / "run"]
    return args, 1, "not a drum: round about"


def _box_given_an_axis(tmp, ro):
    trimesh.creation.box([0.1, 0.05, 0.08]).export(tmp / "box.stl")
    args = ["simulate", tmp / "box.stl", "--axis", "y", "--out", tmp / "run"]
    return args, 1, "is not round"


def _octagon_drum(tmp, ro):
    drum(radius=0.05, length=0.04, segments=8).export(tmp / "coarse.stl")
    return ["simulate", tmp / "coarse.stl", "--out", tmp / "run"], 1, "is not round"


def _start_without_init(tmp, ro):
    return ["simulate", HOPPER, "--start", "3", "--out", tmp / "run"], 1, "--start picks a frame"


def _no_particles(tmp, ro):
    args = ["simulate", HOPPER, "--particles", "0", "--out", tmp / "run"]
    return args, 2, "--particles"


def _cut_number(tmp, ro):
    lines = _dump_lines()
    (tmp / "dump1.liggghts").write_text("\n".join(lines)[:-3])  # radius 0.002 -> 0., no newline
    args = ["convert", tmp / "dump1.liggghts", "-o", tmp / "t.h5"]
    return args, 1, "file ends inside atom row 200"


def _short_row(tmp, ro):
    lines = _dump_lines()
    lines[-1] = " ".join(lines[-1].split()[:-2])
    (tmp / "dump1.liggghts").write_text("\n".join(lines) + "\n")
    args = ["convert", tmp / "dump1.liggghts", "-o", tmp / "t.h5"]
    return args, 1, "atom row has 7 values, expected 9"


def _no_particle_anywhere(tmp, ro):
    header = _dump_lines()[:9]
    for step in (0, 40):
        text = "\n".join([header[0], str(step), header[2], "0", *header[4:9]]) + "\n"
        (tmp / f"dump{step}.liggghts").write_text(text)
    args = ["convert", str(tmp / "dump*.liggghts"), "-o", tmp / "t.h5"]
    return args, 1, "no particle in any of its 2 frames"


def _convert_into_missing_folder(tmp, ro):
    args = ["convert", str(LIGGGHTS_HOPPER / "post" / "dump*.gz"), "-o", tmp / "no" / "t.h5"]
    return args, 1, "does not exist"


def _convert_read_only(tmp, ro):
    args = ["convert", str(LIGGGHTS_HOPPER / "post" / "dump*.gz"), "-o", ro / "t.h5"]
    return args, 1, "cannot write in"


def _export_read_only(tmp, ro):
    write_trajectory(tmp / "t.h5", make_trajectory())
    return ["export", tmp / "t.h5", "--vtk", ro / "vtk"], 1, "cannot write in"


def _analyze_into_a_file(tmp, ro):
    write_trajectory(tmp / "t.h5", make_trajectory())
    return ["analyze", tmp / "t.h5", "--out", tmp / "t.h5"], 1, "is a file"


def _unknown_metric(tmp, ro):
    write_trajectory(tmp / "t.h5", make_trajectory())
    args = ["compare", tmp / "t.h5", tmp / "t.h5", "--out", tmp / "cmp",
            "--fail-above", "bogus=0.1"]  # fmt: skip
    return args, 2, "unknown metric 'bogus'"


def _limit_not_a_number(tmp, ro):
    write_trajectory(tmp / "t.h5", make_trajectory())
    args = ["compare", tmp / "t.h5", tmp / "t.h5", "--out", tmp / "cmp",
            "--fail-above", "t50_error_s=soon"]  # fmt: skip
    return args, 2, "expected METRIC=VALUE"


def _mesh_into_missing_folder(tmp, ro):
    return ["mesh", "drum", "-o", tmp / "no" / "drum.stl"], 1, "does not exist"


CASES = [
    _device, _device_syntax, _read_only_out, _out_is_a_file, _users_trajectory_forced,
    _foreign_file_in_paraview, _sphere, _box_given_an_axis, _octagon_drum, _start_without_init,
    _no_particles, _cut_number, _short_row, _no_particle_anywhere, _convert_into_missing_folder,
    _convert_read_only, _export_read_only, _analyze_into_a_file, _unknown_metric,
    _limit_not_a_number, _mesh_into_missing_folder,
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.__name__[1:] for c in CASES])
def test_bad_input_is_one_error_line_and_writes_nothing(run_cli, tmp_path, read_only_dir, case):
    args, code, words = case(tmp_path, read_only_dir)
    before = _files(tmp_path)
    exit_code, out, err = run_cli(*args)
    assert exit_code == code, err
    assert err.count("\n") == 1 and err.startswith("error: ") and words in err, err
    assert "Traceback" not in out + err
    assert _files(tmp_path) == before  # nothing written, nothing replaced
    assert not any(p.name in ("run", "t.h5", "vtk") for p in read_only_dir.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_a_gpu_asked_for_on_a_cpu_machine_is_an_error_of_the_environment(run_cli, tmp_path):
    code, _, err = run_cli("simulate", HOPPER, "--device", "cuda", "--out", tmp_path / "run")
    assert code == 1 and err == "error: --device cuda was asked for, but no CUDA GPU is available\n"
    assert not (tmp_path / "run").exists()


def test_every_metric_a_comparison_reports_can_be_a_limit():
    hopper = liggghts_hopper_run()
    drum_run = make_trajectory(n_frames=30, n_particles=40)
    drum_run = replace(drum_run, attrs={**drum_run.attrs, "kind": "drum"})
    for run in (hopper, drum_run):
        assert set(compare(run, run).metrics) <= set(METRICS)


def test_a_broken_limit_exits_3_after_writing_the_report(run_cli, tmp_path):
    write_trajectory(tmp_path / "t.h5", liggghts_hopper_run())
    limit = ("--fail-above", "mixing_entropy_max_error=1")
    code, _, err = run_cli("compare", tmp_path / "t.h5", tmp_path / "t.h5", "--out",
                           tmp_path / "cmp", *limit)  # fmt: skip
    assert code == 3 and err == (
        "error: limits exceeded: mixing_entropy_max_error not measured (limit 1.0)\n"
    )  # one particle type in a hopper: no mixing measured, so the limit cannot be vouched for
    metrics = json.loads((tmp_path / "cmp" / "metrics.json").read_text())
    assert metrics["wasserstein_max_m"] == pytest.approx(0.0, abs=1e-12)


@needs_liggghts
@pytest.mark.liggghts
def test_a_real_series_dumped_before_insertion_and_after_deletion_converts(run_cli, tmp_path):
    """LIGGGHTS's own frames of no atom, text and VTK: frames in which no particle is active."""
    (tmp_path / "post" / "vtk").mkdir(parents=True)
    shutil.copy(INSERTION_DECK, tmp_path / "in.deck")
    run_deck(tmp_path, timeout=120)
    for pattern in ("post/dump*.liggghts", "post/vtk/beads_*.vtk"):
        out = tmp_path / (Path(pattern).parent.name + ".h5")
        code, stdout, err = run_cli("convert", str(tmp_path / pattern), "-o", out)
        assert code == 0 and err == "", err  # VTK's warning about a file of no points is muted
        assert "100 particles, 9 frames" in stdout
        with TrajectoryFile(out) as traj:
            counts = traj.read().active.sum(axis=1)
            assert traj.complete and traj.has_velocities
        np.testing.assert_array_equal(counts, [0, 0, 0, 100, 100, 100, 100, 0, 0])
    text = read_dumps(str(tmp_path / "post" / "dump*.liggghts"), dem_dt=2.5e-5)
    vtk = read_dumps(str(tmp_path / "post" / "vtk" / "beads_*.vtk"), dem_dt=2.5e-5)
    np.testing.assert_allclose(vtk.positions, text.positions, atol=1e-6)  # VTK: float32
    code, _, err = run_cli("convert", tmp_path / "post" / "vtk" / "beads_0.vtk", "-o",
                           tmp_path / "empty.h5")  # fmt: skip
    assert code == 1 and "no particle in its one frame" in err and err.count("\n") == 1


def _leaving_state(path: Path) -> None:
    """The committed LIGGGHTS run moved under the hopper, every particle falling 1 mm a frame
    and 0.5 mm above the sink (3 cm under the outlet) at the last frame."""
    truth = liggghts_hopper_run()
    positions = truth.positions.copy()
    last = len(truth.time) - 1
    positions[..., 2] = (-0.0295 + 0.001 * (last - np.arange(last + 1)))[:, None]
    everywhere = np.ones_like(truth.active)
    write_trajectory(path, replace(truth, positions=positions, active=everywhere, velocities=None))


def test_simulate_init_without_particles_names_the_frame(run_cli, tiny_hopper_model, tmp_path):
    truth = liggghts_hopper_run()
    gone = truth.active.copy()
    gone[-20:] = False  # the hopper has emptied
    write_trajectory(tmp_path / "empty_end.h5", replace(truth, active=gone))
    init = ("--init", tmp_path / "empty_end.h5")
    base = ("simulate", LIGGGHTS_HOPPER / "hopper.stl", "--model", tiny_hopper_model, *init,
            "--duration", "0.002", "--out", tmp_path / "run")  # fmt: skip
    last = len(truth.time) - 1
    empty_last = f"frame {last} (t = {truth.time[-1]:.6g} s) holds no particle; choose a frame"
    for extra, message in [
        ((), empty_last + " with --start F"),
        (("--start", "-15"), f"frame {last - 14} (t = "),
        (("--start", "500"), f"has {last + 1} frames (0 to {last}, or -{last + 1} to -1"),
        (("--start", "2"), "a rollout needs 6 frames of history"),
    ]:
        code, _, err = run_cli(*base, *extra)
        assert code == 1 and message in err and err.count("\n") == 1, err
        assert not (tmp_path / "run").exists()
    code, _, err = run_cli(*base, "--start", "-30")  # the last frame with particles in it
    assert code == 0, err
    # bgnn rollout reads its initial state the same way.
    rollout = ("rollout", tiny_hopper_model, "--init", tmp_path / "empty_end.h5", "--frames", "2",
               "-o", tmp_path / "out.h5")  # fmt: skip
    for extra, message in [((), empty_last), (("--start", "500"), f"has {last + 1} frames")]:
        code, _, err = run_cli(*rollout, *extra)
        assert code == 1 and message in err and err.count("\n") == 1, err
        assert not (tmp_path / "out.h5").exists()


def test_a_rollout_whose_particles_all_leave_writes_its_outputs(
    run_cli, tiny_hopper_model, tmp_path
):
    _leaving_state(tmp_path / "leaving.h5")
    out = tmp_path / "run"
    code, stdout, err = run_cli(
        "simulate", LIGGGHTS_HOPPER / "hopper.stl", "--model", tiny_hopper_model,
        "--init", tmp_path / "leaving.h5", "--open-at", "0", "--duration", "0.01",
        "--vtk-every", "1", "--out", out,
    )  # fmt: skip
    assert code == 0, err
    assert "\x1b[" not in stdout + err  # no coloured VTK warning from the off-screen snapshot
    with TrajectoryFile(out / "trajectory.h5") as traj:
        active = traj.read().active
        assert traj.complete and not active[-1].any() and active[0].all()
        n_frames = traj.n_frames
    pvd = (out / "paraview" / "particles.pvd").read_text()
    assert pvd.count("<DataSet") == n_frames  # the empty last frame included
    import pyvista as pv

    empty = pv.read(out / "paraview" / f"particles_{n_frames - 1:06d}.vtp")
    assert empty.n_points == 0 and "velocity" in empty.point_data
    assert (out / "snapshot.png").read_bytes().startswith(b"\x89PNG")
    summary = json.loads((out / "summary.json").read_text(), parse_constant=_no_constant)
    assert summary["metrics"]["t50_s"] is None  # nothing above the outlet to discharge: null
    json.loads((out / "report" / "metrics.json").read_text(), parse_constant=_no_constant)


def _no_constant(name: str):
    raise AssertionError(f"{name} is not strict JSON")


def test_forced_run_replaces_only_a_previous_run_of_simulate(run_cli, tiny_hopper_model, tmp_path):
    out = tmp_path / "run"
    args = ("simulate", LIGGGHTS_HOPPER / "hopper.stl", "--model", tiny_hopper_model,
            "--particles", "40", "--duration", "0.002", "--out", out)  # fmt: skip
    assert run_cli(*args)[0] == 0
    summary = json.loads((out / "summary.json").read_text(), parse_constant=_no_constant)
    assert not any(isinstance(v, float) and math.isnan(v) for v in summary["metrics"].values())
    assert run_cli(*args, "--force")[0] == 0  # a previous run of simulate: replaced
    (out / "trajectory.h5").unlink()
    write_trajectory(out / "trajectory.h5", liggghts_hopper_run())  # the user's own, same name
    code, _, err = run_cli(*args, "--force")
    assert code == 1 and "which bgnn simulate did not write" in err
    (out / "trajectory.h5").unlink()
    assert run_cli(*args)[0] == 1  # outputs without a trajectory: not recognisably a run


def test_the_snapshot_renders_without_a_display_and_says_nothing(tmp_path, capfd, monkeypatch):
    """VTK's "bad X server connection" warning goes to the process's stderr: watched at fd 2."""
    from bgnn_sim.io.render import render_frame

    monkeypatch.delenv("DISPLAY", raising=False)
    run = make_trajectory()
    run.active[-1] = False  # the last frame: every particle has left
    write_trajectory(tmp_path / "t.h5", run)
    with TrajectoryFile(tmp_path / "t.h5") as traj:
        for index in (0, run.active.shape[0] - 1):
            render_frame(traj, index, tmp_path / f"frame{index}.png")
            assert (tmp_path / f"frame{index}.png").read_bytes().startswith(b"\x89PNG")
    assert capfd.readouterr() == ("", "")
