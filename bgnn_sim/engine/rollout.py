"""The rollout loop: backend -> positions -> wall guard -> sinks -> checks -> output.

A per-frame backend (BGNN) plugs in through `Backend.acceleration`, integrated by semi-implicit
Euler; a windowed backend (LaM-SLidE) through `WindowBackend.window`, which returns the
positions of several frames at once. The engine owns everything else, so a "cheating" backend
that returns the true accelerations reproduces the data exactly (the wall guard, on by default,
never touches a physical state: see bgnn_sim/engine/guard.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Protocol

import torch
from torch import Tensor

from bgnn_sim.engine.guard import DEFAULT_WALL_GUARD, Clearance, WallGuard, guarded_advance
from bgnn_sim.engine.state import ParticleState, Scene
from bgnn_sim.errors import BgnnError
from bgnn_sim.graph.verlet import VerletLists
from bgnn_sim.io.hdf5 import TrajectoryWriter

# Faster than anything in a hopper or drum of lab size (free fall from 1 m reaches 4.4 m/s):
# a particle beyond it means the rollout has diverged.
MAX_SPEED_MS = 20.0
# The wall-contact lists of a windowed backend's guard (in particle radii): the guard's reach
# (half a radius of gap, plus a frame's move: about a radius in a 5 ms frame) plus a frame's
# move and the walls' must lie within the reach for a particle's pairs to cover it. The skin is
# wide because decoded positions jitter by about a radius from frame to frame: a skin of 2 radii
# rebuilt the lists every third frame (benchmarks/README.md, LaM-SLidE at 10,000 particles).
GUARD_REACH_RADII = 4.0
GUARD_SKIN_RADII = 4.0


class DivergenceError(BgnnError):
    """The rollout produced non-finite or impossibly fast particles; earlier frames are kept."""


class Backend(Protocol):
    """What the engine needs from a learned simulator. One that searched the frame's wall
    contacts may also leave them as `clearance` (engine.guard.Clearance) for the wall guard."""

    history: int  # velocities of history the backend reads (H)

    def acceleration(self, scene: Scene, state: ParticleState) -> Tensor:
        """[n_active, 3] accelerations (m/frame^2) of the active particles, in index order."""
        ...


class WindowBackend(Protocol):
    """A backend that generates several frames per call from the state's history."""

    history: int  # frames of history behind "now" that it reads

    def window(self, scene: Scene, state: ParticleState) -> Tensor:
        """[F, N, 3] positions (m) of all particles in the next F frames."""
        ...


def euler_step(history: Tensor, acceleration: Tensor) -> Tensor:
    """Semi-implicit Euler in frame units, v <- v + a, x <- x + v: next positions [n, 3] from
    a position history [K, n, 3] (K >= 2) and accelerations [n, 3] (m/frame^2)."""
    return history[-1] + (history[-1] - history[-2]) + acceleration


def integrate(state: ParticleState, acceleration: Tensor) -> Tensor:
    """Next positions [N, 3] of all particles; inactive ones stay where they were."""
    positions = state.positions.clone()
    positions[state.active] = euler_step(state.history[:, state.active], acceleration)
    return positions


def step(
    backend: Backend, scene: Scene, state: ParticleState, guard: WallGuard | None = None
) -> ParticleState:
    """Advance one frame. Particles found in a sink leave first, so they are absent from the
    new frame (as LIGGGHTS's `delete_atoms` between dumps does); the guard, if any, then
    checks the new frame against the walls."""
    state = leave_sinks(scene, state)
    acceleration = backend.acceleration(scene, state)
    clearance = getattr(backend, "clearance", None)
    return advance(scene, state, integrate(state, acceleration), guard, clearance)


def window_steps(
    backend: WindowBackend,
    scene: Scene,
    state: ParticleState,
    guard: WallGuard | None = None,
    near_walls: VerletLists | None = None,
) -> list[ParticleState]:
    """The states of the frames of one window; the sinks and the guard act on each frame, as in
    step. A guarded frame is the start of the next one: the window's later frames are checked
    against the corrected positions, so a particle the model keeps outside is caught again.
    `near_walls`: wall-contact lists (walls only) that give the guard each frame's clearance,
    as a BGNN's graph does (see `guard_lists`)."""
    states = []
    for positions in backend.window(scene, state):
        state = leave_sinks(scene, state)
        clearance = None
        if near_walls is not None and guard is not None:
            found = near_walls.neighbours(state.positions, state.active, scene.walls, state.time)
            clearance = Clearance.of(found.walls, int(state.active.sum()),
                                     near_walls.wall_cutoff, state.time)  # fmt: skip
        moved = torch.where(state.active[:, None], positions.to(state.history), state.positions)
        state = advance(scene, state, moved, guard, clearance)
        states.append(state)
    return states


def guard_lists(state: ParticleState) -> VerletLists:
    """Wall-contact lists for the guard of a backend that searches no walls itself: within
    GUARD_REACH_RADII of the walls, with a skin of GUARD_SKIN_RADII (of the largest particle).
    The guard then searches the mesh only for particles that moved farther in a frame."""
    radius = float(state.radius.max()) if len(state.radius) else 0.0
    return VerletLists(None, GUARD_REACH_RADII * radius, GUARD_SKIN_RADII * radius)


