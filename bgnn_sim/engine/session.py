"""`bgnn rollout`: load a model and an initial state, roll out, stream to HDF5."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from bgnn_sim.dem.config import Timing
from bgnn_sim.engine.guard import DEFAULT_WALL_GUARD
from bgnn_sim.engine.rollout import Backend, WindowBackend, rollout_to_file
from bgnn_sim.engine.state import (
    ParticleState,
    frame_stride,
    scene_from_trajectory,
    state_from_trajectory,
)
from bgnn_sim.errors import ConfigError
from bgnn_sim.io.hdf5 import TrajectoryFile
from bgnn_sim.io.outputs import check_writable
from bgnn_sim.io.sources import open_source
from bgnn_sim.models.simulator import BGNNSimulator
from bgnn_sim.training.checkpoint import Checkpoint, checkpoint_from_payload, read_payload
from bgnn_sim.training.distributed import resolve_device, use_threads
from bgnn_sim.trajectory import SCENE_ATTRS


def simulator_from_checkpoint(checkpoint: Checkpoint, device: str = "auto") -> BGNNSimulator:
    """A trained BGNN ready to roll out on `device`."""
    target = resolve_device(device)
    spec = checkpoint.config.graph_spec(checkpoint.data["material"]["radius"])
    model = checkpoint.build_model(target)
    frame_dt = Timing(**checkpoint.data["timing"]).frame_dt
    return BGNNSimulator(
        model, checkpoint.statistics, spec, frame_dt, checkpoint.config.graph_backend
    )


def state_at(source, name: str, start: int, frame_dt: float, history: int) -> ParticleState:
    """Frame `start` of `source` (a trajectory, read from `name`; negative: from the end) with
    `history` model frames of `frame_dt` behind it; ConfigError for a frame out of range or one
    without a particle present in it and its history (a bed not yet inserted, a hopper already
    empty)."""
    count = source.n_frames
    if not -count <= start < count:
        raise ConfigError(f"--start {start}: {name} has {count} frames (0 to {count - 1}, or "
                          f"-{count} to -1 from the end)")  # fmt: skip
    stride = frame_stride(source, frame_dt)
    state = state_from_trajectory(source, start, history, stride=stride)
    if not bool(state.active.any()):
        frame = start % count
        present = int(source.read(frame, frame + 1).active.sum())
        found = "holds no particle" if not present else (
            f"holds {present} particles, none of them present in the {history} model frames "
            "before it as well")  # fmt: skip
        raise ConfigError(f"--init {name}: frame {frame} (t = {state.time:.6g} s) {found}; "
                          "choose a frame with --start F")  # fmt: skip
    return state


@dataclass
class TrainedModel:
    """A checkpoint ready to roll out: its method ("bgnn" or "lamslide"), the engine backend,
    what it was trained on (`data`: material, timing, kinds, scenarios), its training steps and
    the device it runs on."""

    method: str
    backend: Backend | WindowBackend
    data: dict
    step: int
    device: torch.device

    @property
    def timing(self) -> Timing:
        """The DEM step and the model's frame (`timing.frame_dt`, s)."""
        return Timing(**self.data["timing"])


def load_model(
    path: str | Path, device: str = "auto", seed: int = 0, compile: bool = False
) -> TrainedModel:
    """A BGNN checkpoint or a LaM-SLidE stage-2 checkpoint (told apart by their format tag).
    LaM-SLidE runs on the CPU for now; `seed` draws its identifiers and sampling noise.
    `compile`: a BGNN's network through torch.compile (see BGNNSimulator.compile)."""
    from bgnn_sim.training import lamslide

    payload = read_payload(path)  # read once, then told apart
    if isinstance(payload, dict) and payload.get("format") == lamslide.DYNAMICS_FORMAT:
        if compile:
            raise ConfigError(f"--compile is for BGNN models; {path} is a LaM-SLidE model")
        backend = lamslide.lamslide_from_payload(payload, str(path), seed)
        return TrainedModel("lamslide", backend, payload["data"], payload["step"],
                            torch.device("cpu"))  # fmt: skip
    trained = checkpoint_from_payload(payload, path)
    backend = simulator_from_checkpoint(trained, device)
    if compile:
        backend.compile()
    return TrainedModel(
        "bgnn", backend, trained.data, trained.step, next(backend.model.parameters()).device
    )


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
) -> int | None:
    """Roll a trained model out from frame `start` of `init` into `output` (see bgnn rollout);
    returns the wall guard's corrections over the run (None with `wall_guard` off: the raw
    model). `threads`: torch CPU threads (0: all cores); `compile`: see load_model."""
    check_writable(Path(output), force)
    use_threads(threads)
    trained = load_model(checkpoint, device, compile=compile)
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
