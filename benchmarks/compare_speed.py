"""Benchmark: time of `bgnn compare` (reading, analysis, distances, plots, report) on a pair.

The pair is a real LIGGGHTS run (its first `--frames` frames) and the same run delayed by
`--shift` seconds (make the dataset with `bgnn generate drum --out data/drum --runs 40
--seed 1000`), both written to temporary trajectory files, so that every curve and distance
has real work to do. Times each part of the analysis, then the whole comparison as the CLI
runs it.

    python benchmarks/compare_speed.py data/drum/trajectories/drum_005.h5 --frames 2000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bgnn_sim.analysis.distances import kinetic_energy
from bgnn_sim.analysis.leakage import leakage_report
from bgnn_sim.analysis.mixing import mixing_curve
from bgnn_sim.analysis.summary import AnalysisOptions
from bgnn_sim.app.analyze import compare_session
from bgnn_sim.io.hdf5 import TrajectoryFile, write_trajectory


def timed(label: str, work):
    start = time.perf_counter()
    result = work()
    print(f"{label:<28} {time.perf_counter() - start:7.2f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trajectory", help="a trajectory file (.h5), e.g. a dataset run")
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--shift", type=float, default=0.005, help="delay of the copy (s)")
    args = parser.parse_args()

    with TrajectoryFile(args.trajectory) as source:
        run = timed("read", lambda: source.read(0, args.frames))
    late = replace(run, time=run.time + args.shift)
    print(f"{run.n_particles} particles, {run.n_frames} frames, {len(run.walls)} walls")
    timed("mixing curve", lambda: mixing_curve(run))
    timed("kinetic energy", lambda: kinetic_energy(run))
    timed("leakage", lambda: leakage_report(run))
    work = Path(tempfile.mkdtemp())
    write_trajectory(work / "reference.h5", run)
    write_trajectory(work / "late.h5", late)
    options = AnalysisOptions()
    metrics = timed("bgnn compare (everything)", lambda: compare_session(
        str(work / "late.h5"), str(work / "reference.h5"), work / "report", options, 2.5e-5
    ))  # fmt: skip
    for name in ("paired_frames", "wasserstein_mean_m", "mixing_entropy_max_error"):
        print(f"  {name} = {metrics.get(name)}")


if __name__ == "__main__":
    main()
