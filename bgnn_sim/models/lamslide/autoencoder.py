"""LaM-SLidE's autoencoder: the particles of one frame <-> L latent tokens.

Adapted to granular flows of thousands of particles: every particle is read at an *anchor*, its
position in a reference frame (the first frame of the dynamics' window), and the latents hold
the displacement field from the anchors. LaM-SLidE's decoder finds a particle by its identifier
alone; on drum frames of 32, 256 and 1,568 particles that binding had not started to learn
after 800, 600 and 2,500 steps (the mean-position plateau), while the field from anchors beat
"no motion" within 200. Identifiers still enter every token and query, and every decoded
position belongs to its particle by construction.

Encoder (Perceiver style): each active particle becomes a token from the Fourier features of its
anchor, its displacement from it (in particle diameters), its type and its identifier; L learned
latent queries cross-attend to the tokens, then self-attend. Decoder: each particle's anchor and
identifier become a query that cross-attends to the latents (after a self-attention block on
them), read out by heads for its displacement and type. Queries are independent, so decoding
runs in chunks: linear in the particle count.

Positions and anchors enter and leave in metres; inside, places are normalised to the scene's box
(`normalise_positions`: about [-1, 1]) and displacements to `displacement_unit`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bgnn_sim.configfile import Checked, setting
from bgnn_sim.geometry.wall import Wall, walls_bounds
from bgnn_sim.models.lamslide.ids import FactorisedIds


@dataclass(frozen=True)
class AutoencoderConfig(Checked):
    """Sizes of the autoencoder.

    Attributes:
        width: token and latent width.
        latents: latent tokens L.
        heads: attention heads.
        encoder_blocks: self-attention blocks over the latents after the cross-attention.
        frequencies: Fourier frequencies per axis (2^0 .. 2^(k-1) times pi).
        n_types: particle types.
        id_pool, id_factors, id_dim: the identifier scheme (FactorisedIds).
        displacement_unit: metres per unit of displacement inside the network (the training
            data's particle diameter; set by the trainer).
    """

    width: int = setting(128, at_least=1)
    latents: int = setting(128, at_least=1)
    heads: int = setting(4, at_least=1)
    encoder_blocks: int = setting(2, at_least=0)
    frequencies: int = setting(8, at_least=1)
    n_types: int = setting(2, at_least=1)
    id_pool: int = setting(32, at_least=1)
    id_factors: int = setting(3, at_least=1)
    id_dim: int = setting(96, at_least=1)
    displacement_unit: float = setting(0.004, above=0.0)


@dataclass
class Decoded:
    """Per-particle read-out: positions [N, 3] (m) and type_logits [N, T]."""

    positions: Tensor
    type_logits: Tensor


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
    """`encode(...) -> latents [L, width]`, `decode(latents, ...) -> Decoded`."""

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.ids = FactorisedIds(config.id_pool, config.id_factors, config.id_dim)
        self.type_embedding = nn.Embedding(config.n_types, 16)
        place = 6 * config.frequencies
        self.tokenizer = nn.Sequential(nn.Linear(place + 3 + 16, w), nn.GELU(), nn.Linear(w, w))
        # Identifiers join tokens and queries through projections that start at zero: training
        # starts from the anchors' displacement field and takes identifiers in as they help.
        self.token_id, self.query_id = nn.Linear(config.id_dim, w), nn.Linear(config.id_dim, w)
        for projection in (self.token_id, self.query_id):
            nn.init.zeros_(projection.weight)
            nn.init.zeros_(projection.bias)
        self.latent_queries = nn.Parameter(torch.randn(config.latents, w) / math.sqrt(w))
        self.read_particles = CrossAttention(w, config.heads)
        self.encoder = nn.ModuleList(_self_attention(w, config.heads)
                                     for _ in range(config.encoder_blocks))  # fmt: skip
        self.latent_norm = nn.LayerNorm(w)
        self.query = nn.Sequential(nn.Linear(place, w), nn.GELU(), nn.Linear(w, w))
        self.decoder_block = _self_attention(w, config.heads)
        self.read_latents = CrossAttention(w, config.heads)
        self.displacement_head = nn.Linear(w, 3)
        self.type_head = nn.Linear(w, config.n_types)

    def encode(self, positions: Tensor, anchors: Tensor, types: Tensor, codes: Tensor,
               active: Tensor, bounds: Tensor) -> Tensor:  # fmt: skip
        """Latents [L, width] of one frame.

        Args:
            positions: [N, 3] positions (m) in the frame.
            anchors: [N, 3] positions (m) in the reference frame.
            types: [N] int64 types from 0.
            codes: [N, F] identifier codes.
            active: [N] bool; inactive particles (gone through a sink) are not read.
            bounds: [2, 3] the scene box (`scene_bounds`).
        """
        positions, anchors, types, codes = (x[active] for x in (positions, anchors, types, codes))
        moved = (positions - anchors) / self.config.displacement_unit
        features = torch.cat([self._place(anchors, bounds), moved.float(),
                              self.type_embedding(types)], dim=1)  # fmt: skip
        tokens = self.tokenizer(features) + self.token_id(self.ids(codes))
        latents = self.read_particles(self.latent_queries, tokens)
        for block in self.encoder:
            latents = block(latents[None])[0]
        return self.latent_norm(latents)

    def decode(self, latents: Tensor, anchors: Tensor, codes: Tensor, bounds: Tensor,
               chunk: int = 4096) -> Decoded:  # fmt: skip
        """Read out the particles at anchors [N, 3] (m) with identifier codes [N, F]."""
        return self.read(latents, self.queries(anchors, codes, bounds), anchors, chunk)

    def queries(self, anchors: Tensor, codes: Tensor, bounds: Tensor) -> Tensor:
        """[N, width] decoder queries of the particles at anchors [N, 3] (m) with codes [N, F]:
        the same for every frame read from these anchors (a rollout's window), so computed
        once for all of them."""
        return self.query(self._place(anchors, bounds)) + self.query_id(self.ids(codes))

    def read(self, latents: Tensor, queries: Tensor, anchors: Tensor, chunk: int = 4096):
        """`decode` with the particles' `queries` [N, width] given; queries attend in chunks
        (the attention's memory grows with the chunk, not with N)."""
        context = self.decoder_block(latents[None])[0]
        parts = [self._read(context, queries[k : k + chunk])
                 for k in range(0, len(queries), chunk)]  # fmt: skip
        moved, type_logits = (torch.cat(p) for p in zip(*parts, strict=True))
        return Decoded(anchors + moved.to(anchors.dtype) * self.config.displacement_unit,
                       type_logits)  # fmt: skip

    def _read(self, context: Tensor, queries: Tensor) -> tuple[Tensor, Tensor]:
        hidden = self.read_latents(queries, context)
        return self.displacement_head(hidden), self.type_head(hidden)

    def _place(self, anchors: Tensor, bounds: Tensor) -> Tensor:
        """[N, 6k] Fourier features of the anchors, normalised to the scene box."""
        return fourier_features(normalise_positions(anchors.float(), bounds),
                                self.config.frequencies)  # fmt: skip


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
