"""LaM-SLidE training: stage 1, the autoencoder; stage 2, the latent dynamics.

Stage 1 trains the autoencoder on single frames of a LIGGGHTS dataset. Every step reads one
random frame, draws fresh identifiers for its particles (so identifiers never stand for places),
encodes, decodes by identifier and scores the reconstruction:

    loss = |x' - x|^2 (normalised positions) + (|x'_i - x'_j| - |x_i - x_j|)^2 over neighbour
           pairs (within `neighbour_radii` particle radii) + 0.1 cross-entropy of the types

The neighbour term replaces LaM-SLidE's all-pairs distance loss, which is quadratic in the
particle count.

Stage 2 freezes that autoencoder, encodes windows of context + future frames (the same fresh
identifiers in every frame of a window) and trains the flow-matching dynamics on the latents,
conditioned on the walls' state per frame and the container's triangles.

Both stages resume exactly from their checkpoint (weights, optimiser, step; random draws are
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
from bgnn_sim.dem.dataset import training_description
from bgnn_sim.errors import BgnnError
from bgnn_sim.io.outputs import write_atomically
from bgnn_sim.models.lamslide.autoencoder import (
    Autoencoder,
    AutoencoderConfig,
    denormalise_positions,
    normalise_positions,
    normalised_length,
    scene_bounds,
)
from bgnn_sim.models.lamslide.dynamics import (
    DynamicsConfig,
    LatentDynamics,
    flow_matching_loss,
    geometry_of,
    wall_state,
)
from bgnn_sim.models.lamslide.ids import identity_swap_rate
from bgnn_sim.training.checkpoint import read_payload
from bgnn_sim.training.windows import Window, WindowDataset

CHECKPOINT = "autoencoder.pt"
DYNAMICS_CHECKPOINT = "dynamics.pt"
FORMAT = "bgnn-sim-lamslide-autoencoder"
DYNAMICS_FORMAT = "bgnn-sim-lamslide-dynamics"


@dataclass(frozen=True)
class StageTraining:
    """What both stages share: Adam steps at a fixed rate, checkpoints, the seed of the draws."""

    steps: int = 20_000
    lr: float = 3e-4
    checkpoint_every: int = 250
    seed: int = 0


@dataclass(frozen=True)
class AutoencoderTraining(StageTraining):
    """Settings of stage 1 (the autoencoder)."""

    model: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    neighbour_radii: float = 4.0


@dataclass(frozen=True)
class DynamicsTraining(StageTraining):
    """Settings of stage 2 (the latent dynamics)."""

    model: DynamicsConfig = field(default_factory=DynamicsConfig)


def load_stage_settings(stage: str, path: str | Path | None, steps: int | None):
    """AutoencoderTraining or DynamicsTraining from a TOML file (a [model] table inside) and a
    --steps override."""
    settings_type, model_type = {
        "autoencoder": (AutoencoderTraining, AutoencoderConfig),
        "dynamics": (DynamicsTraining, DynamicsConfig),
    }[stage]
    data = dict(read_toml(path)) if path is not None else {}
    source = str(path or "defaults")
    model = typed(model_type, data.pop("model", {}), f"{source} [model]")
    settings = typed(settings_type, {**data, "model": model}, source)
    return settings if steps is None else dataclasses.replace(settings, steps=steps)


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
    frames = WindowDataset(dataset_dir, "train", 1)
    radius = float(frames.manifest["material"]["radius"])
    model = Autoencoder(settings.model)

    def loss_of(generator) -> torch.Tensor:
        frame = frames[int(torch.randint(len(frames), (), generator=generator))]
        return autoencoder_loss(model, frame, radius, settings.neighbour_radii, generator)[0]

    _optimise(model, loss_of, Path(out_dir) / CHECKPOINT, FORMAT, settings, resume, on_step)
    return evaluate_autoencoder(model, dataset_dir, "test", radius)


def train_dynamics(
    dataset_dir: Path,
    out_dir: Path,
    autoencoder_path: Path,
    settings: DynamicsTraining,
    resume: bool = False,
    on_step: Callable[[int, float], None] | None = None,
) -> float:
    """Train (or resume) stage 2 into out_dir/dynamics.pt with a frozen stage-1 autoencoder;
    returns the last loss. The checkpoint embeds the autoencoder, so it alone rolls out."""
    autoencoder = autoencoder_from(autoencoder_path)
    config = settings.model
    if config.width != autoencoder.config.width:
        raise BgnnError(f"dynamics width {config.width} differs from the autoencoder's "
                        f"{autoencoder.config.width}")  # fmt: skip
    windows = WindowDataset(dataset_dir, "train", config.context + config.future)
    model = LatentDynamics(config)

    def loss_of(generator) -> torch.Tensor:
        window = windows[int(torch.randint(len(windows), (), generator=generator))]
        latents, walls, geometry = encode_window(autoencoder, window, generator)
        context, future = latents[: config.context], latents[config.context :]
        return flow_matching_loss(model, context, future, walls, geometry, generator)

    embedded = {"autoencoder": autoencoder.state_dict(),
                "autoencoder_settings": dataclasses.asdict(autoencoder.config),
                "data": training_description(dataset_dir, windows.manifest)}  # fmt: skip
    path = Path(out_dir) / DYNAMICS_CHECKPOINT
    return _optimise(model, loss_of, path, DYNAMICS_FORMAT, settings, resume, on_step, embedded)


def _optimise(model, loss_of, path: Path, kind: str, settings: StageTraining, resume: bool,
              on_step, extra: dict | None = None) -> float:  # fmt: skip
    """The loop both stages share: Adam on `loss_of(generator)` up to settings.steps, the draws
    keyed by the step (exact resume), checkpoints every `checkpoint_every` steps and at the end.
    Returns the last loss."""
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    step = _resume(path, model, optimizer, kind) if resume else 0
    loss = torch.tensor(float("nan"))
    while step < settings.steps:
        loss = loss_of(torch.Generator().manual_seed(settings.seed * 1_000_003 + step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if on_step is not None:
            on_step(step, loss.item())
        if step % settings.checkpoint_every == 0 or step == settings.steps:
            _save(path, model, optimizer, step, settings, kind, **(extra or {}))
    return loss.item()


def encode_window(autoencoder: Autoencoder, window: Window, generator):
    """Latents [T, L, D] of a window's frames (one draw of identifiers for all of them), its
    wall state [T, WALL_STATE] and its geometry tokens' inputs [G, 7]."""
    bounds = scene_bounds(window.walls)
    codes = autoencoder.ids.draw(window.positions.shape[1], generator)
    everyone = torch.ones(len(codes), dtype=torch.bool)
    with torch.no_grad():
        latents = torch.stack([
            autoencoder.encode(normalise_positions(frame.float(), bounds), window.types - 1,
                               codes, everyone)
            for frame in window.positions
        ])  # fmt: skip
    return latents, wall_state(window.walls, window.time), geometry_of(window.walls, bounds)


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


