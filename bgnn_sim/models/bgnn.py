"""Boundary Graph Neural Network: encode-process-decode over particles and wall virtual nodes.

Nodes are the N particles followed by the W wall virtual nodes; edges carry messages from
particles and wall nodes to particles (walls receive nothing, so their latents stay as encoded).
The network predicts each particle's normalised acceleration (minus gravity, with
`known_gravity`: the simulator adds g dt^2 back).

With `wall_channel`, wall edges have their own encoder and their messages are aggregated apart
from the particles' (a mean over the particle's wall nodes, zero without any): one wall message
is no longer one vote among the ~10-30 particle messages of a dense bed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bgnn_sim.configfile import Checked, setting
from bgnn_sim.graph.features import edge_feature_count, particle_feature_count

AGGREGATIONS = ("mean", "sum", "vpa")
WALL_FEATURES = 10


@dataclass(frozen=True)
class BGNNConfig(Checked):
    """Size and shape of the network (defaults: BGNN's hopper model).

    Attributes:
        latent: width of every latent vector and hidden layer.
        mlp_layers: hidden layers of every MLP.
        message_passing: processor blocks (unshared weights).
        aggregation: "mean", "sum" or "vpa" (sum / sqrt(count): variance-preserving, GNN-VPA).
        history: velocities per particle in the input.
        n_types: particle types (embedded).
        type_embedding: size of the type embedding.
        known_gravity: the network predicts the acceleration minus g dt^2.
        contact_features: inverse-distance edge and nearest-wall node features (graph).
        merge_wall_nodes: face contacts and the nearest one, merged per shared point (graph).
        wall_channel: wall messages encoded and aggregated apart from particle messages.
    """

    latent: int = setting(128, at_least=1)
    mlp_layers: int = setting(2, at_least=0)
    message_passing: int = setting(5, at_least=0)
    aggregation: str = setting("mean", one_of=AGGREGATIONS)
    history: int = setting(5, at_least=1)
    n_types: int = setting(2, at_least=1)
    type_embedding: int = setting(16, at_least=1)
    known_gravity: bool = True
    contact_features: bool = True
    merge_wall_nodes: bool = True
    wall_channel: bool = True

    @property
    def particle_features(self) -> int:
        return particle_feature_count(self.history, self.contact_features)

    @property
    def edge_features(self) -> int:
        return edge_feature_count(self.contact_features)


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
    incoming edges get zeros. Sums in the weights' precision (float32 under a bfloat16
    processor: ~30 messages per particle would lose digits in bfloat16).
    """
    weighted = messages * weight[:, None]
    total = weighted.new_zeros(n_nodes, messages.shape[1])
    total.index_add_(0, receivers, weighted)
    if kind == "sum":
        return total
    count = weight.new_zeros(n_nodes).index_add_(0, receivers, weight).clamp_min(1e-12)
    scale = count if kind == "mean" else count.sqrt()
    return total / scale[:, None]


class InteractionBlock(nn.Module):
    """e <- e + LN(MLP[e, h_recv, h_send]); h_particles <- h + LN(MLP[agg(e), h]), where agg(e)
    is [agg(particle e), mean(wall e)] with a wall channel."""

    def __init__(self, config: BGNNConfig) -> None:
        super().__init__()
        width, layers = config.latent, config.mlp_layers
        self.edge_mlp = nn.Sequential(mlp(3 * width, width, width, layers), nn.LayerNorm(width))
        channels = 2 + config.wall_channel
        self.node_mlp = nn.Sequential(
            mlp(channels * width, width, width, layers), nn.LayerNorm(width)
        )
        self.aggregation = config.aggregation
        self.wall_channel = config.wall_channel

    def edge_update(self, nodes: Tensor, edges: Tensor, edge_index: Tensor) -> Tensor:
        """LN(MLP[e, h_recv, h_send]) [E, D], with the first layer applied to the node latents
        before gathering them: the same map, but N rather than E rows go through it. (The
        gathers are index_select: on CPU ~5x faster than indexing with a tensor.)"""
        senders, receivers = edge_index
        mlp_layers, layer_norm = self.edge_mlp
        first = mlp_layers[0]
        on_edge, on_receiver, on_sender = first.weight.split(edges.shape[1], dim=1)
        hidden = (
            nn.functional.linear(edges, on_edge, first.bias)
            + nn.functional.linear(nodes, on_receiver).index_select(0, receivers)
            + nn.functional.linear(nodes, on_sender).index_select(0, senders)
        )
        return layer_norm(mlp_layers[1:](hidden))

    def forward(
        self,
        nodes: Tensor,
        edges: Tensor,
        edge_index: Tensor,
        weight: Tensor,
        inbox: Tensor,
        n_particles: int,
    ) -> tuple[Tensor, Tensor]:
        """nodes [N + W, D], edges [E + W, D] (particle edges first), edge_index [2, E + W],
        weight [E + W], inbox [E + W]: the row of [channels * N] that each edge's message joins
        (its receiver, offset by N for a wall edge with a wall channel). Returns the updated
        nodes and edges."""
        edges = edges + self.edge_update(nodes, edges, edge_index)
        particles = nodes[:n_particles]
        channels = 1 + self.wall_channel
        # One scatter for both channels (slicing the edges apart would copy them, forward and
        # back); the wall channel's 1/k weights sum to 1, so any aggregation is their mean.
        incoming = aggregate(edges, inbox, weight, channels * n_particles, self.aggregation)
        width = edges.shape[1]
        incoming = incoming.view(channels, n_particles, width).transpose(0, 1).flatten(1)
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
            mlp(config.edge_features, width, width, layers), nn.LayerNorm(width)
        )
        if config.wall_channel:
            self.wall_edge_encoder = nn.Sequential(
                mlp(config.edge_features, width, width, layers), nn.LayerNorm(width)
            )
        self.processor = nn.ModuleList(
            InteractionBlock(config) for _ in range(config.message_passing)
        )
        self.decoder = mlp(width, width, 3, layers)

    def forward(self, graph, processor_dtype: torch.dtype | None = None) -> Tensor:
        """graph: a `bgnn_sim.graph.features.Graph`. Returns [N, 3] normalised accelerations.

        processor_dtype: run the processor's matrix products in this precision
        (torch.bfloat16) under autocast. Only the processor: the encoders read contact
        distances that bfloat16's ~3 significant digits would blur, and the residual latents,
        aggregations and decoder stay in float32.
        """
        n = graph.n_particles
        particles = torch.cat([graph.particle_features, self.type_embedding(graph.types)], 1)
        nodes = torch.cat(
            [self.particle_encoder(particles), self.wall_encoder(graph.wall_features)]
        )
        edges = self._encode_edges(graph)
        inbox = self._inbox(graph)
        lower = processor_dtype not in (None, nodes.dtype)
        with torch.autocast(nodes.device.type, processor_dtype, enabled=lower):
            for block in self.processor:
                nodes, edges = block(nodes, edges, graph.edge_index, graph.edge_weight, inbox, n)
        return self.decoder(nodes[:n])

    def _inbox(self, graph) -> Tensor:
        """[E + W] aggregation row of each edge: its receiver, + N for wall edges (the second
        channel) with a wall channel."""
        receivers = graph.edge_index[1]
        if not self.config.wall_channel:
            return receivers
        wall_edge = torch.arange(len(receivers), device=receivers.device) >= (
            len(receivers) - graph.n_wall_nodes
        )
        return receivers + graph.n_particles * wall_edge

    def _encode_edges(self, graph) -> Tensor:
        """[E + W, D] edge latents; wall edges (the last W) through their own encoder."""
        if not self.config.wall_channel:
            return self.edge_encoder(graph.edge_features)
        split = len(graph.edge_features) - graph.n_wall_nodes
        features = graph.edge_features
        return torch.cat(
            [self.edge_encoder(features[:split]), self.wall_edge_encoder(features[split:])]
        )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
