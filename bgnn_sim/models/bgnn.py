"""Boundary Graph Neural Network: encode-process-decode over particles and wall virtual nodes.

Nodes are the N particles followed by the W wall virtual nodes; edges carry messages from
particles and wall nodes to particles (walls receive nothing, so their latents stay as encoded).
The network predicts each particle's normalised acceleration.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

AGGREGATIONS = ("mean", "sum", "vpa")
WALL_FEATURES = 10
EDGE_FEATURES = 4


@dataclass(frozen=True)
class BGNNConfig:
    """Size and shape of the network (defaults: BGNN's hopper model).

    Attributes:
        latent: width of every latent vector and hidden layer.
        mlp_layers: hidden layers of every MLP.
        message_passing: processor blocks (unshared weights).
        aggregation: "mean", "sum" or "vpa" (sum / sqrt(count): variance-preserving, GNN-VPA).
        history: velocities per particle in the input.
        n_types: particle types (embedded).
        type_embedding: size of the type embedding.
    """

    latent: int = 128
    mlp_layers: int = 2
    message_passing: int = 5
    aggregation: str = "mean"
    history: int = 5
    n_types: int = 2
    type_embedding: int = 16

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation {self.aggregation!r} not in {AGGREGATIONS}")

    @property
    def particle_features(self) -> int:
        return 4 * self.history  # velocities (3 each) and their magnitudes


def mlp(d_in: int, width: int, d_out: int, hidden_layers: int) -> nn.Sequential:
    """ReLU MLP with `hidden_layers` hidden layers of size `width`."""
    layers: list[nn.Module] = []
    for k in range(hidden_layers):
        layers += [nn.Linear(d_in if k == 0 else width, width), nn.ReLU()]
    layers.append(nn.Linear(width if hidden_layers else d_in, d_out))
    return nn.Sequential(*layers)


def aggregate(
    messages: Tensor, receivers: Tensor, weight: Tensor, n_nodes: int, kind: str
) -> Tensor:
    """Weighted aggregation of edge messages [E, D] at their receivers -> [n_nodes, D].

    mean: sum(w m) / sum(w); sum: sum(w m); vpa: sum(w m) / sqrt(sum(w)). Nodes without
    incoming edges get zeros.
    """
    total = messages.new_zeros(n_nodes, messages.shape[1])
    total.index_add_(0, receivers, messages * weight[:, None])
    if kind == "sum":
        return total
    count = weight.new_zeros(n_nodes).index_add_(0, receivers, weight).clamp_min(1e-12)
    scale = count if kind == "mean" else count.sqrt()
    return total / scale[:, None]


class InteractionBlock(nn.Module):
    """e <- e + LN(MLP[e, h_recv, h_send]); h_particles <- h + LN(MLP[agg(e), h])."""

    def __init__(self, config: BGNNConfig) -> None:
        super().__init__()
        width, layers = config.latent, config.mlp_layers
        self.edge_mlp = nn.Sequential(mlp(3 * width, width, width, layers), nn.LayerNorm(width))
        self.node_mlp = nn.Sequential(mlp(2 * width, width, width, layers), nn.LayerNorm(width))
        self.aggregation = config.aggregation

    def edge_update(self, nodes: Tensor, edges: Tensor, edge_index: Tensor) -> Tensor:
        """LN(MLP[e, h_recv, h_send]) [E, D], with the first layer applied to the node latents
        before gathering them: the same map, but N rather than E rows go through it."""
        senders, receivers = edge_index
        mlp_layers, layer_norm = self.edge_mlp
        first = mlp_layers[0]
        on_edge, on_receiver, on_sender = first.weight.split(edges.shape[1], dim=1)
        hidden = (
            nn.functional.linear(edges, on_edge, first.bias)
            + nn.functional.linear(nodes, on_receiver)[receivers]
            + nn.functional.linear(nodes, on_sender)[senders]
        )
        return layer_norm(mlp_layers[1:](hidden))

    def forward(
        self, nodes: Tensor, edges: Tensor, edge_index: Tensor, weight: Tensor, n_particles: int
    ) -> tuple[Tensor, Tensor]:
        receivers = edge_index[1]
        edges = edges + self.edge_update(nodes, edges, edge_index)
        incoming = aggregate(edges, receivers, weight, n_particles, self.aggregation)
        particles = nodes[:n_particles]
        particles = particles + self.node_mlp(torch.cat([incoming, particles], 1))
        return torch.cat([particles, nodes[n_particles:]]), edges


class BGNN(nn.Module):
    """The graph network: `forward(graph) -> [N, 3]` normalised particle accelerations."""

    def __init__(self, config: BGNNConfig) -> None:
        super().__init__()
        self.config = config
        width, layers = config.latent, config.mlp_layers
        self.type_embedding = nn.Embedding(config.n_types, config.type_embedding)
        d_particle = config.particle_features + config.type_embedding
        self.particle_encoder = nn.Sequential(
            mlp(d_particle, width, width, layers), nn.LayerNorm(width)
        )
        self.wall_encoder = nn.Sequential(
            mlp(WALL_FEATURES, width, width, layers), nn.LayerNorm(width)
        )
        self.edge_encoder = nn.Sequential(
            mlp(EDGE_FEATURES, width, width, layers), nn.LayerNorm(width)
        )
        self.processor = nn.ModuleList(
            InteractionBlock(config) for _ in range(config.message_passing)
        )
        self.decoder = mlp(width, width, 3, layers)

    def forward(self, graph) -> Tensor:
        """graph: a `bgnn_sim.graph.features.Graph`. Returns [N, 3] normalised accelerations."""
        n = graph.n_particles
        particles = torch.cat([graph.particle_features, self.type_embedding(graph.types)], 1)
        nodes = torch.cat(
            [self.particle_encoder(particles), self.wall_encoder(graph.wall_features)]
        )
        edges = self.edge_encoder(graph.edge_features)
        for block in self.processor:
            nodes, edges = block(nodes, edges, graph.edge_index, graph.edge_weight, n)
        return self.decoder(nodes[:n])


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