def _save(path: Path, model, optimizer, step: int, settings, kind: str = FORMAT, **extra) -> None:
    payload = {"format": kind, "version": 1, "step": step, "model": model.state_dict(),
               "optimizer": optimizer.state_dict(),
               "settings": dataclasses.asdict(settings), **extra}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: torch.save(payload, tmp), force=True)


def load_stage(path: Path, kind: str = FORMAT) -> dict:
    """A stage checkpoint's payload; BgnnError for a missing or foreign file."""
    payload = read_payload(path)
    if not isinstance(payload, dict) or payload.get("format") != kind:
        raise BgnnError(f"{path}: not a LaM-SLidE {kind.rsplit('-', 1)[-1]} checkpoint")
    return payload


def autoencoder_from(path: Path) -> Autoencoder:
    """The trained stage-1 autoencoder of a checkpoint, frozen."""
    payload = load_stage(Path(path))
    config = typed(AutoencoderConfig, payload["settings"]["model"], str(path))
    model = Autoencoder(config)
    model.load_state_dict(payload["model"])
    return model.eval().requires_grad_(False)


def _resume(path: Path, model, optimizer, kind: str = FORMAT) -> int:
    if not path.is_file():
        return 0
    payload = load_stage(path, kind)
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    return int(payload["step"])


def lamslide_from_checkpoint(path: Path, seed: int = 0):
    """A LaM-SLidE rollout backend from a stage-2 checkpoint (which embeds its autoencoder), and
    the checkpoint's payload."""
    payload = load_stage(Path(path), DYNAMICS_FORMAT)
    return lamslide_from_payload(payload, str(path), seed), payload


def lamslide_from_payload(payload: dict, source: str, seed: int = 0):
    """The rollout backend of a stage-2 checkpoint's contents (read from `source`)."""
    from bgnn_sim.models.lamslide.simulator import LamSlideSimulator

    autoencoder = Autoencoder(typed(AutoencoderConfig, payload["autoencoder_settings"], source))
    autoencoder.load_state_dict(payload["autoencoder"])
    dynamics = LatentDynamics(typed(DynamicsConfig, payload["settings"]["model"], source))
    dynamics.load_state_dict(payload["model"])
    return LamSlideSimulator(autoencoder.eval(), dynamics.eval(), seed)
