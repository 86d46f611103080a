"""From a recognised container and the settings to what the engine rolls out.

The scenarios mirror the LIGGGHTS training runs (bgnn_sim.dem): a hopper holds a settled bed
behind a gate over its outlet, the gate is removed at `open_at` and particles leave through a
sink 3 cm below the outlet; a drum turns about its axis from the start, its particles labelled
in two halves (type 2 on the negative side) to watch them mix.
"""

from __future__ import annotations

import numpy as np
import torch
import trimesh

from bgnn_sim.app.simulation_config import (
    DEFAULT_DRUM_FILL,
    DEFAULT_DRUM_SECONDS,
    DEFAULT_HOPPER_FILL,
    DEFAULT_HOPPER_SECONDS,
    SimulationConfig,
)
from bgnn_sim.dem.config import Material, Timing
from bgnn_sim.dem.settle import settle_with_liggghts
from bgnn_sim.engine.state import (
    ParticleState,
    Scene,
    Sink,
    state_at,
)
from bgnn_sim.geometry.container import AXES, Container, closed_solid, merged_mesh
from bgnn_sim.geometry.fill import fill_container, volume_below
from bgnn_sim.geometry.wall import Rotation, Wall, make_gate
from bgnn_sim.io.sources import open_source

SINK_DEPTH = 0.03  # m below the outlet, as in the training runs


def scene_for(container: Container, config: SimulationConfig, frame_dt: float) -> Scene:
    """Walls with their motion (a hopper's gate, a drum's rotation) and a hopper's sink."""
    if container.kind == "hopper":
        gate = make_gate(tuple(container.outlet.center), container.top.length, config.open_at)
        sink = Sink(container.outlet.z - SINK_DEPTH)
        return Scene(walls=[*container.walls, gate], frame_dt=frame_dt, sinks=[sink])
    rotation = Rotation(axis=tuple(np.eye(3)[AXES[container.axis]]),
                        origin=tuple(container.center), rpm=config.rpm)  # fmt: skip
    walls = [Wall(w.name, w.vertices, w.faces, motion=rotation) for w in container.walls]
    return Scene(walls=walls, frame_dt=frame_dt)


def scenario_attrs(container: Container, config: SimulationConfig) -> dict:
    """The scenario description stored with the trajectory (read back by analysis/rollouts)."""
    if container.kind == "hopper":
        return {"kind": "hopper", "open_at": config.open_at,
                "outlet_width": container.outlet.width, "outlet_z": container.outlet.z,
                "sink_z": container.outlet.z - SINK_DEPTH}  # fmt: skip
    return {"kind": "drum", "rpm": config.rpm, "axis": container.axis,
            "radius": container.radius, "length": container.length}  # fmt: skip


def simulated_seconds(container: Container, config: SimulationConfig) -> float:
    """How long to simulate: the setting, else a hopper's discharge window or a drum's default."""
    if config.duration is not None:
        return config.duration
    if container.kind == "hopper":
        return config.open_at + DEFAULT_HOPPER_SECONDS
    return DEFAULT_DRUM_SECONDS


def fill_count(
    container: Container, solid: trimesh.Trimesh, config: SimulationConfig, material: Material
) -> int:
    """Particles to fill in: the setting, else a settled bed up to the fill height (or its
    default) in the container's closed solid."""
    if config.particles is not None:
        return config.particles
    bottom, top = container.bounds[:, 2]
    if config.fill_height is not None:
        height = bottom + config.fill_height
    elif container.kind == "hopper":
        height = bottom + DEFAULT_HOPPER_FILL * (top - bottom)
    else:
        heights = np.linspace(bottom, top, 201)  # the height that holds the default fraction
        fractions = np.array([volume_below(solid, h) for h in heights]) / solid.volume
        height = float(np.interp(DEFAULT_DRUM_FILL, fractions, heights))
    return material.settled_count(volume_below(solid, height))


