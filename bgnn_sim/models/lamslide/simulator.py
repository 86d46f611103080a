"""LaM-SLidE as a windowed rollout backend: encode the last frames, sample the latents of the
next ones with the flow-matching dynamics, decode every particle by its identifier at its
position in the first frame of the window."""

from __future__ import annotations

import torch
from torch import Tensor

from bgnn_sim.configfile import typed
from bgnn_sim.engine.state import ParticleState, Scene
from bgnn_sim.models.lamslide.autoencoder import Autoencoder, AutoencoderConfig, scene_bounds
from bgnn_sim.models.lamslide.dynamics import (
    DynamicsConfig,
    LatentDynamics,
    geometry_of,
    sample_future,
    wall_state,
)

# The format tag of a stage-2 (dynamics) checkpoint, which embeds its autoencoder.
DYNAMICS_FORMAT = "bgnn-sim-lamslide-dynamics"


class LamSlideSimulator:
    """Engine `WindowBackend`: `window(scene, state) -> [future, N, 3]` positions (m).

    The particles keep the identifiers drawn at the first window for the whole rollout; the seed
    fixes those draws and the sampling noise, so one seed is one member of an ensemble.
    """

    def __init__(self, autoencoder: Autoencoder, dynamics: LatentDynamics, seed: int = 0) -> None:
        self.autoencoder, self.dynamics = autoencoder, dynamics
        self.history = dynamics.config.context - 1
        self.generator = torch.Generator().manual_seed(seed)
        self.codes: Tensor | None = None
        self.network = dynamics  # what a window's sampling steps call: compiled or not

    def compile(self) -> None:
        """Run the latent dynamics through torch.compile: its sampling steps are most of a
        window's work at a few thousand particles, on shapes that never change (fixed-size
        latents), with many small operations to fuse. The first window pays the compilation."""
        self.network = torch.compile(self.dynamics)

    def reseed(self, seed: int) -> None:
        """Start another member of the ensemble: new identifiers and sampling noise."""
        self.generator.manual_seed(seed)
        self.codes = None

    def window(self, scene: Scene, state: ParticleState) -> Tensor:
        config = self.dynamics.config
        bounds = scene_bounds(scene.walls)
        if self.codes is None or len(self.codes) != len(state.ids):
            self.codes = self.autoencoder.ids.draw(len(state.ids), self.generator)
        frames = state.history[-config.context :]
        types, anchors = state.types - 1, frames[0]  # every frame is read from the first
        context = torch.stack([
            self.autoencoder.encode(frame, anchors, types, self.codes, state.active, bounds)
            for frame in frames
        ])  # fmt: skip
        offsets = torch.arange(1 - config.context, config.future + 1, dtype=torch.float64)
        walls = wall_state(scene.walls, state.time + scene.frame_dt * offsets)
        future = sample_future(self.network, context, walls, geometry_of(scene.walls, bounds),
                               (config.future, *context.shape[1:]), self.generator)  # fmt: skip
        queries = self.autoencoder.queries(anchors, self.codes, bounds)
        return torch.stack([self.autoencoder.read(latents, queries, anchors).positions
                            for latents in future])  # fmt: skip


def lamslide_from_payload(payload: dict, source: str, seed: int = 0) -> LamSlideSimulator:
    """The rollout backend of a stage-2 checkpoint's contents (read from `source`)."""
    autoencoder = Autoencoder(typed(AutoencoderConfig, payload["autoencoder_settings"], source))
    autoencoder.load_state_dict(payload["autoencoder"])
    dynamics = LatentDynamics(typed(DynamicsConfig, payload["settings"]["model"], source))
    dynamics.load_state_dict(payload["model"])
    return LamSlideSimulator(autoencoder.eval(), dynamics.eval(), seed)
