"""LaM-SLidE's latent dynamics: a flow-matching transformer over windows of latent frames.

Given the latents of `context` past frames [Tc, L, D], the model generates the next `future`
frames [Tf, L, D] jointly. Training uses stochastic interpolants between noise e and the clean
future x1, x_tau = sin(pi tau / 2) x1 + cos(pi tau / 2) e, and the network predicts x1. Sampling
integrates the probability-flow ODE from tau = 0 (noise) to 1 with a few Euler steps.

The transformer alternates spatial attention (the L tokens of one frame, plus the container's
geometry tokens as extra keys) and temporal attention (one token across the frames). Every
block is conditioned by adaptive LayerNorm on the diffusion time and on each frame's wall state
(pose, velocity, gate presence), so drums that turn and gates that open are seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from bgnn_sim.configfile import Checked, setting
from bgnn_sim.geometry.wall import Rotation, Wall

# Triangle features for geometry tokens: centroid (3, normalised), normal (3), area (1).
TRIANGLE_FEATURES = 7
# A frame's wall state: fraction of removable walls still present (a gate), sin and cos of the
# rotation angle of the turning wall, its angular speed in rad/s over 10.
WALL_STATE = 4


@dataclass(frozen=True)
class DynamicsConfig(Checked):
    """Sizes of the latent dynamics model.

    Attributes:
        width: latent width D (the autoencoder's).
        heads: attention heads.
        blocks: (spatial, temporal) block pairs.
        context, future: frames conditioned on and generated per call.
        wall_state: features of a frame's wall state (see `wall_state` in the integration).
        sampling_steps: Euler steps of the ODE sampler.
    """

    width: int = setting(128, at_least=1)
    heads: int = setting(4, at_least=1)
    blocks: int = setting(4, at_least=0)
    context: int = setting(4, at_least=1)
    future: int = setting(8, at_least=1)
    wall_state: int = setting(WALL_STATE, at_least=1)
    sampling_steps: int = setting(10, at_least=1)


class LatentDynamics(nn.Module):
    """`forward(noisy_future, context, tau, wall_state, geometry) -> clean future [Tf, L, D]`."""

    def __init__(self, config: DynamicsConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        frames = config.context + config.future
        self.frame_embedding = nn.Parameter(torch.zeros(frames, 1, w))
        self.is_future = nn.Parameter(torch.zeros(2, w))
        self.time_embedding = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        self.wall_embedding = nn.Sequential(nn.Linear(config.wall_state, w), nn.SiLU(),
                                            nn.Linear(w, w))  # fmt: skip
        self.geometry_encoder = nn.Sequential(nn.Linear(TRIANGLE_FEATURES, w), nn.SiLU(),
                                              nn.Linear(w, w))  # fmt: skip
        self.blocks = nn.ModuleList(
            AdaptiveBlock(w, config.heads, axis) for _ in range(config.blocks)
            for axis in ("space", "time")
        )  # fmt: skip
        self.out = nn.Sequential(nn.LayerNorm(w), nn.Linear(w, w))

    def forward(
        self, noisy: Tensor, context: Tensor, tau: Tensor, wall_state: Tensor, geometry: Tensor
    ) -> Tensor:
        """Predicted clean future latents [Tf, L, D].

        Args:
            noisy: [Tf, L, D] x_tau of the future frames.
            context: [Tc, L, D] clean latents of the past frames.
            tau: scalar diffusion time in [0, 1].
            wall_state: [Tc + Tf, wall_state] per-frame wall pose and velocity.
            geometry: [G, TRIANGLE_FEATURES] the container's triangles.
        """
        tc = len(context)
        x = torch.cat([context + self.is_future[0], noisy + self.is_future[1]])
        x = x + self.frame_embedding[: len(x)]
        condition = self.time_embedding(_sinusoid(tau, x.shape[-1]))[None] + self.wall_embedding(
            wall_state
        )  # [T, D]
        walls = self.geometry_encoder(geometry)  # [G, D]
        for block in self.blocks:
            x = block(x, condition, walls)
        return self.out(x[tc:])


class AdaptiveBlock(nn.Module):
    """Attention along one axis ("space": tokens of a frame, with geometry tokens as extra keys;
    "time": one token across frames) and an MLP, both pre-norm with adaLN scale/shift/gate from
    the per-frame condition [T, D]."""

    def __init__(self, width: int, heads: int, axis: str) -> None:
        super().__init__()
        self.axis = axis
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(
            nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width)
        )
        self.modulation = nn.Linear(width, 6 * width)
        nn.init.zeros_(self.modulation.weight)  # every block starts as the identity
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: Tensor, condition: Tensor, geometry: Tensor) -> Tensor:
        """x [T, L, D] -> [T, L, D]."""
        modulation = self.modulation(condition)[:, None].chunk(6, dim=-1)  # each [T, 1, D]
        shift1, scale1, gate1, shift2, scale2, gate2 = modulation
        h = self.norm1(x) * (1 + scale1) + shift1
        x = x + gate1 * self._attend(h, geometry)
        h = self.norm2(x) * (1 + scale2) + shift2
        return x + gate2 * self.mlp(h)

    def _attend(self, h: Tensor, geometry: Tensor) -> Tensor:
        if self.axis == "space":  # frames are the batch; geometry tokens join as keys
            keys = torch.cat([h, geometry.expand(len(h), -1, -1)], dim=1)
            return self.attention(h, keys, keys, need_weights=False)[0]
        tokens = h.transpose(0, 1)  # tokens are the batch, frames the sequence
        return self.attention(tokens, tokens, tokens, need_weights=False)[0].transpose(0, 1)


def interpolant(clean: Tensor, noise: Tensor, tau: Tensor) -> Tensor:
    """x_tau = sin(pi tau / 2) clean + cos(pi tau / 2) noise."""
    angle = 0.5 * math.pi * tau
    return torch.sin(angle) * clean + torch.cos(angle) * noise


def flow_matching_loss(
    model: LatentDynamics,
    context: Tensor,
    future: Tensor,
    wall_state: Tensor,
    geometry: Tensor,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Mean squared error of the predicted clean future [Tf, L, D] at a random tau."""
    tau = torch.rand((), generator=generator)
    noise = torch.randn(future.shape, generator=generator)
    predicted = model(interpolant(future, noise, tau), context, tau, wall_state, geometry)
    return ((predicted - future) ** 2).mean()


@torch.no_grad()
def sample_future(
    model: LatentDynamics,
    context: Tensor,
    wall_state: Tensor,
    geometry: Tensor,
    shape: tuple[int, ...],
    generator: torch.Generator | None = None,
) -> Tensor:
    """Future latents [Tf, L, D] from noise by Euler steps of the probability-flow ODE.

    With the clean prediction c and the implied noise e = (x - sin c) / cos, the ODE reads
    dx/dtau = pi/2 (cos c - sin e); the last step lands on the clean prediction.
    """
    steps = model.config.sampling_steps
    x = torch.randn(shape, generator=generator)
    taus = torch.linspace(0.0, 1.0, steps + 1)
    for tau, next_tau in zip(taus[:-1], taus[1:], strict=True):
        clean = model(x, context, tau, wall_state, geometry)
        if next_tau >= 1.0:
            return clean
        angle = 0.5 * math.pi * tau
        noise = (x - torch.sin(angle) * clean) / torch.cos(angle)
        x = x + (next_tau - tau) * 0.5 * math.pi * (
            torch.cos(angle) * clean - torch.sin(angle) * noise
        )
    return x


def _sinusoid(tau: Tensor, width: int) -> Tensor:
    """[width] sinusoidal embedding of a scalar time in [0, 1]."""
    half = width // 2
    frequencies = torch.exp(-math.log(1000.0) * torch.arange(half) / half)
    angles = 1000.0 * tau * frequencies
    return torch.cat([angles.sin(), angles.cos()])


def geometry_of(walls: list[Wall], bounds: Tensor) -> Tensor:
    """[G, 7] geometry token inputs of every wall triangle at rest (the walls' motion enters
    through the per-frame wall state)."""
    triangles = torch.from_numpy(np.concatenate([w.vertices[w.faces] for w in walls]))
    return geometry_features(triangles.float(), bounds)


def geometry_features(triangles: Tensor, bounds: Tensor) -> Tensor:
    """[G, 7] geometry token inputs of triangles [G, 3, 3]: centroid normalised to the scene box
    bounds [2, 3], unit normal, area over the box's largest half-side squared."""
    center, half = bounds.mean(dim=0), (bounds[1] - bounds[0]).max() / 2
    a, b, c = triangles.unbind(dim=1)
    cross = torch.linalg.cross(b - a, c - a, dim=1)
    area = cross.norm(dim=1, keepdim=True) / 2
    normal = cross / (2 * area).clamp_min(1e-12)
    centroid = (triangles.mean(dim=1) - center) / half
    return torch.cat([centroid, normal, area / half**2], dim=1)


def wall_state(walls: list[Wall], times: Tensor) -> Tensor:
    """[T, WALL_STATE] float32 state of the walls at each time [T] (see WALL_STATE)."""
    removable = [w for w in walls if w.removed_at is not None]
    turning = next((w.motion for w in walls if isinstance(w.motion, Rotation)), None)
    speed = 2.0 * math.pi * turning.rpm / 60.0 if turning else 0.0
    rows = []
    for t in times.tolist():
        present = sum(w.present_at(t) for w in removable) / max(len(removable), 1)
        turned = max(t - turning.start, 0.0) if turning else 0.0
        spinning = speed if turning and t >= turning.start else 0.0
        rows.append([present, math.sin(speed * turned), math.cos(speed * turned), spinning / 10])
    return torch.tensor(rows, dtype=torch.float32)