def advance(
    scene: Scene,
    state: ParticleState,
    positions: Tensor,
    guard: WallGuard | None,
    clearance: Clearance | None = None,
) -> ParticleState:
    """The state one frame later at `positions` [N, 3], through the wall guard when given."""
    if guard is None:
        return state.advanced(positions, scene.frame_dt)
    return guarded_advance(guard, scene, state, positions, clearance)


def leave_sinks(scene: Scene, state: ParticleState) -> ParticleState:
    """The state with particles now inside a sink made inactive."""
    active = state.active.clone()
    for sink in scene.sinks:
        active &= ~sink.contains(state.positions)
    return replace(state, active=active)


def successive_states(
    backend, scene: Scene, state: ParticleState, guard: WallGuard | None = None
) -> Iterator[ParticleState]:
    """The states of the following frames, one by one, from either kind of backend."""
    windowed = hasattr(backend, "window")
    near_walls = guard_lists(state) if windowed and guard is not None else None
    while True:
        if windowed:
            states = window_steps(backend, scene, state, guard, near_walls)
        else:
            states = [step(backend, scene, state, guard)]
        yield from states
        state = states[-1]


def check_finite(state: ParticleState, frame_dt: float, max_speed: float) -> None:
    """Raise DivergenceError for non-finite or too fast active particles."""
    velocity = state.velocity[state.active]
    speed = velocity.norm(dim=1) / frame_dt
    bad = ~torch.isfinite(speed) | (speed > max_speed)
    if bad.any():
        raise DivergenceError(
            f"the rollout diverged at t = {state.time:.4f} s: {int(bad.sum())} particles are "
            f"non-finite or faster than {max_speed:g} m/s; the frames before were kept"
        )


def rollout(
    backend: Backend | WindowBackend,
    scene: Scene,
    state: ParticleState,
    n_frames: int,
    writer: TrajectoryWriter | None = None,
    on_frame: Callable[[ParticleState], None] | None = None,
    max_speed: float = MAX_SPEED_MS,
    until: Callable[[ParticleState], bool] | None = None,
    wall_guard: WallGuard | None = DEFAULT_WALL_GUARD,
) -> ParticleState:
    """Roll `state` forward `n_frames` frames, streaming each to `writer`; returns the last.

    Stops early after a frame for which `until(state)` is true (a hopper that has emptied).
    Raises DivergenceError (after writing every good frame) when the rollout blows up. The wall
    guard (default: on, gap half a radius) corrects particles that cross or touch a wall and
    each frame records how many (`guard_corrections`); None runs the raw model.
    """
    with torch.no_grad():
        frames = successive_states(backend, scene, state, wall_guard)
        for _ in range(n_frames):
            state = next(frames)
            check_finite(state, scene.frame_dt, max_speed)
            if writer is not None:
                write_frame(writer, state, scene.frame_dt)
            if on_frame is not None:
                on_frame(state)
            if until is not None and until(state):
                break
    return state


def write_frame(writer: TrajectoryWriter, state: ParticleState, frame_dt: float) -> None:
    """Append the state's current frame (velocities in m/s, the guard's corrections)."""
    writer.append(
        state.time,
        state.positions.double().cpu().numpy(),
        state.active.cpu().numpy(),
        (state.velocity / frame_dt).float().cpu().numpy(),
        guard_corrections=state.guard_corrections,
    )


def rollout_to_file(
    backend: Backend,
    scene: Scene,
    state: ParticleState,
    n_frames: int,
    path,
    attrs: dict | None = None,
    force: bool = False,
    on_frame: Callable[[ParticleState], None] | None = None,
    until: Callable[[ParticleState], bool] | None = None,
    wall_guard: WallGuard | None = DEFAULT_WALL_GUARD,
) -> ParticleState:
    """Roll out and stream to a trajectory file that starts with the state's history frames.

    The file is marked complete only when every frame was written; a diverging rollout keeps
    the frames before the blow-up (marked incomplete) and raises DivergenceError. With a wall
    guard the file holds its corrections per frame (0 for the history frames) and its settings
    in the metadata (`wall_guard`, null without one).
    """
    ids, types, radius = (t.cpu().numpy() for t in (state.ids, state.types, state.radius))
    attrs = {**(attrs or {}), "wall_guard": wall_guard.describe() if wall_guard else None}
    with TrajectoryWriter(path, ids, types, radius, scene.walls, attrs, force=force,
                          sinks=scene.sinks) as writer:  # fmt: skip
        _write_history(writer, state, scene.frame_dt)
        return rollout(backend, scene, state, n_frames, writer, on_frame, until=until,
                       wall_guard=wall_guard)  # fmt: skip


def _write_history(writer: TrajectoryWriter, state: ParticleState, frame_dt: float) -> None:
    """The initial frames, so that the output is a complete trajectory from its start."""
    rows = len(state.history)
    for k in range(1, rows):  # the first row has no velocity behind it: start at the second
        time = state.time - (rows - 1 - k) * frame_dt
        past = replace(state, history=state.history[: k + 1], time=time, guard_corrections=None)
        write_frame(writer, past, frame_dt)
