"""LaM-SLidE training: stage 1, the autoencoder; stage 2, the latent dynamics.

The model steps `stride` dataset frames at a time (set in stage 1, inherited by stage 2).

Stage 1 trains the autoencoder on pairs of frames of a LIGGGHTS dataset: an anchor frame and a
target frame 1 to `reach` model frames after it (pairs in both directions had not started to
learn after 600 steps, where these had). Every step draws fresh identifiers (so identifiers
never stand for places), encodes the target from the anchors, decodes at the anchors and scores
the reconstruction, in particle diameters:

    loss = |x' - x|^2 + (|x'_i - x'_j| - |x_i - x_j|)^2 over neighbour pairs (within
           `neighbour_radii` particle radii) + 0.1 cross-entropy of the types

The neighbour term replaces LaM-SLidE's all-pairs distance loss, which is quadratic in the
particle count.

Stage 2 freezes that autoencoder, encodes windows of context + future frames from the first
frame's positions (the same fresh identifiers in every frame of a window) and trains the
flow-matching dynamics on the latents, conditioned on the walls' state per frame and the
container's triangles.

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

from bgnn_sim.configfile import Checked, read_toml, setting, subtable, typed
from bgnn_sim.dem.dataset import training_description
from bgnn_sim.errors import BgnnError
from bgnn_sim.io.outputs import write_atomically
from bgnn_sim.models.lamslide.autoencoder import (
    Autoencoder,
    AutoencoderConfig,
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
from bgnn_sim.models.lamslide.simulator import DYNAMICS_FORMAT, lamslide_from_payload
from bgnn_sim.models.loading import read_payload
from bgnn_sim.training.windows import Window, WindowDataset

CHECKPOINT = "autoencoder.pt"
DYNAMICS_CHECKPOINT = "dynamics.pt"
FORMAT = "bgnn-sim-lamslide-autoencoder"


@dataclass(frozen=True)
class StageTraining(Checked):
    """What both stages share: Adam steps at a rate decaying exponentially from `lr` to
    `lr_final`, checkpoints, the seed of the draws."""

    steps: int = setting(20_000, at_least=1)
    lr: float = setting(3e-4, above=0.0)
    lr_final: float = setting(3e-5, above=0.0)
    checkpoint_every: int = setting(250, at_least=1)
    seed: int = setting(0, at_least=0)


@dataclass(frozen=True)
class AutoencoderTraining(StageTraining):
    """Settings of stage 1 (the autoencoder)."""

    model: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    neighbour_radii: float = setting(4.0, above=0.0)
    stride: int = setting(5, at_least=1)
    reach: int = setting(11, at_least=1)


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
    model = typed(model_type, subtable(data, "model", source), f"{source} [model]")
    data.pop("model", None)
    settings = typed(settings_type, {**data, "model": model}, source)
    return settings if steps is None else dataclasses.replace(settings, steps=steps)


def autoencoder_loss(
    model: Autoencoder, window: Window, neighbour_radii: float, generator
) -> tuple[torch.Tensor, dict]:
    """The stage-1 loss of a window's first frame (the anchors) and one random later frame, and
    its reconstruction figures: mean error in particle diameters, the identity-swap rate and, for
    scale, how far the particles moved between the two frames (diameters)."""
    target = int(torch.randint(1, len(window.positions), (), generator=generator))
    anchors, truth = window.positions[0], window.positions[target]
    bounds = scene_bounds(window.walls)
    types = window.types - 1
    codes = model.ids.draw(len(truth), generator)
    everyone = torch.ones(len(truth), dtype=torch.bool)
    latents = model.encode(truth, anchors, types, codes, everyone, bounds)
    decoded = model.decode(latents, anchors, codes, bounds)
    unit = model.config.displacement_unit
    miss = (decoded.positions - truth) / unit
    position = (miss**2).sum(dim=1).mean()
    radius = unit / 2  # the unit is the particle diameter
    pairs = cKDTree(truth.numpy()).query_pairs(neighbour_radii * radius, output_type="ndarray")
    distance = torch.zeros(())
    if len(pairs):
        i, j = torch.from_numpy(pairs).long().T
        true = (truth[i] - truth[j]).norm(dim=1)
        ours = (decoded.positions[i] - decoded.positions[j]).norm(dim=1)
        distance = (((ours - true) / unit) ** 2).mean()
    kinds = torch.nn.functional.cross_entropy(decoded.type_logits, types)
    figures = {
        "error_diameters": float(miss.detach().norm(dim=1).mean()),
        "swap_rate": identity_swap_rate(decoded.positions.detach(), truth),
        "moved_diameters": float(((truth - anchors) / unit).norm(dim=1).mean()),
    }
    return (position + distance).float() + 0.1 * kinds, figures


def train_autoencoder(
    dataset_dir: Path,
    out_dir: Path,
    settings: AutoencoderTraining,
    resume: bool = False,
    on_step: Callable[[int, float], None] | None = None,
) -> dict:
    """Train (or resume) stage 1 into out_dir/autoencoder.pt; returns the test-split figures.
    The displacement unit is set to the dataset's particle diameter."""
    windows = WindowDataset(dataset_dir, "train", settings.reach + 1, settings.stride)
    diameter = 2 * float(windows.manifest["material"]["radius"])
    settings = dataclasses.replace(
        settings, model=dataclasses.replace(settings.model, displacement_unit=diameter)
    )
    model = Autoencoder(settings.model)

    def loss_of(generator) -> torch.Tensor:
        window = windows[int(torch.randint(len(windows), (), generator=generator))]
        return autoencoder_loss(model, window, settings.neighbour_radii, generator)[0]

    _optimise(model, loss_of, Path(out_dir) / CHECKPOINT, FORMAT, settings, resume, on_step)
    return evaluate_autoencoder(model, dataset_dir, "test", settings)


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
    autoencoder, stage1 = autoencoder_from(autoencoder_path)
    config = settings.model
    if config.width != autoencoder.config.width:
        raise BgnnError(f"dynamics width {config.width} differs from the autoencoder's "
                        f"{autoencoder.config.width}")  # fmt: skip
    length = config.context + config.future
    if length - 1 > stage1.reach:
        raise BgnnError(f"a window of {length} frames reaches {length - 1} frames past its "
                        f"first; the autoencoder was trained to reach {stage1.reach}")  # fmt: skip
    windows = WindowDataset(dataset_dir, "train", length, stage1.stride)
    model = LatentDynamics(config)

    def loss_of(generator) -> torch.Tensor:
        window = windows[int(torch.randint(len(windows), (), generator=generator))]
        latents, walls, geometry = encode_window(autoencoder, window, generator)
        context, future = latents[: config.context], latents[config.context :]
        return flow_matching_loss(model, context, future, walls, geometry, generator)

    embedded = {
        "autoencoder": autoencoder.state_dict(),
        "autoencoder_settings": dataclasses.asdict(autoencoder.config),
        "data": training_description(dataset_dir, windows.manifest, stage1.stride),
    }
    path = Path(out_dir) / DYNAMICS_CHECKPOINT
    return _optimise(model, loss_of, path, DYNAMICS_FORMAT, settings, resume, on_step, embedded)


