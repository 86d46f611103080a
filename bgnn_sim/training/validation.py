"""Validation during training: the one-step loss, and rollouts through the event that decides
the flow (a hopper's gate opening and the discharge after it, a drum's start and its first
quarter turn), scored as a user would score them against LIGGGHTS.

The rollouts run the raw model (no wall guard): validation must see the model's own leaks.
Their score, which picks the best checkpoint, is the flow error (the largest gap in discharged
fraction for a hopper, in mixing entropy for a drum), plus the wall crossings per particle,
plus a tenth of the kinetic energy's relative error (particles thrown about: a rollout twice as
energetic as LIGGGHTS costs as much as 0.1 of discharged fraction).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import torch

from bgnn_sim.analysis.compare import compare
from bgnn_sim.engine.rollout import DivergenceError, rollout_to_file
from bgnn_sim.engine.state import scene_from_trajectory, state_from_trajectory
from bgnn_sim.io.hdf5 import TrajectoryFile
from bgnn_sim.trajectory import SCENE_ATTRS

# Frames of history before the event at which a validation rollout starts.
LEAD_FRAMES = 5
FLOW_METRICS = ("discharge_fraction_max_error", "mixing_entropy_max_error")
ENERGY_WEIGHT = 0.1


def validate(trainer, config) -> dict:
    """{"valid_loss": one-step error (see _one_step_loss)} and, with
    `validation_rollout` > 0, the event rollouts' "valid_flow_error", "valid_crossings" (per
    run), "valid_energy_error" and "valid_score" (inf when a rollout diverged)."""
    trainer.model.eval()
    try:
        with torch.no_grad():
            metrics = {"valid_loss": _one_step_loss(trainer, config)}
            if config.validation_rollout > 0:
                metrics |= _event_rollouts(trainer, config)
    finally:
        trainer.model.train()
    return metrics


def _one_step_loss(trainer, config) -> float:
    """Mean squared error of the predicted acceleration over valid windows, in units of the
    data's acceleration std: the same figure whatever the model's own target normalisation
    (with or without the known gravity term)."""
    windows = trainer.valid_set
    if len(windows) == 0:
        return float("nan")
    h, simulator = config.model.history, trainer.simulator
    std = torch.tensor(trainer.statistics["acceleration"]["std"], device=trainer.context.device)
    picks = np.linspace(0, len(windows) - 1, min(config.validation_windows, len(windows)))
    errors = []
    for i in picks.astype(int):
        window = windows[int(i)]
        positions = window.positions.to(trainer.context.device)
        types = window.types.to(trainer.context.device)
        history = positions[: h + 1]
        truth = positions[h + 1] - 2 * history[-1] + history[-2]
        graph = simulator.graph(history, types, window.walls, window.time[h].item(),
                                trainer.frame_dt)  # fmt: skip
        predicted = simulator.denormalise(trainer.model(graph), history)
        errors.append((((predicted - truth) / std) ** 2).flatten())
    return torch.cat(errors).mean().item()


def _event_rollouts(trainer, config) -> dict:
    """Flow error, crossings, energy error and score, averaged over the first valid runs."""
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for k in range(min(config.validation_runs, len(trainer.valid_set.runs))):
            traj = trainer.valid_set.trajectory(k)
            result = _event_rollout(trainer, config, traj, Path(scratch) / f"run{k}.h5")
            if result is None:
                return {"valid_flow_error": math.nan, "valid_crossings": math.nan,
                        "valid_energy_error": math.nan, "valid_score": math.inf}  # fmt: skip
            results.append(result)
    if not results:
        return {}
    flow, crossings, energy, particles = np.array(results, dtype=float).T
    score = flow + crossings / particles + ENERGY_WEIGHT * energy
    return {
        "valid_flow_error": float(flow.mean()),
        "valid_crossings": float(crossings.mean()),
        "valid_energy_error": float(energy.mean()),
        "valid_score": float(score.mean()),
    }


def _event_rollout(trainer, config, traj: TrajectoryFile, path: Path):
    """(flow error, wall crossings, kinetic-energy relative error, particles) of one rollout
    from just before the run's event, or None when it diverged."""
    h, stride = config.model.history, config.stride
    scene = scene_from_trajectory(traj, trainer.frame_dt)
    first = event_start_frame(traj, h, stride)
    # Model frames: the recorded frames to cover, `stride` recorded frames each.
    recorded = _rollout_frames(traj, config, trainer.frame_dt / stride)
    frames = min(math.ceil(recorded / stride), (traj.n_frames - 1 - first) // stride)
    if frames < 1:
        return None
    state = state_from_trajectory(traj, first, h, dtype=torch.float64, stride=stride)
    attrs = {key: traj.attrs[key] for key in SCENE_ATTRS if key in traj.attrs}
    try:
        rollout_to_file(trainer.simulator, scene, state.to(
            trainer.context.device), frames, path, attrs, wall_guard=None)  # fmt: skip
    except DivergenceError:
        return None
    with TrajectoryFile(path) as rolled:
        ours = rolled.read()
    reference = traj.read(first - h * stride, first + frames * stride + 1)
    metrics = compare(ours, reference, distance_frames=0).metrics
    error = next((metrics[name] for name in FLOW_METRICS if name in metrics), 0.0)
    energy = metrics["kinetic_energy_relative_error"]
    energy = energy if math.isfinite(energy) else 0.0
    return error, metrics["leakage_crossings"], energy, int(state.active.sum())


def event_start_frame(traj: TrajectoryFile, history: int, stride: int = 1) -> int:
    """The recorded frame a validation rollout starts from: LEAD_FRAMES model frames (of
    `stride` recorded frames) before the run's event, with `history` model frames behind it."""
    event = traj.attrs.get("start_time", float(traj.time[0]))
    at_event = int(np.searchsorted(traj.time, event - 1e-9))
    return min(max(history * stride, at_event - LEAD_FRAMES * stride), traj.n_frames - 1 - stride)


def _rollout_frames(traj: TrajectoryFile, config, recorded_dt: float) -> int:
    """Recorded frames (of `recorded_dt` s) a validation rollout covers: validation_rollout,
    and at least a quarter turn for a drum."""
    rpm = traj.attrs.get("scenario", {}).get("rpm")
    if not rpm:
        return config.validation_rollout
    return max(config.validation_rollout, math.ceil(15.0 / rpm / recorded_dt))
