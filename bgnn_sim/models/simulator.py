"""The BGNN as a rollout backend: graph -> network -> accelerations in metres per frame^2.

With `known_gravity`, the network's target is the acceleration minus gravity's g dt^2 (about one
acceleration std at 1 ms frames): a network that outputs ~0 then falls freely instead of
hovering, and the particles only have to learn what their contacts add.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from bgnn_sim.defaults import PRECISIONS
from bgnn_sim.engine.guard import Clearance
from bgnn_sim.engine.state import ParticleState, Scene
from bgnn_sim.errors import ConfigError
from bgnn_sim.geometry.wall import Wall
from bgnn_sim.graph.features import Graph, GraphSpec, build_graph
from bgnn_sim.graph.verlet import FrameNeighbours, VerletLists, fresh_neighbours
from bgnn_sim.models.bgnn import BGNN
from bgnn_sim.physics import GRAVITY


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
        spec: cutoffs and feature options of the graph (they must match the model's config).
        frame_dt: seconds per frame, the scale of the known gravity term.
        graph_backend: neighbour search ("auto", "kdtree", "torch_cluster").
        skin: rollouts keep Verlet lists with this skin (m) between frames (see
            bgnn_sim/graph/verlet.py); None searches every frame afresh.
        wall_skin: the wall contacts' skin (m) in those lists; None: `skin`.
    """

    def __init__(
        self,
        model: BGNN,
        statistics: dict,
        spec: GraphSpec,
        frame_dt: float,
        graph_backend: str = "auto",
        skin: float | None = None,
        wall_skin: float | None = None,
    ) -> None:
        self.model = model
        self.statistics = statistics
        self.spec = spec
        self.graph_backend = graph_backend
        self.history = model.config.history
        self.known_gravity = model.config.known_gravity
        # Gravity's acceleration in m/frame^2.
        self.known_acceleration = (0.0, 0.0, -GRAVITY * frame_dt**2)
        self.lists = None
        self.clearance: Clearance | None = None  # the last frame's, for the wall guard
        if skin is not None:
            self.lists = VerletLists(spec.cutoff, spec.walls_reach, skin, graph_backend,
                                     wall_skin)  # fmt: skip
        self.network = model  # what a frame calls: the model, or its compiled form
        self.processor_dtype: torch.dtype | None = None  # see use_precision

    def use_precision(self, precision: str) -> None:
        """Run the network's processor in `precision`, one of PRECISIONS: "bfloat16" puts its
        matrix products in bfloat16 (CPUs with AMX or AVX-512 BF16 units, recent GPUs), the
        encoders, aggregations and decoder staying float32 (BGNN.forward)."""
        if precision not in PRECISIONS:
            raise ConfigError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        self.processor_dtype = None if precision == "float32" else getattr(torch, precision)

    def compile(self) -> None:
        """Run the network through torch.compile (fused per-edge work; dynamic shapes, as the
        graph changes size every frame). The first frames pay the compilation. Frozen: the
        weights become constants of the compiled graph, which lets a float32 linear layer and
        its ReLU run as one oneDNN call on CPU (a rollout never changes the weights)."""
        self.network = torch.compile(self.model, dynamic=True, options={"freezing": True})

    def graph(
        self,
        history: Tensor,
        types: Tensor,
        walls: list[Wall],
        time: float,
        frame_dt: float,
        neighbours: FrameNeighbours | None = None,
    ) -> Graph:
        """The network's float32 input for positions [H+1, n, 3] (m) and types [n] (from 1);
        `neighbours` as `build_graph` takes them (None: searched afresh)."""
        graph = build_graph(
            history, types - 1, walls, time, self.spec, self.statistics, frame_dt,
            self.graph_backend, neighbours,
        )  # fmt: skip
        return as_float32(graph)

    def _moments(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """Offset [3] and scale [3] (m/frame^2) of the network's target, (a - offset) / scale.

        Without known gravity: the data's mean and std. With it: gravity's g dt^2 and the RMS
        of a - g dt^2, so that an output of zero is free fall, not the data's mean acceleration
        (centring on the mean would cancel the known term exactly).
        """
        moments = self.statistics["acceleration"]
        known, mean, std = (
            torch.tensor(values, dtype=like.dtype, device=like.device)
            for values in (self.known_acceleration, moments["mean"], moments["std"])
        )
        if not self.known_gravity:
            return mean, std
        return known, torch.sqrt(std**2 + (mean - known) ** 2)

    def normalise(self, acceleration: Tensor) -> Tensor:
        """Network targets (float32) from accelerations [n, 3] in m/frame^2."""
        offset, scale = self._moments(acceleration)
        return ((acceleration - offset) / scale).float()

    def denormalise(self, normalised: Tensor, like: Tensor) -> Tensor:
        """Accelerations (m/frame^2) from network outputs, in the dtype/device of `like`."""
        offset, scale = self._moments(like)
        return normalised.to(like.dtype) * scale + offset

    def acceleration(self, scene: Scene, state: ParticleState) -> Tensor:
        """[n_active, 3] accelerations (m/frame^2); leaves the frame's wall contacts as
        `clearance` for the wall guard."""
        history = state.history[-(self.history + 1) :, state.active]
        if self.lists is not None:
            neighbours = self.lists.neighbours(state.positions, state.active, scene.walls,
                                               state.time)  # fmt: skip
        else:
            neighbours = fresh_neighbours(history[-1], scene.walls, state.time, self.spec.cutoff,
                                          self.spec.walls_reach, self.graph_backend)  # fmt: skip
        self.clearance = Clearance.of(neighbours.walls, len(history[-1]), self.spec.walls_reach,
                                      state.time)  # fmt: skip
        graph = self.graph(history, state.types[state.active], scene.walls, state.time,
                           scene.frame_dt, neighbours)  # fmt: skip
        return self.denormalise(self.network(graph, self.processor_dtype), history)