def initial_state(
    container: Container, config: SimulationConfig, data: dict, history: int
) -> ParticleState:
    """The particles at rest (a filled bed), with `history` frames behind, the last at time
    history * frame_dt (the run starts at t = 0); or frame `config.start` of `config.init`.

    Args:
        data: the model's training-data description (material and timing).
    """
    material, timing = Material(**data["material"]), Timing(**data["timing"])
    if config.init is not None:
        return state_from_init(config.init, config.start, timing, history)
    radius = material.radius
    solid = closed_solid(container)
    n = fill_count(container, solid, config, material)
    positions = fill_container(solid, n, radius, seed=config.seed)
    if config.fill == "liggghts":
        gate_z = container.outlet.z if container.kind == "hopper" else None
        positions = settle_with_liggghts(merged_mesh(container.walls), positions, material,
                                         timing, gate_z)  # fmt: skip
    types = _labels(container, positions)
    resting = torch.from_numpy(positions).expand(history + 1, -1, -1).clone()
    return ParticleState(
        ids=torch.arange(1, n + 1),
        types=torch.from_numpy(types),
        radius=torch.full((n,), radius, dtype=torch.float64),
        history=resting,
        active=torch.ones(n, dtype=torch.bool),
        time=history * timing.frame_dt,
    )


def state_from_init(init: str, start: int, timing: Timing, history: int) -> ParticleState:
    """Frame `start` of a trajectory or LIGGGHTS dumps (see `state_at`)."""
    return state_at(open_source(init, dem_dt=timing.dem_dt), init, start, timing.frame_dt,
                    history)  # fmt: skip


def _labels(container: Container, positions: np.ndarray) -> np.ndarray:
    """[N] int64 types: 1 in a hopper; in a drum 2 on the negative side of the horizontal axis
    across its rotation axis (x for a y-axis drum, as in the training runs), else 1."""
    types = np.ones(len(positions), dtype=np.int64)
    if container.kind == "drum":
        across = 0 if container.axis != "x" else 1
        types[positions[:, across] < container.center[across]] = 2
    return types


def domain_warnings(container: Container, state: ParticleState, config, data: dict) -> list[str]:
    """Where this simulation lies outside what the model was trained on (checkpoint `data`)."""
    radius = float(data["material"]["radius"])
    d = 2.0 * radius
    kinds = data.get("kinds", [])
    if container.kind not in kinds:
        return [f"the model was trained on {', '.join(kinds) or 'unknown'} runs, not on a "
                f"{container.kind}"]  # fmt: skip
    trained = [s for s in data.get("scenarios", []) if s.get("kind") == container.kind]
    if not trained:
        return []  # no ranges recorded to check against
    warnings = []
    sizes = np.asarray(state.radius, dtype=float)
    if np.any(np.abs(sizes - radius) > 0.05 * radius):
        warnings.append(f"particle radii differ from the model's {radius * 1e3:g} mm")
    counts = [s["n_particles"] for s in trained]
    warnings += _outside("particle count", int(state.active.sum()), counts, "")
    if container.kind == "hopper":
        outlets = [s["spec"]["outlet"] / d for s in trained]
        warnings += _outside("outlet width", container.outlet.width / d, outlets, " diameters")
    else:
        warnings += _outside("drum radius", container.radius / d,
                             [s["radius"] / d for s in trained], " diameters")  # fmt: skip
        warnings += _outside("rotation speed", config.rpm, [s["rpm"] for s in trained], " rpm")
        if container.axis != "y":
            warnings.append(f"the model was trained on drums turning about y, this one about "
                            f"{container.axis}")  # fmt: skip
    return warnings


def _outside(what: str, value: float, trained: list[float], unit: str) -> list[str]:
    low, high = min(trained), max(trained)
    if low <= value <= high:
        return []
    return [f"{what} {value:.3g}{unit} is outside the training range {low:.3g}-{high:.3g}{unit}; "
            "the model extrapolates"]  # fmt: skip
