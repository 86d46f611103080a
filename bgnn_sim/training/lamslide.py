"""LaM-SLidE stage 1: train the autoencoder on single frames of a LIGGGHTS dataset.

Every step reads one random frame, draws fresh identifiers for its particles (so identifiers
never stand for places), encodes, decodes by identifier and scores the reconstruction:

    loss = |x' - x|^2 (normalised positions) + (|x'_i - x'_j| - |x_i - x_j|)^2 over neighbour
           pairs (within `neighbour_radii` particle radii) + 0.1 cross-entropy of the types

The neighbour term replaces LaM-SLidE's all-pairs distance loss, which is quadratic in the
particle count. Runs resume exactly from `autoencoder.pt` (weights, optimiser, step, RNG draws
keyed by the step).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree

from bgnn_sim.configfile import read_toml, typed
from bgnn_sim.errors import BgnnError
from bgnn_sim.geometry.wall import Wall
from bgnn_sim.io.outputs import write_atomically
from bgnn_sim.models.lamslide.autoencoder import (
    Autoencoder,
    AutoencoderConfig,
    denormalise_positions,
    normalise_positions,
    normalised_length,
)
from bgnn_sim.models.lamslide.ids import identity_swap_rate
from bgnn_sim.training.windows import Window, WindowDataset

CHECKPOINT = "autoencoder.pt"
FORMAT = "bgnn-sim-lamslide-autoencoder"


@dataclass(frozen=True)
class AutoencoderTraining:
    """Settings of stage 1 (the autoencoder)."""

    model: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    steps: int = 20_000
    lr: float = 3e-4
    neighbour_radii: float = 4.0
    checkpoint_every: int = 250
    seed: int = 0


def load_autoencoder_training(path: str | Path | None, steps: int | None) -> AutoencoderTraining:
    """Settings from a TOML file (a [model] table inside) and a --steps override."""
    data = dict(read_toml(path)) if path is not None else {}
    source = str(path or "defaults")
    model = typed(AutoencoderConfig, data.pop("model", {}), f"{source} [model]")
    settings = typed(AutoencoderTraining, {**data, "model": model}, source)
    return settings if steps is None else dataclasses.replace(settings, steps=steps)


def scene_bounds(walls: list[Wall]) -> torch.Tensor:
    """[2, 3] float32 box of the walls' vertices: the frame positions are normalised to it."""
    vertices = np.concatenate([w.vertices for w in walls])
    return torch.tensor(np.stack([vertices.min(axis=0), vertices.max(axis=0)]), dtype=torch.float32)


def autoencoder_loss(
    model: Autoencoder, frame: Window, radius: float, neighbour_radii: float, generator
) -> tuple[torch.Tensor, dict]:
    """The stage-1 loss of one frame (a Window of length 1) and its reconstruction figures:
    mean error in particle diameters and the identity-swap rate."""
    bounds = scene_bounds(frame.walls)
    x = normalise_positions(frame.positions[0].float(), bounds)
    types = frame.types - 1
    codes = model.ids.draw(len(x), generator)
    everyone = torch.ones(len(x), dtype=torch.bool)
    decoded = model.decode(model.encode(x, types, codes, everyone), codes)
    position = ((decoded.positions - x) ** 2).sum(dim=1).mean()
    cutoff = normalised_length(neighbour_radii * radius, bounds)
    pairs = torch.from_numpy(cKDTree(x.detach().numpy()).query_pairs(cutoff, output_type="ndarray"))
    distance = torch.zeros(())
    if len(pairs):
        i, j = pairs.long().T
        true = (x[i] - x[j]).norm(dim=1)
        ours = (decoded.positions[i] - decoded.positions[j]).norm(dim=1)
        distance = ((ours - true) ** 2).mean()
    kinds = torch.nn.functional.cross_entropy(decoded.type_logits, types)
    metres = denormalise_positions(decoded.positions.detach(), bounds)
    truth = frame.positions[0].float()
    figures = {
        "error_diameters": float((metres - truth).norm(dim=1).mean() / (2 * radius)),
        "swap_rate": identity_swap_rate(metres, truth),
    }
    return position + distance + 0.1 * kinds, figures


def train_autoencoder(
    dataset_dir: Path,
    out_dir: Path,
    settings: AutoencoderTraining,
    resume: bool = False,
    on_step: Callable[[int, float], None] | None = None,
) -> dict:
    """Train (or resume) stage 1 into out_dir/autoencoder.pt; returns the test-split figures."""
    out_dir = Path(out_dir)
    frames = WindowDataset(dataset_dir, "train", 1)
    radius = float(frames.manifest["material"]["radius"])
    model = Autoencoder(settings.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    step = _resume(out_dir / CHECKPOINT, model, optimizer) if resume else 0
    while step < settings.steps:
        generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + step)
        index = int(torch.randint(len(frames), (), generator=generator))
        loss, _ = autoencoder_loss(model, frames[index], radius, settings.neighbour_radii,
                                   generator)  # fmt: skip
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if on_step is not None:
            on_step(step, loss.item())
        if step % settings.checkpoint_every == 0 or step == settings.steps:
            _save(out_dir / CHECKPOINT, model, optimizer, step, settings)
    return evaluate_autoencoder(model, dataset_dir, "test", radius)


def evaluate_autoencoder(model: Autoencoder, dataset_dir: Path, split: str, radius: float,
                         frames: int = 10) -> dict:  # fmt: skip
    """Mean reconstruction error (diameters) and swap rate over frames spread over a split."""
    windows = WindowDataset(dataset_dir, split, 1)
    picks = np.linspace(0, len(windows) - 1, min(frames, len(windows))).round().astype(int)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        figures = [autoencoder_loss(model, windows[int(k)], radius, 0.0, generator)[1]
                   for k in picks]  # fmt: skip
    return {key: float(np.mean([f[key] for f in figures])) for key in figures[0]}


def _save(path: Path, model, optimizer, step: int, settings: AutoencoderTraining) -> None:
    payload = {"format": FORMAT, "version": 1, "step": step, "model": model.state_dict(),
               "optimizer": optimizer.state_dict(),
               "settings": dataclasses.asdict(settings)}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: torch.save(payload, tmp), force=True)


def _resume(path: Path, model, optimizer) -> int:
    if not path.is_file():
        return 0
    payload = torch.load(path, weights_only=True)
    if payload.get("format") != FORMAT:
        raise BgnnError(f"{path}: not a LaM-SLidE autoencoder checkpoint")
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    return int(payload["step"])
