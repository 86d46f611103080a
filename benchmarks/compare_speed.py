"""Benchmark: time of a full comparison (what `bgnn compare` computes) of a trajectory pair.

The pair is a real LIGGGHTS run (its first `--frames` frames) and the same run delayed by
`--shift` seconds, so that every curve and distance has real work to do. Times the reading of
both, each part of the analysis, and the whole `compare` call.

    python benchmarks/compare_speed.py /work/data/drum/trajectories/drum_005.h5 --frames 2000
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from bgnn_sim.analysis.compare import compare
from bgnn_sim.analysis.distances import kinetic_energy
from bgnn_sim.analysis.leakage import leakage_report
from bgnn_sim.analysis.mixing import mixing_curve
from bgnn_sim.io.hdf5 import TrajectoryFile


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
    result = timed("compare (everything)", lambda: compare(late, run))
    for name in ("paired_frames", "wasserstein_mean_m", "mixing_entropy_max_error"):
        print(f"  {name} = {result.metrics.get(name)}")


if __name__ == "__main__":
    main()
