"""Training configuration: one typed dataclass, read from TOML, written next to the run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from bgnn_sim.configfile import read_toml, typed
from bgnn_sim.models.bgnn import BGNNConfig


@dataclass(frozen=True)
class TrainConfig:
    """How to train a BGNN (defaults: a short CPU-friendly run; raise `steps` on a GPU).

    Attributes:
        model: the network's size and shape.
        steps: optimiser steps.
        windows_per_step: training windows whose graphs form one batch.
        lr, lr_final: Adam learning rate, decayed exponentially from lr to lr_final.
        noise_std: random-walk input noise, std of the last input velocity (m/frame).
        pushforward: at most this many model steps (no gradient) before the trained step.
        cutoff_radii: graph cutoff in particle radii (BGNN hopper: 4).
        validate_every: steps between validations (loss + short rollouts).
        validation_windows: windows of the valid split in the validation loss.
        validation_rollout: frames of each validation rollout (0 = none).
        checkpoint_every: steps between checkpoints.
        log_every: steps between lines in metrics.csv.
        seed: everything random derives from it and the step number.
        graph_backend: neighbour search, "auto", "kdtree" or "torch_cluster".
        deterministic: bit-reproducible reductions (message sums), so that a run and its
            resumed twin are identical; off trades that for speed on GPUs.
    """

    model: BGNNConfig = field(default_factory=BGNNConfig)
    steps: int = 20_000
    windows_per_step: int = 2
    lr: float = 1e-4
    lr_final: float = 1e-6
    noise_std: float = 3e-7
    pushforward: int = 0
    cutoff_radii: float = 4.0
    validate_every: int = 1000
    validation_windows: int = 50
    validation_rollout: int = 50
    checkpoint_every: int = 1000
    log_every: int = 50
    seed: int = 0
    graph_backend: str = "auto"
    deterministic: bool = True

    def lr_at(self, step: int) -> float:
        """Exponential decay from lr (step 0) to lr_final (last step)."""
        fraction = min(step / max(self.steps - 1, 1), 1.0)
        return self.lr * (self.lr_final / self.lr) ** fraction


def config_to_dict(config: TrainConfig) -> dict:
    return dataclasses.asdict(config)


def config_from_dict(data: dict, source: str = "config") -> TrainConfig:
    """Build a TrainConfig from nested dicts (a [model] table inside)."""
    data = dict(data)
    model = typed(BGNNConfig, data.pop("model", {}), f"{source} [model]")
    return typed(TrainConfig, {**data, "model": model}, source)


def load_train_config(path: str | Path) -> TrainConfig:
    return config_from_dict(read_toml(path), str(path))
