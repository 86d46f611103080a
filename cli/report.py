"""Human-readable summaries for `bgnn info`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bgnn_sim.dem.dataset import read_manifest
from bgnn_sim.errors import BgnnError
from bgnn_sim.geometry.mesh import MESH_SUFFIXES, load_walls, summarize_walls
from bgnn_sim.io.hdf5 import TRAJECTORY_SUFFIXES, TrajectoryFile


def describe(path: Path, scale: float = 1.0) -> list[str]:
    """Lines describing a mesh or trajectory file."""
    suffix = path.suffix.lower()
    if path.is_dir():
        return describe_dataset(path)
    if suffix in MESH_SUFFIXES:
        return describe_mesh(path, scale)
    if suffix in TRAJECTORY_SUFFIXES:
        return describe_trajectory(path)
    raise BgnnError(
        f"{path}: unknown file type; expected a mesh {MESH_SUFFIXES} "
        f"or a trajectory {TRAJECTORY_SUFFIXES}"
    )


def describe_dataset(path: Path) -> list[str]:
    manifest = read_manifest(path)
    runs = manifest["runs"]
    particles = [r["n_particles"] for r in runs]
    frames = [r["n_frames"] for r in runs]
    kinds = sorted({r["kind"] for r in runs})
    failed = [r["name"] for r in runs if not r["checks"]["passed"]]
    stats = manifest["statistics"]
    return [
        f"dataset:     {path} (preset {manifest['preset']}, seed {manifest['seed']})",
        f"runs:        {len(runs)} ({', '.join(kinds)})",
        f"splits:      {split_sizes(manifest)}",
        f"particles:   {min(particles)} .. {max(particles)} per run",
        f"frames:      {sum(frames)} in all, {min(frames)} .. {max(frames)} per run",
        f"checks:      {'all passed' if not failed else 'FAILED for ' + ', '.join(failed)}",
        f"velocity:    std {_vec(np.array(stats['velocity']['std']))} m/frame",
        f"accel.:      std {_vec(np.array(stats['acceleration']['std']))} m/frame^2",
    ]


def split_sizes(manifest: dict) -> str:
    return ", ".join(f"{name} {len(runs)}" for name, runs in manifest["splits"].items())


def describe_mesh(path: Path, scale: float) -> list[str]:
    walls = load_walls(path, scale)
    summary = summarize_walls(walls)
    lo, hi = summary.bounds
    volume = f"{summary.volume:.6g} m^3" if summary.volume is not None else "n/a (open mesh)"
    return [
        f"mesh:        {path}",
        f"bodies:      {', '.join(w.name for w in walls)}",
        f"triangles:   {summary.n_triangles}",
        f"bounds (m):  min {_vec(lo)}  max {_vec(hi)}",
        f"extent (m):  {_vec(hi - lo)}",
        f"watertight:  {'yes' if summary.watertight else 'no'}",
        f"volume:      {volume}",
    ]


def describe_trajectory(path: Path) -> list[str]:
    with TrajectoryFile(path) as traj:
        lines = [
            f"trajectory:  {path}",
            f"status:      {'complete' if traj.complete else 'INCOMPLETE (writer stopped)'}",
            f"particles:   {traj.n_particles} (types {sorted(set(traj.types.tolist()))})",
            f"frames:      {traj.n_frames}",
        ]
        if traj.n_frames:
            step = np.median(np.diff(traj.time)) if traj.n_frames > 1 else float("nan")
            last = traj.frame(-1)
            lines += [
                f"time (s):    {traj.time[0]:g} .. {traj.time[-1]:g} (frame step {step:g})",
                f"active:      {int(last.active.sum())} at the last frame",
            ]
        walls = ", ".join(f"{w.name} ({len(w.faces)} triangles)" for w in traj.walls)
        lines += [
            f"radius (m):  {traj.radius.min():g} .. {traj.radius.max():g}",
            f"velocities:  {'stored' if traj.has_velocities else 'not stored'}",
            f"walls:       {walls or 'none'}",
            f"source:      {traj.attrs.get('source', 'unknown')}",
        ]
    return lines


def _vec(v: np.ndarray) -> str:
    return "(" + ", ".join(f"{x:.4g}" for x in v) + ")"
