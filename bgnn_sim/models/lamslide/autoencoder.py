"""LaM-SLidE's autoencoder: the particles of one frame <-> L latent tokens.

Encoder (Perceiver style): each active particle becomes a token from the Fourier features of its
position, its type and its identifier; L learned latent queries cross-attend to the tokens, then
self-attend. Decoder: each particle's identifier becomes a query that cross-attends to the
latents (after a self-attention block on them) and is read out by heads for its position, type
and presence. Queries are independent, so decoding runs in chunks: linear in the particle count.

Positions enter and leave normalised to the scene's box (`normalise_positions`): about [-1, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bgnn_sim.geometry.wall import Wall, walls_bounds
from bgnn_sim.models.lamslide.ids import FactorisedIds


@dataclass(frozen=True)
class AutoencoderConfig:
    """Sizes of the autoencoder.

    Attributes:
        width: token and latent width.
        latents: latent tokens L.
        heads: attention heads.
        encoder_blocks: self-attention blocks over the latents after the cross-attention.
        frequencies: Fourier frequencies per axis (2^0 .. 2^(k-1) times pi).
        n_types: particle types.
        id_pool, id_factors, id_dim: the identifier scheme (FactorisedIds).
    """

    width: int = 128
    latents: int = 64
    heads: int = 4
    encoder_blocks: int = 2
    frequencies: int = 8
    n_types: int = 2
    id_pool: int = 32
    id_factors: int = 3
    id_dim: int = 96


@dataclass
class Decoded:
    """Per-particle read-out: positions [N, 3] (normalised), type_logits [N, T], exists [N]
    (logit that the particle is present)."""

    positions: Tensor
    type_logits: Tensor
    exists: Tensor


def scene_bounds(walls: list[Wall]) -> Tensor:
    """[2, 3] float32 box of the walls' vertices at rest: positions are normalised to it."""
    return torch.tensor(walls_bounds(walls), dtype=torch.float32)


def normalise_positions(positions: Tensor, bounds: Tensor) -> Tensor:
    """Positions [..., 3] (m) mapped into [-1, 1] by a scene box bounds [2, 3]."""
    center, half = bounds.mean(dim=0), (bounds[1] - bounds[0]).max() / 2
    return (positions - center) / half


def normalised_length(length: float, bounds: Tensor) -> float:
    """A length (m) in the units of normalise_positions."""
    return float(length / ((bounds[1] - bounds[0]).max() / 2))


def denormalise_positions(normalised: Tensor, bounds: Tensor) -> Tensor:
    """The inverse of normalise_positions."""
    center, half = bounds.mean(dim=0), (bounds[1] - bounds[0]).max() / 2
    return normalised * half + center


class Autoencoder(nn.Module):
    """`encode(...) -> latents [L, width]`, `decode(latents, codes) -> Decoded`."""

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.ids = FactorisedIds(config.id_pool, config.id_factors, config.id_dim)
        self.type_embedding = nn.Embedding(config.n_types, 16)
        d_in = 6 * config.frequencies + 16 + config.id_dim
        self.tokenizer = nn.Sequential(nn.Linear(d_in, w), nn.GELU(), nn.Linear(w, w))
        self.latent_queries = nn.Parameter(torch.randn(config.latents, w) / math.sqrt(w))
        self.read_particles = CrossAttention(w, config.heads)
        self.encoder = nn.ModuleList(_self_attention(w, config.heads)
                                     for _ in range(config.encoder_blocks))  # fmt: skip
        self.latent_norm = nn.LayerNorm(w)
        self.query = nn.Linear(config.id_dim, w)
        self.decoder_block = _self_attention(w, config.heads)
        self.read_latents = CrossAttention(w, config.heads)
        self.position_head = nn.Linear(w, 3)
        self.type_head = nn.Linear(w, config.n_types)
        self.exists_head = nn.Linear(w, 1)

    def encode(self, positions: Tensor, types: Tensor, codes: Tensor, active: Tensor) -> Tensor:
        """Latents [L, width] of one frame.

        Args:
            positions: [N, 3] normalised positions.
            types: [N] int64 types from 0.
            codes: [N, F] identifier codes.
            active: [N] bool; inactive particles (gone through a sink) are not read.
        """
        features = torch.cat([fourier_features(positions, self.config.frequencies),
                              self.type_embedding(types), self.ids(codes)], dim=1)  # fmt: skip
        tokens = self.tokenizer(features[active])
        latents = self.read_particles(self.latent_queries, tokens)
        for block in self.encoder:
            latents = block(latents[None])[0]
        return self.latent_norm(latents)

    def decode(self, latents: Tensor, codes: Tensor, chunk: int = 4096) -> Decoded:
        """Read out the particles with identifier codes [N, F] from latents [L, width]."""
        context = self.decoder_block(latents[None])[0]
        parts = [self._read(context, codes[start : start + chunk])
                 for start in range(0, len(codes), chunk)]  # fmt: skip
        return Decoded(*(torch.cat(p) for p in zip(*parts, strict=True)))

    def _read(self, context: Tensor, codes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        hidden = self.read_latents(self.query(self.ids(codes)), context)
        return self.position_head(hidden), self.type_head(hidden), self.exists_head(hidden)[:, 0]


class CrossAttention(nn.Module):
    """queries [Q, D] <- attention over keys [K, D], then an MLP; both pre-norm and residual."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm_q, self.norm_kv = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 2 * width), nn.GELU(),
                                 nn.Linear(2 * width, width))  # fmt: skip

    def forward(self, queries: Tensor, keys: Tensor) -> Tensor:
        q, kv = self.norm_q(queries)[None], self.norm_kv(keys)[None]
        attended = queries + self.attention(q, kv, kv, need_weights=False)[0][0]
        return attended + self.mlp(attended)


def _self_attention(width: int, heads: int) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, activation="gelu",
                                      batch_first=True, norm_first=True)  # fmt: skip


def fourier_features(positions: Tensor, frequencies: int) -> Tensor:
    """[N, 6k] sin and cos of 2^j pi x for each coordinate of positions [N, 3], j < k."""
    scales = math.pi * 2.0 ** torch.arange(frequencies, device=positions.device)
    angles = (positions[:, :, None] * scales).flatten(1)
    return torch.cat([angles.sin(), angles.cos()], dim=1)
