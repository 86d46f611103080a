"""Comparison of a rollout with a reference, the reports and the CLI around them."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from bgnn_sim.analysis.compare import compare, paired_frames
from bgnn_sim.io.hdf5 import write_trajectory
from tests.helpers import LIGGGHTS_HOPPER, liggghts_hopper_run

DUMPS = str(LIGGGHTS_HOPPER / "post" / "dump*.liggghts.gz")
PNG = b"\x89PNG\r\n\x1a\n"


def test_paired_frames_align_physical_time():
    fine = np.arange(10) * 1e-3
    coarse = np.arange(5) * 2e-3 + 2e-3
    a, b = paired_frames(fine, coarse)
    assert a.tolist() == [2, 4, 6, 8]
    assert b.tolist() == [0, 1, 2, 3]
    a, b = paired_frames(coarse, fine)
    assert a.tolist() == [0, 1, 2, 3] and b.tolist() == [2, 4, 6, 8]
    a, b = paired_frames(fine, fine + 0.4e-3)  # within half a stride: same frames
    assert a.tolist() == b.tolist() == list(range(10))
    assert len(paired_frames(fine, fine + 1.0)[0]) == 0


def test_liggghts_against_itself_is_perfect():
    truth = liggghts_hopper_run()
    result = compare(truth, truth)
    m = result.metrics
    assert m["paired_frames"] == truth.n_frames
    for name in ("discharge_fraction_max_error", "t50_error_s", "mass_flow_rate_relative_error",
                 "kinetic_energy_relative_error", "wasserstein_max_m", "position_error_horizon_m",
                 "leakage_crossings", "reference_leakage_crossings"):  # fmt: skip
        assert m[name] == pytest.approx(0.0, abs=1e-12), name
    assert m["sinkhorn_mean_m"] == pytest.approx(0.0, abs=1e-6)
    assert m["overlap_mean_m"] == m["reference_overlap_mean_m"] > 0.0


def test_a_time_shifted_copy_shows_the_shift():
    truth = liggghts_hopper_run()
    shift = 0.01  # 10 frames later; the gate still opens at the same time
    late = replace(truth, time=truth.time + shift)
    m = compare(late, truth).metrics
    assert m["paired_frames"] == truth.n_frames - 10
    assert m["t50_error_s"] == pytest.approx(shift, abs=1e-9)
    assert m["t50_relative_error"] == pytest.approx(shift / compare(truth, truth).reference.t50())
    assert m["discharge_fraction_max_error"] > 0.05
    assert m["wasserstein_max_m"] > 1e-3
    assert m["position_error_horizon_m"] > 0
    assert m["leakage_crossings"] == 0


def test_coarser_reference_is_compared_at_its_own_times():
    truth = liggghts_hopper_run()
    coarse = truth.read()
    coarse = replace(coarse, time=truth.time[::2], positions=truth.positions[::2],
                     active=truth.active[::2], velocities=truth.velocities[::2])  # fmt: skip
    result = compare(truth, coarse)
    assert result.metrics["paired_frames"] == len(coarse.time)
    assert result.metrics["wasserstein_max_m"] == pytest.approx(0.0, abs=1e-12)
    assert result.metrics["discharge_fraction_max_error"] == 0.0


@pytest.fixture
def fixture_h5(tmp_path):
    path = tmp_path / "liggghts.h5"
    write_trajectory(path, liggghts_hopper_run())
    return path


def test_cli_compare_writes_the_report_and_checks_limits(run_cli, fixture_h5, tmp_path):
    out = tmp_path / "report"
    code, stdout, _ = run_cli("compare", fixture_h5, DUMPS, "--out", out)
    assert code == 0, stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["wasserstein_max_m"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["reference_leakage_crossings"] == 0  # the dumps got the rollout's walls
    for name in ("discharge", "kinetic_energy", "leakage", "distances"):
        assert (out / f"{name}.png").read_bytes().startswith(PNG)
        assert f"({name}.png)" in (out / "report.md").read_text()
    assert not (out / "mixing.png").exists()  # one particle type: no mixing

    before = (out / "metrics.json").read_text()
    code, _, err = run_cli("compare", fixture_h5, DUMPS, "--out", out)
    assert code == 1 and "exists" in err and err.count("\n") == 1
    assert (out / "metrics.json").read_text() == before

    limits = ["--fail-above", "wasserstein_max_m=1e-6", "--fail-above", "leakage_crossings=0"]
    code, _, err = run_cli("compare", fixture_h5, DUMPS, "--out", out, "--force", *limits)
    assert code == 0, err
    code, _, err = run_cli("compare", fixture_h5, fixture_h5, "--out", out, "--force",
                           "--fail-above", "paired_frames=10")  # fmt: skip
    assert code == 3 and "paired_frames = 141 > 10" in err  # 3: the check ran and failed
    code, _, err = run_cli("compare", fixture_h5, fixture_h5, "--out", out, "--force",
                           "--fail-above", "no_such_metric=1")  # fmt: skip
    assert code == 2 and "unknown metric 'no_such_metric'" in err  # 2: a usage error


def test_cli_analyze_a_real_drum(run_cli, tiny_drum_dataset, tmp_path):
    out = tmp_path / "drum"
    run = tiny_drum_dataset / "trajectories" / "drum_000.h5"
    code, stdout, err = run_cli("analyze", run, "--out", out, "--mixing-bins", "4")
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["mixing_entropy_final"] <= np.log(2)
    assert metrics["repose_angle_deg"] is None  # 0.08 turns: never steady, so no mean
    assert metrics["leakage_crossings"] == 0 and metrics["leakage_outside_max"] == 0
    for name in ("mixing", "drum", "kinetic_energy", "leakage"):
        assert (out / f"{name}.png").read_bytes().startswith(PNG)
    assert not (out / "discharge.png").exists()
    assert "mixing_entropy_final" in stdout


def test_distances_skip_frames_where_a_hopper_has_emptied():
    truth = liggghts_hopper_run()
    emptied = replace(truth, active=truth.active.copy())
    emptied.active[len(truth.time) // 2 :] = False  # everything sunk half way
    comparison = compare(truth, emptied, distance_frames=4)
    assert len(comparison.distance_time) == 4
    assert comparison.distance_time.max() < truth.time[len(truth.time) // 2]
    assert comparison.metrics["wasserstein_mean_m"] >= 0
