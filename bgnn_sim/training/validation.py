"""Validation during training: the one-step loss on valid windows and short rollouts."""

from __future__ import annotations

import numpy as np
import torch

from bgnn_sim.engine.rollout import DivergenceError, rollout
from bgnn_sim.engine.state import scene_from_trajectory, state_from_trajectory

ROLLOUT_RUNS = 2


def validate(trainer, config) -> dict:
    """{"valid_loss": mean squared normalised error, "valid_rollout_error_m": mean distance of
    rollout particles to the truth after `validation_rollout` frames (NaN if it diverged)}."""
    trainer.model.eval()
    try:
        with torch.no_grad():
            metrics = {"valid_loss": _one_step_loss(trainer, config)}
            if config.validation_rollout > 0:
                metrics["valid_rollout_error_m"] = _rollout_error(trainer, config)
    finally:
        trainer.model.train()
    return metrics


def _one_step_loss(trainer, config) -> float:
    windows = trainer.valid_set
    if len(windows) == 0:
        return float("nan")
    h, simulator = config.model.history, trainer.simulator
    picks = np.linspace(0, len(windows) - 1, min(config.validation_windows, len(windows)))
    errors = []
    for i in picks.astype(int):
        window = windows[int(i)]
        positions = window.positions.to(trainer.context.device)
        types = window.types.to(trainer.context.device)
        history = positions[: h + 1]
        target = simulator.normalise(positions[h + 1] - 2 * history[-1] + history[-2])
        graph = simulator.graph(history, types, window.walls, window.time[h].item(),
                                trainer.frame_dt)  # fmt: skip
        errors.append(((trainer.model(graph) - target) ** 2).flatten())
    return torch.cat(errors).mean().item()


def _rollout_error(trainer, config) -> float:
    """Mean distance (m) between rollout and truth after the rollout, over the first runs."""
    h, errors = config.model.history, []
    for k in range(min(ROLLOUT_RUNS, len(trainer.valid_set.runs))):
        traj = trainer.valid_set.trajectory(k)
        frames = min(config.validation_rollout, traj.n_frames - 1 - h)
        if frames < 1:
            continue
        state = state_from_trajectory(traj, h, h, dtype=torch.float64)
        try:
            end = rollout(trainer.simulator, scene_from_trajectory(traj), state.to(
                trainer.context.device), frames)  # fmt: skip
        except DivergenceError:
            return float("nan")
        truth = traj.frame(h + frames)
        both = end.active.cpu().numpy() & truth.active
        gap = end.positions.cpu().numpy()[both] - truth.positions[both]
        errors.append(np.linalg.norm(gap, axis=1).mean())
    return float(np.mean(errors)) if errors else float("nan")
