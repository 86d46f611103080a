"""`bgnn rollout`: load a model and an initial state, roll out, stream to HDF5."""

from __future__ import annotations

from pathlib import Path

from bgnn_sim.engine.rollout import rollout_to_file
from bgnn_sim.engine.state import scene_from_trajectory, state_from_trajectory
from bgnn_sim.io.outputs import check_writable
from bgnn_sim.io.sources import open_source
from bgnn_sim.models.simulator import BGNNSimulator
from bgnn_sim.training.checkpoint import Checkpoint, load_checkpoint
from bgnn_sim.training.distributed import resolve_device
from bgnn_sim.trajectory import SCENE_ATTRS


def simulator_from_checkpoint(checkpoint: Checkpoint, device: str = "auto") -> BGNNSimulator:
    """A trained BGNN ready to roll out on `device`."""
    target = resolve_device(device)
    cutoff = checkpoint.config.cutoff_radii * checkpoint.data["material"]["radius"]
    model = checkpoint.build_model(target)
    return BGNNSimulator(model, checkpoint.statistics, cutoff, checkpoint.config.graph_backend)


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
    source = open_source(init, mesh=mesh, dem_dt=trained.data["timing"]["dem_dt"])
    state = state_from_trajectory(source, start, simulator.history)
    scene = scene_from_trajectory(source)
    state = state.to(next(simulator.model.parameters()).device)
    attrs = {key: source.attrs[key] for key in SCENE_ATTRS if key in source.attrs}
    attrs |= {"source": "bgnn rollout", "checkpoint": str(checkpoint), "init": str(init)}
    if progress is None:
        rollout_to_file(simulator, scene, state, frames, output, attrs, force)
        return
    with progress(frames, "rollout") as advance:
        rollout_to_file(simulator, scene, state, frames, output, attrs, force,
                        on_frame=lambda s: advance(f"{int(s.active.sum())} particles"))  # fmt: skip
