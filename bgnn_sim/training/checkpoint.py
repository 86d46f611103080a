"""Training checkpoints (the format itself, and reading it for inference: models.loading):
weights, full configs, normalisation statistics, data description, version.

A checkpoint is a torch file holding only plain containers and tensors (loaded with
`weights_only=True`), written atomically so a kill never leaves half a checkpoint.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from bgnn_sim import __version__
from bgnn_sim.errors import BgnnError
from bgnn_sim.io.outputs import write_atomically
from bgnn_sim.models.bgnn import BGNN
from bgnn_sim.models.loading import FORMAT, VERSION, build_bgnn, check_header, read_payload
from bgnn_sim.models.loading import CheckpointError as CheckpointError  # the format's error
from bgnn_sim.training.config import TrainConfig, config_from_dict


@dataclasses.dataclass
class Checkpoint:
    """Everything needed to resume training or to roll out.

    Attributes:
        config: the training configuration (model size included).
        statistics: normalisation statistics of the training data (dataset manifest format).
        data: what the model was trained on (dataset, material, timing, run names).
        step: optimiser steps done.
        model: model state dict.
        optimizer: optimiser state dict (None in a shipped model).
        metrics: last validation figures.
        average: the moving average of the weights (`ema_decay`; None in a shipped model,
            whose `model` then holds the averaged weights).
    """

    config: TrainConfig
    statistics: dict
    data: dict
    step: int
    model: dict
    optimizer: dict | None = None
    metrics: dict = dataclasses.field(default_factory=dict)
    average: dict | None = None

    def build_model(self, device: torch.device | str = "cpu") -> BGNN:
        return build_bgnn(self.config.model, self.model, device)


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> None:
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "package_version": __version__,
        "backend": "bgnn",
        **{f.name: getattr(checkpoint, f.name) for f in dataclasses.fields(Checkpoint)},
        "config": dataclasses.asdict(checkpoint.config),
    }
    write_atomically(Path(path), lambda tmp: torch.save(payload, tmp), force=True)


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> Checkpoint:
    """Read and validate a checkpoint; CheckpointError for a wrong or corrupt file."""
    return checkpoint_from_payload(read_payload(path, map_location), path)


def checkpoint_from_payload(payload: Any, path: str | Path) -> Checkpoint:
    """Validate a BGNN checkpoint's contents (read from `path`, named in errors)."""
    check_header(payload, path)
    try:
        fields = {f.name for f in dataclasses.fields(Checkpoint)}
        values = {k: v for k, v in payload.items() if k in fields}
        values["config"] = config_from_dict(payload["config"], str(path), legacy=True)
        checkpoint = Checkpoint(**values)
        checkpoint.build_model()  # the weights must fit the configured network
    except (KeyError, TypeError, RuntimeError, BgnnError) as exc:
        raise CheckpointError(f"{path}: corrupt checkpoint ({exc})") from exc
    return checkpoint
