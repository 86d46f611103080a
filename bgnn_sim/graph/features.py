"""Input graph of the BGNN for one frame: particle and wall-node features, edges, edge features.

Only differences of positions enter (velocities, edge vectors, normals, wall velocities), so the
graph is unchanged when particles and walls are translated together. Units: velocities are in
metres per frame (x_t - x_{t-1}), as in the dataset's normalisation statistics.

Feature layout:
- particle: for each of the H velocities, oldest first, the 3 standardised components
  (v - mean) / std followed by the magnitude |v| / |std| ([N, H, 4] flattened to [N, 4H]).
  The magnitude is divided by the norm of the per-axis std vector, one scale for all frames:
  a magnitude has no meaningful mean to remove, and a single scale keeps it proportional to
  the speed (a per-axis std cannot apply to a norm).
- wall node: n, -n (the STL winding does not matter), the wall velocity converted to m/frame
  and divided by the velocity std (no mean shift: a wall at rest must read exactly zero, and
  the particles' mean drift has nothing to do with how the wall moves), and its magnitude
  divided by |std| as for particles.
- edge: d = x_receiver - x_sender and |d|, divided by the cutoff of its kind (particle or wall
  edges; so |d| / c lies in [0, 1]).

With contact features (`GraphSpec.contact_features`), the features that decide a collision get
forms that are steep near contact, as the reference BGNN's inverse distances are:
- edge: also r d / |d|^2 and r / |d| (r the particle radius): a wall contact at |d| = r reads
  1, a particle contact at |d| = 2r reads 0.5, and both grow fast on approach;
- particle: also r / s and the unit vector from the nearest wall point to the particle
  (s = distance to it), zeros when no wall is within the wall cutoff. A particle then knows how
  close its wall is however many particle messages dilute the wall's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from bgnn_sim.geometry.wall import Wall
from bgnn_sim.graph.verlet import FrameNeighbours, fresh_neighbours
from bgnn_sim.graph.walls import WallNodes, smallest_per_particle, wall_nodes_from_contacts


@dataclass(frozen=True)
class GraphSpec:
    """How a frame becomes a graph.

    Attributes:
        cutoff: particle-particle cutoff (m).
        wall_cutoff: particle-wall cutoff (m); None: the particle cutoff.
        radius: particle radius (m), the length scale of contact features.
        contact_features: inverse-distance edge features and nearest-wall node features.
        merge_wall_nodes: a particle keeps its face contacts and its nearest contact, one node
            per shared closest point (see bgnn_sim/graph/walls.py).
    """

    cutoff: float
    wall_cutoff: float | None = None
    radius: float | None = None
    contact_features: bool = False
    merge_wall_nodes: bool = False

    def __post_init__(self) -> None:
        if not self.cutoff > 0 or not self.walls_reach > 0:
            raise ValueError(f"cutoffs must be > 0, got {self.cutoff} and {self.wall_cutoff}")
        if self.contact_features and not (self.radius or 0) > 0:
            raise ValueError("contact features need the particle radius")

    @property
    def walls_reach(self) -> float:
        """The particle-wall cutoff (m)."""
        return self.cutoff if self.wall_cutoff is None else self.wall_cutoff


def particle_feature_count(history: int, contact_features: bool) -> int:
    """Per particle: 4 per velocity, and 4 nearest-wall features with contact features."""
    return 4 * history + 4 * contact_features


def edge_feature_count(contact_features: bool) -> int:
    """Per edge: d / c and |d| / c, and r d / |d|^2 and r / |d| with contact features."""
    return 8 if contact_features else 4


@dataclass
class Graph:
    """Graph of one frame over N particles followed by W wall nodes.

    Attributes:
        particle_features: [N, P] standardised velocity history and magnitudes ([N, 4H]), then
            with contact features r / s and the unit vector from the nearest wall ([N, 4]).
        types: [N] int64 particle types (0-based).
        wall_features: [W, 10] n, -n, scaled wall velocity (3) and its magnitude.
        edge_index: [2, E + W] sender, receiver over the nodes [particles; wall nodes]: the
            E particle edges first (both ends < N), then one edge per wall node w, sender N + w,
            receiver its particle.
        edge_features: [E + W, F] d = x_receiver - x_sender (3) and |d|, divided by the cutoff
            of their kind; with contact features also r d / |d|^2 (3) and r / |d| (F = 8).
        edge_weight: [E + W] 1 for particle edges, 1/k for the k wall edges of a particle.
        n_particles: N.
    """

    particle_features: Tensor
    types: Tensor
    wall_features: Tensor
    edge_index: Tensor
    edge_features: Tensor
    edge_weight: Tensor
    n_particles: int

    @property
    def n_wall_nodes(self) -> int:
        return len(self.wall_features)


def build_graph(
    history: Tensor,
    types: Tensor,
    walls: list[Wall],
    time: float,
    spec: GraphSpec,
    stats: dict,
    frame_dt: float,
    backend: str = "auto",
    neighbours: FrameNeighbours | None = None,
) -> Graph:
    """Builds the BGNN input graph of the last frame of `history`.

    Args:
        history: [H+1, N, 3] positions (metres) of the N active particles, oldest first, H >= 1.
        types: [N] integer particle types, already 0-based (LIGGGHTS types start at 1: the
            caller maps them).
        walls: All walls of the scene; posed at `time`, skipped when removed by then.
        time: Physical time (s) of the last frame of `history`.
        spec: Cutoffs and feature options.
        stats: Normalisation statistics of the dataset (manifest["statistics"]); uses
            stats["velocity"]["mean"] and ["std"] (m/frame, per axis).
        frame_dt: Time between frames (s), to turn wall velocities (m/s) into m/frame.
        backend: Neighbour search backend, see `radius_graph`.
        neighbours: the frame's particle edges and wall contacts within the spec's cutoffs,
            when the caller keeps them (a rollout's `VerletLists`); None: searched afresh.

    Returns:
        The graph, in the dtype and on the device of `history`.
    """
    _check_inputs(history, types, frame_dt)
    mean, std = _velocity_moments(stats, history)
    x = history[-1]
    n = x.shape[0]
    if neighbours is None:
        neighbours = fresh_neighbours(x, walls, time, spec.cutoff, spec.walls_reach, backend)
    particle_edges = neighbours.particle_edges
    nodes = wall_nodes_from_contacts(x, neighbours.walls, time, merge=spec.merge_wall_nodes)
    edge_index = _edge_index(particle_edges, nodes, n)
    # Node positions in edge_index numbering: particles, then wall nodes (receivers are particles).
    node_position = torch.cat((x, nodes.position))
    d = x.index_select(0, edge_index[1]) - node_position.index_select(0, edge_index[0])
    n_edges = particle_edges.shape[1]
    cutoff = torch.cat(
        (x.new_full((n_edges, 1), spec.cutoff), x.new_full((len(nodes), 1), spec.walls_reach))
    )
    features = particle_features(history, mean, std)
    if spec.contact_features:
        features = torch.cat((features, nearest_wall_features(x, nodes, spec.radius)), dim=1)
    return Graph(
        particle_features=features,
        types=types.to(device=x.device, dtype=torch.long),
        wall_features=wall_features(nodes, std, frame_dt),
        edge_index=edge_index,
        edge_features=edge_features(d, cutoff, spec.radius if spec.contact_features else None),
        edge_weight=torch.cat((x.new_ones(n_edges), nodes.weight)),
        n_particles=n,
    )


def edge_features(d: Tensor, cutoff: Tensor, radius: float | None) -> Tensor:
    """[E, 4] d / c and |d| / c, then with a `radius` r also r d / |d|^2 and r / |d| ([E, 8]).

    Args:
        d: [E, 3] x_receiver - x_sender (m).
        cutoff: [E, 1] cutoff of each edge's kind (m).
        radius: particle radius (m), or None for the linear features only.
    """
    length = torch.linalg.vector_norm(d, dim=1, keepdim=True)
    linear = torch.cat((d, length), dim=1) / cutoff
    if radius is None:
        return linear
    # A floor of a thousandth of a radius (as the reference code's 0.001 c): a particle exactly
    # on a wall reads large, not infinite.
    inverse = radius / (length + 1e-3 * radius)
    return torch.cat((linear, d * (inverse / length.clamp_min(1e-3 * radius)), inverse), dim=1)


def nearest_wall_features(x: Tensor, nodes: WallNodes, radius: float) -> Tensor:
    """[N, 4] r / s and the unit vector from the nearest wall point to each particle (s its
    distance); zeros for a particle with no wall node.

    Args:
        x: [N, 3] particle positions (m).
        nodes: the frame's wall nodes (any order).
        radius: particle radius (m).
    """
    features = x.new_zeros(len(x), 4)
    if len(nodes) == 0:
        return features
    away = x.index_select(0, nodes.particle_index) - nodes.position  # wall -> particle
    distance = torch.linalg.vector_norm(away, dim=1)
    nearest = smallest_per_particle(nodes.particle_index, distance, len(x))
    # The node that attains its particle's minimum (ties: any, they are the same distance).
    is_nearest = distance == nearest.index_select(0, nodes.particle_index)
    owner, which = nodes.particle_index[is_nearest], is_nearest.nonzero().squeeze(1)
    s = distance[which].clamp_min(1e-3 * radius)
    direction = torch.where(distance[which, None] > 0, away[which] / s[:, None], 0.0)
    features[owner] = torch.cat(((radius / (s + 1e-3 * radius))[:, None], direction), dim=1)
    return features


def particle_features(history: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """[N, 4H] per velocity (oldest first): (v - mean) / std (3) and |v| / |std|.

    Args:
        history: [H+1, N, 3] positions (metres).
        mean, std: [3] velocity statistics (m/frame).
    """
    velocity = (history[1:] - history[:-1]).transpose(0, 1)  # [N, H, 3]
    speed = torch.linalg.vector_norm(velocity, dim=2, keepdim=True) / torch.linalg.norm(std)
    return torch.cat(((velocity - mean) / std, speed), dim=2).flatten(1)


def wall_features(nodes: WallNodes, std: Tensor, frame_dt: float) -> Tensor:
    """[W, 10] n, -n, wall velocity in m/frame / std (3) and its magnitude / |std|.

    Args:
        nodes: The wall nodes (velocity in m/s).
        std: [3] velocity std (m/frame).
        frame_dt: Time between frames (s).
    """
    velocity = nodes.velocity * frame_dt  # m/s -> m/frame
    speed = torch.linalg.vector_norm(velocity, dim=1, keepdim=True) / torch.linalg.norm(std)
    return torch.cat((nodes.normal, -nodes.normal, velocity / std, speed), dim=1)


def _edge_index(particle_edges: Tensor, nodes: WallNodes, n: int) -> Tensor:
    """[2, E + W]: particle edges, then wall node N + w -> its particle."""
    wall_sender = n + torch.arange(len(nodes), device=particle_edges.device)
    wall_edges = torch.stack((wall_sender, nodes.particle_index))
    return torch.cat((particle_edges, wall_edges), dim=1)


def _velocity_moments(stats: dict, like: Tensor) -> tuple[Tensor, Tensor]:
    """Velocity mean and std [3] from the dataset statistics, in the dtype/device of `like`."""
    velocity = stats["velocity"]
    mean, std = (
        torch.as_tensor(velocity[key], dtype=like.dtype, device=like.device)
        for key in ("mean", "std")
    )
    if mean.shape != (3,) or std.shape != (3,) or not bool((std > 0).all()):
        raise ValueError("stats['velocity'] needs a mean [3] and a positive std [3] (m/frame)")
    return mean, std


def _check_inputs(history: Tensor, types: Tensor, frame_dt: float) -> None:
    if history.ndim != 3 or history.shape[0] < 2 or history.shape[2] != 3:
        raise ValueError(f"history must be [H+1, N, 3] with H >= 1, got {list(history.shape)}")
    if types.shape != history.shape[1:2]:
        raise ValueError(f"types must be [N] = {history.shape[1]}, got {list(types.shape)}")
    if len(types) and int(types.min()) < 0:
        raise ValueError("particle types must be 0-based (>= 0)")
    if not frame_dt > 0:
        raise ValueError(f"frame_dt must be > 0, got {frame_dt}")
