"""Benchmark: wall contacts of particles filling a drum (closest_point_on_triangles).

A closed cylinder (drum) of radius 5 cm and length 10 cm, subdivided to about `--triangles`
triangles, is filled with `--points` points drawn uniformly inside it; every (point, triangle)
pair within 8 mm (4 radii of 2 mm particles) is found. Reports the median wall-clock time of
`--repeats` runs, the process's peak resident memory and the number of pairs.

    python benchmarks/closest_point.py --device cpu --points 100000 --triangles 20000
"""

from __future__ import annotations

import argparse
import math
import resource
import statistics
import sys
import time

import numpy as np
import torch
import trimesh

from bgnn_sim.geometry.proximity import closest_point_on_triangles

RADIUS = 0.05
LENGTH = 0.1
CUTOFF = 0.008


def drum_triangles(n_triangles: int) -> np.ndarray:
    """[F, 3, 3] closed cylinder with about `n_triangles` triangles (4 * sections * 4**k)."""
    subdivisions = max(0, round(math.log(max(n_triangles, 64) / 64, 4)))
    sections = max(8, round(n_triangles / (4 * 4**subdivisions)))
    mesh = trimesh.creation.cylinder(radius=RADIUS, height=LENGTH, sections=sections)
    vertices, faces = mesh.vertices, mesh.faces
    for _ in range(subdivisions):
        vertices, faces = trimesh.remesh.subdivide(vertices, faces)
    return vertices[faces]


def points_in_drum(n_points: int, seed: int = 0) -> np.ndarray:
    """[N, 3] points uniform inside the drum (axis z, centred at the origin)."""
    rng = np.random.default_rng(seed)
    radius = RADIUS * np.sqrt(rng.random(n_points))
    angle = 2 * np.pi * rng.random(n_points)
    z = LENGTH * (rng.random(n_points) - 0.5)
    return np.stack((radius * np.cos(angle), radius * np.sin(angle), z), axis=1)


def peak_rss_mib() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--triangles", type=int, default=20_000)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--chunk-size", type=int, default=1 << 17)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    dtype = getattr(torch, args.dtype)
    triangles = torch.as_tensor(drum_triangles(args.triangles), dtype=dtype, device=args.device)
    points = torch.as_tensor(points_in_drum(args.points), dtype=dtype, device=args.device)
    rss_before = peak_rss_mib()
    times = []
    for _ in range(args.repeats):
        if points.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        contacts = closest_point_on_triangles(points, triangles, CUTOFF, args.chunk_size)
        if points.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)

    near = torch.unique(contacts.point_index).numel()
    print(f"device={args.device} dtype={args.dtype} threads={torch.get_num_threads()}")
    print(f"points={len(points)} triangles={len(triangles)} cutoff={CUTOFF} m")
    print(f"pairs={len(contacts.point_index)} points_with_contacts={near}")
    runs = ", ".join(f"{t:.3f}" for t in times)
    print(f"time median={statistics.median(times):.3f} s (runs: {runs})")
    print(f"peak RSS={peak_rss_mib():.0f} MiB (before the runs: {rss_before:.0f} MiB)")
    if points.is_cuda:
        print(f"peak CUDA memory={torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
