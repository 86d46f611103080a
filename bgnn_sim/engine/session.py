"""`bgnn rollout`: load a model and an initial state, roll out, stream to HDF5."""

from __future__ import annotations

from pathlib import Path

from bgnn_sim.engine.rollout import rollout_to_file
from bgnn_sim.engine.state import scene_from_trajectory, state_from_trajectory
from bgnn_sim.geometry.mesh import load_walls
from bgnn_sim.io.hdf5 import TRAJECTORY_SUFFIXES, TrajectoryFile
from bgnn_sim.io.liggghts import read_dumps
from bgnn_sim.io.outputs import check_writable
from bgnn_sim.models.simulator import BGNNSimulator
from bgnn_sim.training.checkpoint import Checkpoint, load_checkpoint
from bgnn_sim.training.distributed import resolve_device


def simulator_from_checkpoint(checkpoint: Checkpoint, device: str = "auto") -> BGNNSimulator:
    """A trained BGNN ready to roll out on `device`."""
    target = resolve_device(device)
    cutoff = checkpoint.config.cutoff_radii * checkpoint.data["material"]["radius"]
    model = checkpoint.build_model(target)
    return BGNNSimulator(model, checkpoint.statistics, cutoff, checkpoint.config.graph_backend)


def load_initial(init: str, mesh: Path | None, dem_dt: float):
    """A trajectory file, or LIGGGHTS dumps (walls from `mesh`), to start a rollout from."""
    if Path(init).suffix.lower() in TRAJECTORY_SUFFIXES:
        return TrajectoryFile(init)
    trajectory = read_dumps(init, dem_dt=dem_dt)
    if mesh is not None:
        trajectory.walls = load_walls(mesh)
    return trajectory


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
) -> None:
    """Roll a trained model out from frame `start` of `init` into `output` (see bgnn rollout)."""
    check_writable(Path(output), force)
    trained = load_checkpoint(checkpoint)
    simulator = simulator_from_checkpoint(trained, device)
    source = load_initial(init, mesh, trained.data["timing"]["dem_dt"])
    state = state_from_trajectory(source, start, simulator.history)
    scene = scene_from_trajectory(source)
    state = state.to(next(simulator.model.parameters()).device)
    attrs = {"source": "bgnn rollout", "checkpoint": str(checkpoint), "init": str(init)}
    if progress is None:
        rollout_to_file(simulator, scene, state, frames, output, attrs, force)
        return
    with progress(frames, "rollout") as advance:
        rollout_to_file(simulator, scene, state, frames, output, attrs, force,
                        on_frame=lambda s: advance(f"{int(s.active.sum())} particles"))  # fmt: skip
