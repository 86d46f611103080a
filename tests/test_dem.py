"""Scenario families, deck writing and the LIGGGHTS runner, with the real `liggghts`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bgnn_sim.dem.config import Material, Timing
from bgnn_sim.dem.deck import DUMP_PATTERN, liggghts_seed, write_deck
from bgnn_sim.dem.runner import DONE, run_deck, run_scenario, run_scenarios
from bgnn_sim.dem.scenarios import PRESETS, HopperFamily
from bgnn_sim.errors import DemError
from bgnn_sim.io.liggghts import read_dumps

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
