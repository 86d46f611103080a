"""The BGNN as a rollout backend: graph -> network -> accelerations in metres per frame^2."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from bgnn_sim.engine.state import ParticleState, Scene
from bgnn_sim.geometry.wall import Wall
from bgnn_sim.graph.features import Graph, build_graph
from bgnn_sim.models.bgnn import BGNN


def as_float32(graph: Graph) -> Graph:
    """The graph with float32 features: geometry is built in the positions' precision (float64
    differences of nearly equal coordinates), the network runs in float32."""
    return dataclasses.replace(
        graph,
        particle_features=graph.particle_features.float(),
        wall_features=graph.wall_features.float(),
        edge_features=graph.edge_features.float(),
        edge_weight=graph.edge_weight.float(),
    )


class BGNNSimulator:
    """Engine backend around a trained BGNN and its data's normalisation statistics.

    Args:
        model: the network.
        statistics: dataset statistics (velocity, acceleration, edge moments).
        cutoff: graph cutoff (m).
        graph_backend: neighbour search ("auto", "kdtree", "torch_cluster").
    """

    def __init__(
        self, model: BGNN, statistics: dict, cutoff: float, graph_backend: str = "auto"
    ) -> None:
        self.model = model
        self.statistics = statistics
        self.cutoff = cutoff
        self.graph_backend = graph_backend
        self.history = model.config.history

    def graph(
        self, history: Tensor, types: Tensor, walls: list[Wall], time: float, frame_dt: float
    ) -> Graph:
        """The network's float32 input for positions [H+1, n, 3] (m) and types [n] (from 1)."""
        graph = build_graph(
            history, types - 1, walls, time, self.cutoff, self.statistics, frame_dt,
            self.graph_backend,
        )  # fmt: skip
        return as_float32(graph)

    def _moments(self, like: Tensor) -> tuple[Tensor, Tensor]:
        moments = self.statistics["acceleration"]
        mean = torch.tensor(moments["mean"], dtype=like.dtype, device=like.device)
        return mean, torch.tensor(moments["std"], dtype=like.dtype, device=like.device)

    def normalise(self, acceleration: Tensor) -> Tensor:
        """Network targets (float32) from accelerations [n, 3] in m/frame^2."""
        mean, std = self._moments(acceleration)
        return ((acceleration - mean) / std).float()

    def denormalise(self, normalised: Tensor, like: Tensor) -> Tensor:
        """Accelerations (m/frame^2) from network outputs, in the dtype/device of `like`."""
        mean, std = self._moments(like)
        return normalised.to(like.dtype) * std + mean

    def acceleration(self, scene: Scene, state: ParticleState) -> Tensor:
        history = state.history[-(self.history + 1) :, state.active]
        graph = self.graph(history, state.types[state.active], scene.walls, state.time,
                           scene.frame_dt)  # fmt: skip
        return self.denormalise(self.model(graph), history)
