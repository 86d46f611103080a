"""What a rollout advances: the scene (walls, sinks, frame step) and the particles' state."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from bgnn_sim.errors import BgnnError
from bgnn_sim.geometry.wall import Wall
from bgnn_sim.io.hdf5 import TrajectoryFile
from bgnn_sim.trajectory import Trajectory


@dataclass(frozen=True)
class Sink:
    """Particles whose centre falls below `z` (m) leave the simulation (a hopper's outlet)."""

    z: float

    def contains(self, positions: Tensor) -> Tensor:
        """[N] bool for positions [N, 3]."""
        return positions[:, 2] < self.z


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
    """

    ids: Tensor
    types: Tensor
    radius: Tensor
    history: Tensor
    active: Tensor
    time: float

    @property
    def positions(self) -> Tensor:
        """[N, 3] current positions."""
        return self.history[-1]

    @property
    def velocity(self) -> Tensor:
        """[N, 3] current velocity in m per frame (x_t - x_{t-1})."""
        return self.history[-1] - self.history[-2]

    def advanced(self, positions: Tensor, frame_dt: float) -> ParticleState:
        """The state one frame later with `positions` [N, 3] as the new last row."""
        history = torch.cat([self.history[1:], positions[None]])
        return replace(self, history=history, time=self.time + frame_dt)

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
    trajectory: TrajectoryFile | Trajectory, frame: int, history: int, dtype=torch.float64
) -> ParticleState:
    """The state at `frame` of a trajectory (file or in memory) with `history` velocities
    behind it. Only particles present in all of frames frame-history .. frame are active.
    """
    frame %= trajectory.n_frames
    if frame < history:
        raise BgnnError(
            f"a rollout needs {history + 1} frames of history; the initial trajectory has "
            f"only {frame + 1} up to frame {frame}"
        )
    window = trajectory.read(frame - history, frame + 1)
    active = window.active.all(axis=0)
    return ParticleState(
        ids=torch.from_numpy(window.ids.astype(np.int64)),
        types=torch.from_numpy(window.types.astype(np.int64)),
        radius=torch.from_numpy(window.radius).to(dtype),
        history=torch.from_numpy(window.positions).to(dtype),
        active=torch.from_numpy(active),
        time=float(window.time[-1]),
    )


def scene_from_trajectory(trajectory: TrajectoryFile | Trajectory) -> Scene:
    """The scene a trajectory was recorded in: its walls, frame step and, for a hopper, the sink
    below the outlet (`sink_z`, or `sink_depth` below a generated hopper's outlet at z = 0)."""
    if trajectory.n_frames < 2:
        raise BgnnError("the initial trajectory needs two frames or more (the frame step)")
    frame_dt = float(np.median(np.diff(trajectory.time)))
    scenario = trajectory.attrs.get("scenario", {})
    sink_z = scenario.get("sink_z", -scenario["sink_depth"] if "sink_depth" in scenario else None)
    sinks = [] if sink_z is None else [Sink(sink_z)]
    return Scene(walls=trajectory.walls, frame_dt=frame_dt, sinks=sinks)
