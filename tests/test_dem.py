"""Scenario families, deck writing and the LIGGGHTS runner, with the real `liggghts`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bgnn_sim.dem.checks import sanity_checks
from bgnn_sim.dem.config import Material, Timing, load_dem_config
from bgnn_sim.dem.dataset import (
    build_trajectory,
    dump_files,
    read_manifest,
    trim_empty_tail,
)
from bgnn_sim.dem.deck import DUMP_PATTERN, liggghts_seed, write_deck
from bgnn_sim.dem.runner import DONE, run_deck, run_scenario, run_scenarios
from bgnn_sim.dem.scenarios import PRESETS, HopperFamily
from bgnn_sim.errors import DemError
from bgnn_sim.io.hdf5 import TrajectoryFile
from bgnn_sim.io.liggghts import read_dumps
from tests.helpers import make_trajectory

MATERIAL, TIMING = Material(), Timing()
TINY_HOPPER, TINY_DRUM = PRESETS["tiny"]


def test_family_draws_are_in_range_and_reproducible():
    family = HopperFamily()
    draws = [family.sample(seed, MATERIAL) for seed in range(40)]
    assert draws[7] == family.sample(7, MATERIAL)
    assert {d.spec.shape for d in draws} == {"conical", "wedge", "pyramid"}
    for d in draws:
        assert 15 <= d.spec.angle <= 40 and 500 <= d.n_particles <= 3000
        assert 4 * MATERIAL.diameter <= d.spec.outlet <= 12.0001 * MATERIAL.diameter
    drum = PRESETS["default"][1].sample(3, MATERIAL)
    fill = (
        drum.n_particles * MATERIAL.particle_volume / 0.6 / (np.pi * drum.radius**2 * drum.length)
    )
    assert 0.2 <= fill <= 0.45 and 10 <= drum.rpm <= 40


def test_liggghts_seeds_are_distinct_primes_above_10000():
    seeds = [liggghts_seed(n) for n in range(50)]
    assert len(set(seeds)) == 50 and min(seeds) > 10000
    assert all(all(s % d for d in range(2, int(s**0.5) + 1)) for s in seeds)


@pytest.mark.liggghts
def test_tiny_hopper_runs_and_discharges(tmp_path):
    scenario = TINY_HOPPER.sample(1, MATERIAL)
    assert run_scenario(scenario, tmp_path / "run", MATERIAL, TIMING)
    traj = read_dumps(str(tmp_path / "run" / DUMP_PATTERN), dem_dt=TIMING.dem_dt)
    n_frames = round((scenario.settled_record + scenario.discharge_time) / TIMING.frame_dt) + 1
    assert traj.n_frames == n_frames and traj.n_particles == scenario.n_particles
    active = traj.active.sum(axis=1)
    assert active[0] == scenario.n_particles  # all inserted, none lost while settling
    assert active[-1] < active[0] and np.all(np.diff(active) <= 0)  # the sink removes
    opened = traj.time < scenario.open_at
    speed = np.linalg.norm(traj.velocities[opened], axis=-1)
    assert speed.max() < 0.05  # the bed recorded before the opening is at rest
    # Resumable: a finished run is skipped, a half-finished one (no marker) redone.
    assert not run_scenario(scenario, tmp_path / "run", MATERIAL, TIMING)
    (tmp_path / "run" / DONE).unlink()
    assert run_scenario(scenario, tmp_path / "run", MATERIAL, TIMING)
    assert json.loads((tmp_path / "run" / DONE).read_text())["wall_seconds"] > 0


@pytest.mark.liggghts
def test_tiny_drum_rotates_two_labelled_halves(tmp_path):
    scenario = TINY_DRUM.sample(2, MATERIAL)
    run_scenarios([(scenario, tmp_path / "drum")], MATERIAL, TIMING, workers=1)
    traj = read_dumps(str(tmp_path / "drum" / DUMP_PATTERN), dem_dt=TIMING.dem_dt)
    assert traj.active.all() and traj.n_particles == scenario.n_particles
    first = traj.positions[0]
    np.testing.assert_array_equal(traj.types == 2, first[:, 0] < 0)
    inside = np.hypot(first[:, 0], first[:, 2]) <= scenario.radius - 0.9 * MATERIAL.radius
    assert inside.all()
    # The wall drags the bed: the mean velocity along x at the bottom follows the rotation.
    bottom = traj.positions[-1][:, 2] < -0.5 * scenario.radius
    assert traj.velocities[-1][bottom, 0].mean() < 0  # +y rotation moves the bottom towards -x


@pytest.mark.liggghts
def test_failed_run_reports_the_error_line(tmp_path):
    run_dir = tmp_path / "bad"
    deck = write_deck(TINY_HOPPER.sample(1, MATERIAL), run_dir, MATERIAL, TIMING)
    deck.write_text(deck.read_text().replace("pair_style      gran", "pair_style      nonsense"))
    with pytest.raises(DemError, match=r"liggghts failed \(exit \d+\): .*ERROR"):
        run_deck(run_dir)


def test_missing_liggghts_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DemError, match="apt-get install liggghts"):
        run_scenarios([(TINY_HOPPER.sample(0, MATERIAL), tmp_path / "x")], MATERIAL, TIMING)


# A stand-in `liggghts` that Open MPI fails to start the first FAILS times, as when runs started
# side by side race for Open MPI's session folder. It counts its starts in the run folder with
# shell built-ins only (PATH holds just this binary).
RACING_LIGGGHTS = """#!/bin/sh
n=0; [ -f starts ] && read n < starts; n=$((n + 1)); echo $n > starts
if [ $n -le FAILS ]; then
  echo "[host:42] ORTE_ERROR_LOG: Unable to start a daemon on the local node in file x.c"
  exit 1
