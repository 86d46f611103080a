"""Datasets: LIGGGHTS runs -> one HDF5 trajectory per run -> a folder with a manifest.

Layout of a dataset folder:

    manifest.json            format, version, material, timing, runs (scenario, split, file,
                             sanity checks), splits, normalisation statistics (train split)
    trajectories/NAME.h5     one trajectory per run (bgnn-sim-trajectory format)
    runs/NAME/               the LIGGGHTS working folder (deck, walls.stl, dumps, log)
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from bgnn_sim.dem.checks import sanity_checks
from bgnn_sim.dem.config import Material, Timing
from bgnn_sim.dem.deck import DUMP_PATTERN
from bgnn_sim.errors import DatasetError
from bgnn_sim.io.hdf5 import TrajectoryFile, write_trajectory
from bgnn_sim.io.liggghts import read_dumps
from bgnn_sim.io.outputs import write_atomically
from bgnn_sim.trajectory import Trajectory

FORMAT = "bgnn-sim-dataset"
VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "valid", "test")
# Edge statistics: neighbours within this many radii (BGNN's hopper cutoff), on a subsample.
CUTOFF_RADII = 4.0
_STAT_FRAMES_PER_RUN = 20


def build_trajectory(
    scenario, run_dir: Path, material: Material, timing: Timing
) -> tuple[Trajectory, dict]:
    """Read a finished run's dumps into a trajectory with walls and metadata; run the checks."""
    traj = trim_empty_tail(read_dumps(str(run_dir / DUMP_PATTERN), dem_dt=timing.dem_dt))
    traj.walls = scenario.walls(timing)
    traj.sinks = scenario.sinks()
    start = scenario.start_time(timing)
    checks = sanity_checks(traj, scenario, material, start)
    traj.attrs.update(
        kind=scenario.kind,
        scenario=_jsonable(scenario),
        material=dataclasses.asdict(material),
        timing=dataclasses.asdict(timing),
        start_time=start,
        checks=checks,
    )
    return traj, checks


def dump_files(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob(DUMP_PATTERN))


def remove_dumps(run_dir: Path) -> None:
    for path in dump_files(run_dir):
        path.unlink()


def trim_empty_tail(traj: Trajectory) -> Trajectory:
    """Drop the frames after a hopper has emptied, keeping the first empty one."""
    occupied = np.flatnonzero(traj.active.any(axis=1))
    end = min(traj.n_frames, occupied[-1] + 2) if len(occupied) else 1
    if end == traj.n_frames:
        return traj
    velocities = None if traj.velocities is None else traj.velocities[:end]
    return dataclasses.replace(
        traj, time=traj.time[:end], positions=traj.positions[:end], active=traj.active[:end],
        velocities=velocities,
    )  # fmt: skip


def assign_splits(names: list[str], seed: int) -> dict[str, str]:
    """Split runs into train/valid/test: 1/8 each for valid and test (at least one each)."""
    order = np.random.default_rng(seed).permutation(len(names))
    n_hold = max(1, round(len(names) / 8))
    split_of = {}
    for rank, k in enumerate(order):
        split_of[names[k]] = "test" if rank < n_hold else "valid" if rank < 2 * n_hold else "train"
    return split_of


def normalisation_stats(files: list[Path], material: Material, stride: int = 1) -> dict:
    """Mean and std per axis of velocities and accelerations (m per frame, m per frame^2) and of
    edge vectors (m) and lengths between neighbours within CUTOFF_RADII radii. With a `stride`
    s, a frame is s recorded frames (a model that steps s frames at a time)."""
    velocities, accelerations, edges = [], [], []
    cutoff = CUTOFF_RADII * material.radius
    s = stride
    for path in files:
        with TrajectoryFile(path) as traj:
            frames = traj.read()
        x, active = frames.positions, frames.active
        # Only particles present in all three frames give a true acceleration.
        ok = active[2 * s :] & active[s:-s] & active[: -2 * s]
        velocities.append((x[s:] - x[:-s])[active[s:] & active[:-s]])
        accelerations.append((x[2 * s :] - 2 * x[s:-s] + x[: -2 * s])[ok])
        for t in np.linspace(0, frames.n_frames - 1, _STAT_FRAMES_PER_RUN).astype(int):
            points = x[t][active[t]]
            pairs = cKDTree(points).query_pairs(cutoff, output_type="ndarray")
            d = points[pairs[:, 0]] - points[pairs[:, 1]]
            edges.append(np.concatenate([d, -d]))  # both directions, as in the graph
    edge = np.concatenate(edges)
    return {
        "velocity": _moments(np.concatenate(velocities)),
        "acceleration": _moments(np.concatenate(accelerations)),
        "edge": _moments(edge),
        "edge_length": _moments(np.linalg.norm(edge, axis=1)),
        "cutoff_m": cutoff,
        "units": "velocity m/frame, acceleration m/frame^2, edge m",
    }


def write_manifest(out_dir: Path, manifest: dict) -> None:
    """Replace the manifest atomically (a kill never leaves half a manifest)."""
    text = json.dumps(manifest, indent=2)
    write_atomically(out_dir / MANIFEST, lambda tmp: tmp.write_text(text), force=True)


def read_manifest(out_dir: Path) -> dict:
    """The manifest of a dataset folder; DatasetError when there is none or it is foreign."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise DatasetError(f"{out_dir}: not a dataset folder (no {MANIFEST}; see bgnn generate)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: corrupt manifest ({exc})") from exc
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise DatasetError(f"{path}: not a {FORMAT} manifest of version {VERSION}")
    return manifest


def save_run(traj: Trajectory, path: Path) -> None:
    """Write a run's trajectory atomically, replacing an earlier build of the same run."""
    write_atomically(path, lambda tmp: write_trajectory(tmp, traj, force=True), force=True)


def _moments(values: np.ndarray) -> dict:
    values = np.asarray(values, dtype=np.float64)
    return {"mean": values.mean(axis=0).tolist(), "std": values.std(axis=0).tolist()}


def _jsonable(scenario) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(scenario)))


def strided_statistics(dataset_dir: Path, manifest: dict, stride: int) -> dict:
    """The manifest's normalisation statistics for a model that steps `stride` recorded frames
    (recomputed from the train split's runs; the manifest's own for a stride of 1)."""
    if stride == 1:
        return manifest["statistics"]
    files = [Path(dataset_dir) / r["file"] for r in manifest["runs"] if r["split"] == "train"]
    return normalisation_stats(files, Material(**manifest["material"]), stride)


def training_description(dataset_dir: Path, manifest: dict, stride: int = 1) -> dict:
    """What a checkpoint records of the data it was trained on: the dataset's folder name (not
    its path: checkpoints are shipped to other machines), its material and timing (the model's
    frame: `stride` recorded frames), its splits, the kinds of runs and the scenarios of the
    training runs (the ranges a simulation is checked against)."""
    timing = manifest["timing"]
    return {
        "dataset": Path(dataset_dir).name,
        "preset": manifest["preset"],
        "material": manifest["material"],
        "timing": {**timing, "steps_per_frame": timing["steps_per_frame"] * stride},
        "runs": manifest["splits"],
        "kinds": sorted({r["kind"] for r in manifest["runs"]}),
        "scenarios": [r["scenario"] for r in manifest["runs"] if r["split"] == "train"],
    }
