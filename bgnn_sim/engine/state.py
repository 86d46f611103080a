"""What a rollout advances: the scene (walls, sinks, frame step) and the particles' state."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from bgnn_sim.errors import BgnnError, ConfigError
from bgnn_sim.geometry.sink import Sink as Sink  # a region of the scene
from bgnn_sim.geometry.wall import TIME_TOLERANCE, Wall
from bgnn_sim.io.hdf5 import TrajectoryFile
from bgnn_sim.trajectory import Trajectory


@dataclass
class Scene:
    """The container and the rules of the rollout.

    Attributes:
        walls: walls with their motion (gates included).
        frame_dt: seconds per frame.
        sinks: regions that remove particles.
    """

    walls: list[Wall]
    frame_dt: float
    sinks: list[Sink] = field(default_factory=list)


@dataclass
class ParticleState:
    """Particles at the end of a short position history.

    Attributes:
        ids: [N] int64 particle ids.
        types: [N] int64 particle types (LIGGGHTS numbering, from 1).
        radius: [N] float radii (m).
        history: [H+1, N, 3] positions (m), oldest first; the last row is "now".
        active: [N] bool, particles still in the simulation.
        time: s, time of the last row of `history`.
        guard_corrections: particles the wall guard moved to make the last row; None when the
            guard did not act on it (no guard, or a row from the initial state).
    """

    ids: Tensor
    types: Tensor
    radius: Tensor
    history: Tensor
    active: Tensor
    time: float
    guard_corrections: int | None = None

    @property
    def positions(self) -> Tensor:
        """[N, 3] current positions."""
        return self.history[-1]

    @property
    def velocity(self) -> Tensor:
        """[N, 3] current velocity in m per frame (x_t - x_{t-1})."""
        return self.history[-1] - self.history[-2]

    def advanced(self, positions: Tensor, frame_dt: float) -> ParticleState:
        """The state one frame later with `positions` [N, 3] as the new last row (not guarded)."""
        history = torch.cat([self.history[1:], positions[None]])
        return replace(self, history=history, time=self.time + frame_dt, guard_corrections=None)

    def to(self, device: torch.device | str) -> ParticleState:
        return replace(
            self,
            ids=self.ids.to(device),
            types=self.types.to(device),
            radius=self.radius.to(device),
            history=self.history.to(device),
            active=self.active.to(device),
        )


def state_from_trajectory(
    trajectory: TrajectoryFile | Trajectory,
    frame: int,
    history: int,
    dtype=torch.float64,
    stride: int = 1,
) -> ParticleState:
    """The state at `frame` of a trajectory (file or in memory) with `history` velocities
    behind it, taken every `stride` frames (a model that steps several recorded frames). Only
    particles present in all of those frames are active.
    """
    frame %= trajectory.n_frames
    first = frame - history * stride
    if first < 0:
        raise BgnnError(
            f"a rollout needs {history * stride + 1} frames of history; the initial trajectory "
            f"has only {frame + 1} up to frame {frame}"
        )
    window = trajectory.read(first, frame + 1, stride)
    active = window.active.all(axis=0)
    return ParticleState(
        ids=torch.from_numpy(window.ids.astype(np.int64)),
        types=torch.from_numpy(window.types.astype(np.int64)),
        radius=torch.from_numpy(window.radius).to(dtype),
        history=torch.from_numpy(window.positions).to(dtype),
        active=torch.from_numpy(active),
        time=float(window.time[-1]),
    )


def frame_stride(trajectory: TrajectoryFile | Trajectory, frame_dt: float) -> int:
    """Recorded frames per model frame of `frame_dt` seconds; BgnnError unless the model's frame
    is a whole number of the trajectory's."""
    recorded = _recorded_frame_dt(trajectory)
    stride = round(frame_dt / recorded)
    if stride < 1 or abs(stride * recorded - frame_dt) > 1e-3 * frame_dt:
        raise BgnnError(
            f"the initial trajectory has a frame every {recorded:.6g} s; the model steps "
            f"{frame_dt:.6g} s, which is not a whole number of those frames"
        )
    return stride


def removal_frames(trajectory: TrajectoryFile | Trajectory) -> list[int]:
    """The recorded frames at which a wall is removed (a gate opening at a recorded frame's
    time; a removal between two recorded frames has none)."""
    frames = []
    for wall in trajectory.walls:
        if wall.removed_at is None:
            continue
        at = int(np.searchsorted(trajectory.time, wall.removed_at - TIME_TOLERANCE))
        if at < trajectory.n_frames and trajectory.time[at] < wall.removed_at + TIME_TOLERANCE:
            frames.append(at)
    return frames


def aligned_start(trajectory: TrajectoryFile | Trajectory, first: int, stride: int) -> int:
    """The first recorded frame from `first` on from which a rollout of `stride` recorded
    frames per model frame lands on the first wall removal after it.

    The rollout's graph holds the walls present at each model frame, so a gate that opens
    between two of its frames opens up to a frame late; started here, it opens on time."""
    removals = [r for r in removal_frames(trajectory) if r > first]
    return first + ((removals[0] - first) % stride if removals else 0)


def _recorded_frame_dt(trajectory: TrajectoryFile | Trajectory) -> float:
    if trajectory.n_frames < 2:
        raise BgnnError("the initial trajectory needs two frames or more (the frame step)")
    return float(np.median(np.diff(trajectory.time)))


def scene_from_trajectory(
    trajectory: TrajectoryFile | Trajectory, frame_dt: float | None = None
) -> Scene:
    """The scene a trajectory was recorded in: its walls, the frame step (its own unless a
    model's `frame_dt` is given) and its sinks (a hopper's below the outlet), as recorded."""
    recorded = _recorded_frame_dt(trajectory)
    frame_dt = recorded if frame_dt is None else frame_dt
    return Scene(walls=trajectory.walls, frame_dt=frame_dt, sinks=list(trajectory.sinks))


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
