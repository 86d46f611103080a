"""`bgnn train`: configuration, output folder rules, resume, torchrun, progress."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bgnn_sim.errors import OutputExistsError
from bgnn_sim.training import distributed
from bgnn_sim.training.checkpoint import Checkpoint
from bgnn_sim.training.config import TrainConfig, load_train_config
from bgnn_sim.training.trainer import CHECKPOINT, Trainer, write_config


def train_session(
    dataset: Path,
    out: Path,
    config_path: Path | None = None,
    resume: bool = False,
    steps: int | None = None,
    device: str = "auto",
    use_torchrun: bool = False,
    force: bool = False,
    progress=None,
    init: Path | None = None,
) -> Checkpoint | None:
    """Train and return the final checkpoint (None on ranks other than 0).

    Args:
        init: a trained model to fine-tune (its weights start the run; `resume` takes over
            once the run has a checkpoint, so the same command continues it).
        progress: optional factory `progress(total, description, done)` returning a context
            manager that yields `advance(status)`; called on rank 0 only.
    """
    config = load_train_config(config_path) if config_path else TrainConfig()
    if steps is not None:
        config = dataclasses.replace(config, steps=steps)
    out = Path(out)
    if (out / CHECKPOINT).exists() and not (resume or force):
        raise OutputExistsError(
            f"{out} holds a training run; pass --resume to continue it or --force to restart"
        )
    context = distributed.start(device, use_torchrun)
    try:
        trainer = Trainer(Path(dataset), out, config, context)
        if resume and (out / CHECKPOINT).exists():
            trainer.resume()
        elif init is not None:
            trainer.start_from(Path(init))
        if context.is_main:
            out.mkdir(parents=True, exist_ok=True)
            write_config(out, config)
        if progress is None or not context.is_main:
            final = trainer.fit()
        else:
            with progress(config.steps, "training", done=trainer.step) as advance:
                final = trainer.fit(lambda step, loss: advance(f"loss {loss:.4g}"))
    finally:
        distributed.stop(context)
    return final if context.is_main else None
