"""`bgnn rollout`: load a model and an initial state, roll out, stream to HDF5."""

from __future__ import annotations

from pathlib import Path

from bgnn_sim.device import use_threads
from bgnn_sim.engine.guard import DEFAULT_WALL_GUARD
from bgnn_sim.engine.rollout import rollout_to_file
from bgnn_sim.engine.state import scene_from_trajectory, state_at
from bgnn_sim.io.hdf5 import TrajectoryFile
from bgnn_sim.io.outputs import check_writable
from bgnn_sim.io.sources import open_source
from bgnn_sim.models.loading import load_model
from bgnn_sim.trajectory import SCENE_ATTRS


def rollout_session(
    checkpoint: Path,
    init: str,
    frames: int,
    output: Path,
    start: int = -1,
    mesh: Path | None = None,
    device: str = "auto",
    force: bool = False,
    progress=None,
    wall_guard: bool = True,
    threads: int = 0,
    compile: bool = False,
    seed: int = 0,
    precision: str = "float32",
) -> int | None:
    """Roll a trained model out from frame `start` of `init` into `output` (see bgnn rollout);
    returns the wall guard's corrections over the run (None with `wall_guard` off: the raw
    model). `threads`: torch CPU threads (0: all cores); `compile`, `seed` (LaM-SLidE's
    identifiers and sampling noise: one member of its ensemble), `precision` (a BGNN's
    processor): see load_model."""
    check_writable(Path(output), force)
    use_threads(threads)
    trained = load_model(checkpoint, device, seed, compile, precision)
    simulator = trained.backend
    timing = trained.timing
    source = open_source(init, mesh=mesh, dem_dt=timing.dem_dt)
    state = state_at(source, init, start, timing.frame_dt, simulator.history)
    scene = scene_from_trajectory(source, timing.frame_dt)
    state = state.to(trained.device)
    attrs = {key: source.attrs[key] for key in SCENE_ATTRS if key in source.attrs}
    attrs |= {"source": "bgnn rollout", "checkpoint": str(checkpoint), "init": str(init)}
    guard = DEFAULT_WALL_GUARD if wall_guard else None
    if progress is None:
        rollout_to_file(simulator, scene, state, frames, output, attrs, force, wall_guard=guard)
    else:
        with progress(frames, "rollout") as advance:
            rollout_to_file(simulator, scene, state, frames, output, attrs, force,
                            on_frame=lambda s: advance(f"{int(s.active.sum())} particles"),
                            wall_guard=guard)  # fmt: skip
    with TrajectoryFile(output) as written:
        corrections = written.guard_corrections
    return None if corrections is None else int(corrections.sum())
