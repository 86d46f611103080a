"""The trajectory: the one format shared by LIGGGHTS conversions, training data and rollouts.

Particles are columns: particle j is the same atom (same LIGGGHTS id) in every frame. A particle
that is not in the simulation at a frame (not yet inserted, or removed by a sink) has
`active[t, j] = False`; its position and velocity at that frame are zero and carry no meaning.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from bgnn_sim.geometry.sink import Sink
from bgnn_sim.geometry.wall import Wall

# The attrs that describe the container and material (as written by `bgnn generate`); a rollout
# keeps them from its initial state so that its analysis knows the scene.
SCENE_ATTRS = ("kind", "scenario", "material", "timing")


@dataclass
class Trajectory:
    """Particle positions over time, with the walls that contained them.

    Attributes:
        time: [T] physical time of each frame, seconds, strictly increasing.
        positions: [T, N, 3] float64, metres.
        active: [T, N] bool, whether particle j exists at frame t.
        ids: [N] int64, LIGGGHTS atom ids (unique).
        types: [N] int32, particle types (LIGGGHTS numbering, from 1).
        radius: [N] float64, metres.
        velocities: [T, N, 3] float32, m/s, when the source provides them (LIGGGHTS does).
        walls: the container's walls and their motion.
        attrs: free metadata (source, DEM step, scenario parameters); JSON-serialisable values.
        guard_corrections: [T] int, particles the rollout's wall guard moved to make each frame;
            None where there was no guard (LIGGGHTS data, raw rollouts, older files).
        sinks: where particles left the simulation (a hopper's sink below its outlet); None
            when not recorded: then read from the scenario attrs (see `legacy_sinks`).
    """

    time: np.ndarray
    positions: np.ndarray
    active: np.ndarray
    ids: np.ndarray
    types: np.ndarray
    radius: np.ndarray
    velocities: np.ndarray | None = None
    walls: list[Wall] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)
    guard_corrections: np.ndarray | None = None
    sinks: list[Sink] | None = None

    def __post_init__(self) -> None:
        if self.sinks is None:
            self.sinks = legacy_sinks(self.attrs)
        n_frames, n_particles = self.active.shape
        if self.positions.shape != (n_frames, n_particles, 3):
            raise ValueError(f"positions {self.positions.shape} != {(n_frames, n_particles, 3)}")
        if self.time.shape != (n_frames,):
            raise ValueError(f"time {self.time.shape} != {(n_frames,)}")
        for name in ("ids", "types", "radius"):
            if getattr(self, name).shape != (n_particles,):
                raise ValueError(f"{name} {getattr(self, name).shape} != {(n_particles,)}")
        if self.velocities is not None and self.velocities.shape != self.positions.shape:
            raise ValueError(f"velocities {self.velocities.shape} != {self.positions.shape}")
        if self.guard_corrections is not None and self.guard_corrections.shape != (n_frames,):
            raise ValueError(f"guard_corrections {self.guard_corrections.shape} != {(n_frames,)}")

    @property
    def n_frames(self) -> int:
        return self.active.shape[0]

    @property
    def n_particles(self) -> int:
        return self.active.shape[1]

    def read(self, start: int = 0, stop: int | None = None, step: int = 1) -> Trajectory:
        """Frames [start, stop), every `step`-th (the in-memory twin of TrajectoryFile.read)."""
        span = slice(start, self.n_frames if stop is None else stop, step)
        velocities = None if self.velocities is None else self.velocities[span]
        guard = None if self.guard_corrections is None else self.guard_corrections[span]
        return replace(
            self, time=self.time[span], positions=self.positions[span],
            active=self.active[span], velocities=velocities, guard_corrections=guard,
        )  # fmt: skip


def legacy_sinks(attrs: dict[str, Any]) -> list[Sink]:
    """The sinks of a trajectory that does not record them (written before they were stored),
    from its scenario attrs: `sink_z` (a simulation), or `sink_depth` below a generated hopper's
    outlet at z = 0 (a LIGGGHTS run); none otherwise."""
    scenario = attrs.get("scenario", {})
    if "sink_z" in scenario:
        return [Sink(float(scenario["sink_z"]))]
    if "sink_depth" in scenario:
        return [Sink(-float(scenario["sink_depth"]))]
    return []
