"""`bgnn generate`: draw scenarios, run LIGGGHTS, build the dataset folder. Resumable."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from bgnn_sim.dem.config import Material, Timing
from bgnn_sim.dem.dataset import (
    FORMAT,
    SPLITS,
    VERSION,
    assign_splits,
    build_trajectory,
    dump_files,
    normalisation_stats,
    remove_dumps,
    save_run,
    write_manifest,
)
from bgnn_sim.dem.deck import deck_text
from bgnn_sim.dem.runner import DONE, is_done, run_scenarios
from bgnn_sim.dem.scenarios import PRESETS
from bgnn_sim.errors import DemError
from bgnn_sim.io.hdf5 import TrajectoryFile

KINDS = ("hopper", "drum", "mixed")


def plan_runs(kind: str, runs: int, seed: int, preset: str, material: Material) -> dict:
    """Run name -> scenario; a mixed dataset alternates hopper and drum runs."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} not in {KINDS}")
    if preset not in PRESETS:
        raise ValueError(f"preset {preset!r} not in {sorted(PRESETS)}")
    hopper_family, drum_family = PRESETS[preset]
    plan = {}
    for i in range(runs):
        this = kind if kind != "mixed" else ("hopper", "drum")[i % 2]
        family = hopper_family if this == "hopper" else drum_family
        plan[f"{this}_{i:03d}"] = family.sample(seed + i, material)
    return plan


def generate_dataset(
    kind: str,
    runs: int,
    out_dir: str | Path,
    workers: int = 1,
    seed: int = 0,
    preset: str = "default",
    material: Material | None = None,
    timing: Timing | None = None,
    on_run_finished: Callable[[Path, DemError | None], None] | None = None,
    mpi_procs: int = 1,
    keep_dumps: bool = False,
) -> dict:
    """Generate (or complete) a dataset; returns its manifest.

    Finished LIGGGHTS runs and already-built trajectories are kept; a run whose deck changed or
    that did not finish is redone. `mpi_procs` > 1 runs each LIGGGHTS run under mpirun. The
    text dumps of a run are deleted once its trajectory is written, unless `keep_dumps` (a drum
    run's dumps take gigabytes; the compressed trajectory holds the same numbers).
    """
    material, timing = material or Material(), timing or Timing()
    out_dir = Path(out_dir)
    plan = plan_runs(kind, runs, seed, preset, material)
    run_dirs = {name: out_dir / "runs" / name for name in plan}
    files = {name: out_dir / "trajectories" / f"{name}.h5" for name in plan}
    (out_dir / "trajectories").mkdir(parents=True, exist_ok=True)

    def finished(run_dir: Path, error: DemError | None) -> None:
        name = run_dir.name
        if error is None and not files[name].exists():
            traj, _ = build_trajectory(plan[name], run_dir, material, timing)
            save_run(traj, files[name])
            if not keep_dumps:
                remove_dumps(run_dir)
        if on_run_finished is not None:
            on_run_finished(run_dir, error)

    for name, run_dir in run_dirs.items():
        if not is_done(run_dir, deck_text(plan[name], material, timing)):
            files[name].unlink(missing_ok=True)  # its run is redone: so is its trajectory
        elif not files[name].exists() and not any(dump_files(run_dir)):
            (run_dir / DONE).unlink()  # converted, then the trajectory was lost: run again
    pairs = [(plan[name], run_dirs[name]) for name in plan]
    run_scenarios(pairs, material, timing, workers, finished, mpi_procs)
    return _write_dataset_manifest(out_dir, plan, files, material, timing, seed, preset)


def _write_dataset_manifest(out_dir, plan, files, material, timing, seed, preset) -> dict:
    split_of = assign_splits(list(plan), seed)
    entries = []
    for name, scenario in plan.items():
        with TrajectoryFile(files[name]) as traj:
            entries.append(
                {
                    "name": name,
                    "kind": scenario.kind,
                    "split": split_of[name],
                    "file": str(files[name].relative_to(out_dir)),
                    "n_particles": traj.n_particles,
                    "n_frames": traj.n_frames,
                    "scenario": traj.attrs["scenario"],
                    "checks": traj.attrs["checks"],
                }
            )
    train = [files[e["name"]] for e in entries if e["split"] == "train"]
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "preset": preset,
        "seed": seed,
        "material": dataclasses.asdict(material),
        "timing": dataclasses.asdict(timing),
        "splits": {s: [e["name"] for e in entries if e["split"] == s] for s in SPLITS},
        "statistics": normalisation_stats(train, material),
        "runs": entries,
    }
    write_manifest(out_dir, manifest)
    return manifest