fi
echo "LIGGGHTS (Version LIGGGHTS-PUBLIC 3.8.0)"
"""


@pytest.mark.parametrize("fails, starts", [(1, 2), (5, 3)])
def test_a_run_open_mpi_failed_to_start_is_started_again(tmp_path, monkeypatch, fails, starts):
    binary = tmp_path / "bin" / "liggghts"
    binary.parent.mkdir()
    binary.write_text(RACING_LIGGGHTS.replace("FAILS", str(fails)))
    binary.chmod(0o755)
    monkeypatch.setenv("PATH", str(binary.parent))
    monkeypatch.setattr("bgnn_sim.dem.runner.time.sleep", lambda seconds: None)
    if fails < starts:
        run_deck(tmp_path)
    else:  # it keeps failing: the start-up error, after three starts
        with pytest.raises(DemError, match="exit 1.*Unable to start a daemon"):
            run_deck(tmp_path)
    assert (tmp_path / "starts").read_text().strip() == str(starts)


@pytest.mark.liggghts
@pytest.mark.parametrize("kind", ["hopper", "drum"])
def test_generate_tiny_dataset(run_cli, tmp_path, kind):
    out = tmp_path / "data"
    code, stdout, stderr = run_cli(
        "generate", kind, "--runs", "3", "--out", out, "--preset", "tiny", "--workers", "2"
    )
    assert code == 0 and "splits train 1, valid 1, test 1" in stdout, stdout + stderr
    manifest = read_manifest(out)
    assert [r["kind"] for r in manifest["runs"]] == [kind] * 3
    assert all(r["checks"]["passed"] for r in manifest["runs"])
    # Statistics are those of the train split, recomputed here from its trajectory.
    (train,) = [r for r in manifest["runs"] if r["split"] == "train"]
    with TrajectoryFile(out / train["file"]) as traj:
        assert traj.complete and traj.n_frames == train["n_frames"]
        frames = traj.read()
        walls = traj.walls
    moving = frames.active[1:] & frames.active[:-1]
    velocity = (frames.positions[1:] - frames.positions[:-1])[moving]
    stats = manifest["statistics"]
    np.testing.assert_allclose(stats["velocity"]["std"], velocity.std(axis=0), rtol=1e-9)
    assert len(stats["acceleration"]["mean"]) == 3 and stats["edge_length"]["std"] > 0
    # The walls carry LIGGGHTS's motion: a gate removed at the opening, or the drum's rotation.
    scenario = train["scenario"]
    if kind == "hopper":
        assert [w.name for w in walls] == ["hopper", "gate"]
        assert walls[1].removed_at == pytest.approx(scenario["settle_time"])
    else:
        assert walls[0].motion.rpm == scenario["rpm"]
        assert walls[0].motion.start == pytest.approx(frames.time[0])
    # Resumable: a second call runs nothing and leaves the runs untouched.
    marker = out / "runs" / train["name"] / DONE
    before = marker.stat().st_mtime_ns
    assert run_cli("generate", kind, "--runs", "3", "--out", out, "--preset", "tiny")[0] == 0
    assert marker.stat().st_mtime_ns == before
    code, info, _ = run_cli("info", out)
    assert code == 0 and "checks:      all passed" in info and "runs:        3" in info
    # Dumps are deleted once converted; a lost trajectory is then rebuilt by running again.
    assert not any(dump_files(marker.parent))
    (out / train["file"]).unlink()
    assert run_cli("generate", kind, "--runs", "3", "--out", out, "--preset", "tiny")[0] == 0
    assert (out / train["file"]).exists() and marker.stat().st_mtime_ns != before


def test_generate_without_liggghts_is_one_line(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    code, _, err = run_cli("generate", "hopper", "--out", tmp_path / "d", "--preset", "tiny")
    assert code == 1 and "apt-get install liggghts" in err and err.count("\n") == 1
    assert not (tmp_path / "d").exists()


@pytest.mark.liggghts
def test_sanity_checks_catch_a_particle_in_the_wall(tmp_path):
    scenario = TINY_DRUM.sample(4, MATERIAL)
    run_scenario(scenario, tmp_path / "drum", MATERIAL, TIMING)
    traj, checks = build_trajectory(scenario, tmp_path / "drum", MATERIAL, TIMING)
    assert checks["passed"]
    start = scenario.start_time(TIMING)
    traj.positions[5, 0] = [0.0, 0.0, -(scenario.radius - 0.5 * MATERIAL.radius)]  # overlaps r/2
    bad = sanity_checks(traj, scenario, MATERIAL, start)["containment"]
    assert not bad["passed"] and bad["max_overlap_m"] == pytest.approx(0.5 * MATERIAL.radius, 0.02)
    traj.positions[5, 0, 2] = -(scenario.radius + MATERIAL.radius)  # through the wall
    assert sanity_checks(traj, scenario, MATERIAL, start)["containment"]["escaped"] == 1
    traj.active[-1, 1] = False  # vanished inside the drum, not through a sink
    assert not sanity_checks(traj, scenario, MATERIAL, start)["bookkeeping"]["passed"]


@pytest.mark.liggghts
def test_one_run_under_mpi(tmp_path):
    scenario = TINY_HOPPER.sample(5, MATERIAL)
    run_scenarios([(scenario, tmp_path / "mpi")], MATERIAL, TIMING, mpi_procs=2)
    assert "on 2 procs" in (tmp_path / "mpi" / "screen.txt").read_text()
    traj = read_dumps(str(tmp_path / "mpi" / DUMP_PATTERN), dem_dt=TIMING.dem_dt)
    assert traj.n_particles == scenario.n_particles and traj.active[0].all()


def test_trajectory_of_an_emptied_hopper_ends_at_its_first_empty_frame():
    traj = make_trajectory(n_frames=8)
    traj.active[5:] = False
    trimmed = trim_empty_tail(traj)
    assert trimmed.n_frames == 6 and not trimmed.active[5].any() and trimmed.active[4].any()
    assert trim_empty_tail(make_trajectory()).n_frames == 6


@pytest.mark.liggghts
def test_material_from_a_config_file(run_cli, tmp_path):
    config = tmp_path / "glass.toml"
    config.write_text(
        "[material]\nradius = 0.0025\nfriction = 0.3\n[timing]\nsteps_per_frame = 20\n"
    )
    material, timing = load_dem_config(config)
    assert material.radius == 0.0025 and material.friction == 0.3 and material.density == 2500
    assert timing.frame_dt == pytest.approx(5e-4)
    out = tmp_path / "data"
    args = ("generate", "drum", "--runs", "3", "--out", out, "--preset", "tiny", "--config")
    assert run_cli(*args, config)[0] == 0
    manifest = read_manifest(out)
    assert manifest["material"]["radius"] == 0.0025 and manifest["timing"]["steps_per_frame"] == 20
    with TrajectoryFile(out / manifest["runs"][0]["file"]) as traj:
        assert np.allclose(traj.radius, 0.0025)
        assert np.allclose(np.diff(traj.time), 5e-4)
    config.write_text("[material]\nradiuss = 0.0025\n")
    code, _, err = run_cli(*args, config)
    assert code == 1 and "unknown Material keys ['radiuss']" in err