def _optimise(model, loss_of, path: Path, kind: str, settings: StageTraining, resume: bool,
              on_step, extra: dict | None = None) -> float:  # fmt: skip
    """The loop both stages share: Adam on `loss_of(generator)` up to settings.steps with the
    decaying rate, the draws keyed by the step (exact resume), checkpoints every
    `checkpoint_every` steps and at the end. Returns the last loss."""
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    step = _resume(path, model, optimizer, kind) if resume else 0
    loss = torch.tensor(float("nan"))
    while step < settings.steps:
        for group in optimizer.param_groups:  # set every step: resuming keeps the schedule
            group["lr"] = settings.lr * (settings.lr_final / settings.lr) ** (step / settings.steps)
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
    """Latents [T, L, D] of a window's frames, each read at the particles' positions in the first
    frame (one draw of identifiers for all of them), its wall state [T, WALL_STATE] and its
    geometry tokens' inputs [G, 7]."""
    bounds = scene_bounds(window.walls)
    anchors = window.positions[0]
    codes = autoencoder.ids.draw(len(anchors), generator)
    everyone = torch.ones(len(codes), dtype=torch.bool)
    types = window.types - 1
    with torch.no_grad():
        latents = torch.stack([autoencoder.encode(frame, anchors, types, codes, everyone, bounds)
                               for frame in window.positions])  # fmt: skip
    return latents, wall_state(window.walls, window.time), geometry_of(window.walls, bounds)


def evaluate_autoencoder(model: Autoencoder, dataset_dir: Path, split: str,
                         settings: AutoencoderTraining, windows: int = 20) -> dict:  # fmt: skip
    """Mean reconstruction figures (see autoencoder_loss) over windows spread over a split."""
    dataset = WindowDataset(dataset_dir, split, settings.reach + 1, settings.stride)
    picks = np.linspace(0, len(dataset) - 1, min(windows, len(dataset))).round().astype(int)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        figures = [autoencoder_loss(model, dataset[int(k)], 0.0, generator)[1] for k in picks]
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


def export_dynamics(source: str | Path, target: str | Path) -> None:
    """Copy a stage-2 checkpoint without its optimiser state: the file a model is shipped as."""
    payload = load_stage(Path(source), DYNAMICS_FORMAT)
    shipped = {key: value for key, value in payload.items() if key != "optimizer"}
    write_atomically(Path(target), lambda tmp: torch.save(shipped, tmp), force=True)


def autoencoder_from(path: Path) -> tuple[Autoencoder, AutoencoderTraining]:
    """The trained stage-1 autoencoder of a checkpoint, frozen, and its training settings."""
    payload = load_stage(Path(path))
    settings = dict(payload["settings"])
    config = typed(AutoencoderConfig, settings.pop("model"), str(path))
    model = Autoencoder(config)
    model.load_state_dict(payload["model"])
    stage1 = typed(AutoencoderTraining, {**settings, "model": config}, str(path))
    return model.eval().requires_grad_(False), stage1


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
