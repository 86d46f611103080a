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

from bgnn_sim.app.simulation_config import SimulationConfig
from bgnn_sim.dem.config import Material, Timing
from bgnn_sim.dem.settle import settle_with_liggghts
from bgnn_sim.engine.state import ParticleState, Scene, state_at
from bgnn_sim.geometry.container import Container, closed_solid, merged_mesh
from bgnn_sim.geometry.fill import fill_container, volume_below
from bgnn_sim.io.sources import open_source


def scene_for(container: Container, config: SimulationConfig, frame_dt: float) -> Scene:
    """Walls with their motion (a hopper's gate, a drum's rotation) and the container's sinks."""
    return Scene(walls=container.walls_in_motion(config), frame_dt=frame_dt,
                 sinks=container.sinks())  # fmt: skip


def scenario_attrs(container: Container, config: SimulationConfig) -> dict:
    """The scenario description stored with the trajectory (read back by analysis/rollouts)."""
    return container.scenario_attrs(config)


def simulated_seconds(container: Container, config: SimulationConfig) -> float:
    """How long to simulate: the setting, else a hopper's discharge window or a drum's default."""
    if config.duration is not None:
        return config.duration
    return container.default_seconds(config)


def fill_count(
    container: Container, solid: trimesh.Trimesh, config: SimulationConfig, material: Material
) -> int:
    """Particles to fill in: the setting, else a settled bed up to the fill height (or its
    default) in the container's closed solid."""
    if config.particles is not None:
        return config.particles
    if config.fill_height is not None:
        height = container.bounds[0, 2] + config.fill_height
    else:
        height = container.default_fill_height(solid)
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
        positions = settle_with_liggghts(merged_mesh(container.walls), positions, material,
                                         timing, container.outlet_z)  # fmt: skip
    types = container.labels(positions)
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
    for what, value, values, unit in container.outside_training(trained, d, config):
        warnings += _outside(what, value, values, unit)
    return warnings + container.training_notes()


def _outside(what: str, value: float, trained: list[float], unit: str) -> list[str]:
    low, high = min(trained), max(trained)
    if low <= value <= high:
        return []
    return [f"{what} {value:.3g}{unit} is outside the training range {low:.3g}-{high:.3g}{unit}; "
            "the model extrapolates"]  # fmt: skip
