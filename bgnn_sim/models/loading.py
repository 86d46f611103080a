"""Loading a trained model for inference: read a checkpoint file, tell a BGNN checkpoint from a
LaM-SLidE one, build the rollout backend. No training code: training writes these files and
imports this module (the checkpoint format, its legacy defaults), never the reverse.

A BGNN checkpoint is a torch file of plain containers and tensors (loaded with
`weights_only=True`): `format`, `version`, `config` (the training configuration, the network's
[model] table and the graph settings inside it), `statistics`, `data`, `step`, `model` (weights).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from bgnn_sim.configfile import Checked, setting, subtable, typed
from bgnn_sim.dem.config import Timing
from bgnn_sim.device import resolve_device
from bgnn_sim.engine.rollout import Backend, WindowBackend
from bgnn_sim.errors import BgnnError, ConfigError
from bgnn_sim.graph.features import GraphSpec
from bgnn_sim.graph.neighbors import BACKENDS as NEIGHBOUR_BACKENDS
from bgnn_sim.models.bgnn import BGNN, BGNNConfig
from bgnn_sim.models.lamslide.simulator import DYNAMICS_FORMAT, lamslide_from_payload
from bgnn_sim.models.simulator import BGNNSimulator

FORMAT = "bgnn-sim-checkpoint"
VERSION = 1

# What a checkpoint written before these settings existed was built with: a key its config lacks
# takes this value, not today's default (training's LEGACY extends LEGACY_GRAPH).
LEGACY_GRAPH = {"cutoff_radii": 4.0, "wall_cutoff_radii": None}
LEGACY_MODEL = {
    "known_gravity": False,
    "contact_features": False,
    "merge_wall_nodes": False,
    "wall_channel": False,
}


# Verlet-list skin of a loaded BGNN's rollouts, in particle radii: exact graphs, and 1.1-1.7x
# faster frames than a fresh search on the shipped models (benchmarks/rollout_speed.py). Half a
# radius rebuilt the lists in 75-90 % of the frames of the default drum and hopper simulations
# (avalanching and discharging particles move ~0.3 mm a frame); one radius halves the builds.
LIST_SKIN_RADII = 1.0
# The wall contacts' skin, apart: a turning drum's rim moves ~0.16 mm a frame at 30 rpm, which
# alone forced a wall search every ~5 frames at one radius. Two radii halve those searches (28 ->
# 15 in the default drum's first 200 frames), while each frame still measures only the pairs
# that can have come within reach.
WALL_LIST_SKIN_RADII = 2.0


class CheckpointError(BgnnError):
    """A file that is not a readable bgnn-sim checkpoint of a supported version."""


@dataclass(frozen=True)
class GraphSettings(Checked):
    """The graph settings a BGNN checkpoint's config holds (defaults: a legacy checkpoint's)."""

    cutoff_radii: float = setting(LEGACY_GRAPH["cutoff_radii"], above=0.0)
    wall_cutoff_radii: float | None = setting(LEGACY_GRAPH["wall_cutoff_radii"], above=0.0)
    graph_backend: str = setting("auto", one_of=NEIGHBOUR_BACKENDS)


def graph_spec(
    model: BGNNConfig, radius: float, cutoff_radii: float, wall_cutoff_radii: float | None
) -> GraphSpec:
    """The graph a network of `model`'s shape reads, for particles of `radius` (m), with cutoffs
    given in radii (`wall_cutoff_radii` None: the particle cutoff)."""
    wall = None if wall_cutoff_radii is None else wall_cutoff_radii * radius
    return GraphSpec(
        cutoff=cutoff_radii * radius,
        wall_cutoff=wall,
        radius=radius,
        contact_features=model.contact_features,
        merge_wall_nodes=model.merge_wall_nodes,
    )


def read_payload(path: str | Path, map_location: str = "cpu") -> Any:
    """The contents of a torch checkpoint file (plain containers and tensors only), or a
    CheckpointError for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from exc


def check_header(payload: Any, path: str | Path) -> None:
    """CheckpointError unless `payload` is a BGNN checkpoint of the version this package reads."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a bgnn-sim checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {payload.get('version')} is not supported "
            f"(this bgnn-sim reads version {VERSION})"
        )


def model_config_from(config: dict, source: str) -> BGNNConfig:
    """The network's configuration in a checkpoint's config (legacy keys filled in)."""
    return typed(BGNNConfig, {**LEGACY_MODEL, **subtable(config, "model", source)},
                 f"{source} [model]")  # fmt: skip


def build_bgnn(config: BGNNConfig, weights: dict, device: torch.device | str = "cpu") -> BGNN:
    """The network of `config` holding `weights`, in evaluation mode on `device`."""
    model = BGNN(config)
    model.load_state_dict(weights)
    return model.to(device).eval()


def bgnn_from_payload(payload: Any, path: str | Path, device: str = "auto") -> BGNNSimulator:
    """A trained BGNN ready to roll out on `device`, from a checkpoint's contents (read from
    `path`, named in errors)."""
    check_header(payload, path)
    try:
        config = payload["config"]
        names = {f.name for f in fields(GraphSettings)}
        graph = typed(GraphSettings, {k: v for k, v in config.items() if k in names}, str(path))
        network = model_config_from(config, str(path))
        model = build_bgnn(network, payload["model"])
        radius = payload["data"]["material"]["radius"]
        frame_dt = Timing(**payload["data"]["timing"]).frame_dt
        statistics = payload["statistics"]
        payload["data"], payload["step"]  # what load_model reports
    except (KeyError, TypeError, AttributeError, RuntimeError, BgnnError) as exc:
        raise CheckpointError(f"{path}: corrupt checkpoint ({exc})") from exc
    target = resolve_device(device)
    spec = graph_spec(network, radius, graph.cutoff_radii, graph.wall_cutoff_radii)
    return BGNNSimulator(model.to(target), statistics, spec, frame_dt, graph.graph_backend,
                         skin=LIST_SKIN_RADII * radius,
                         wall_skin=WALL_LIST_SKIN_RADII * radius)  # fmt: skip


@dataclass
class TrainedModel:
    """A checkpoint ready to roll out: its method ("bgnn" or "lamslide"), the engine backend,
    what it was trained on (`data`: material, timing, kinds, scenarios), its training steps and
    the device it runs on."""

    method: str
    backend: Backend | WindowBackend
    data: dict
    step: int
    device: torch.device

    @property
    def timing(self) -> Timing:
        """The DEM step and the model's frame (`timing.frame_dt`, s)."""
        return Timing(**self.data["timing"])


def load_model(
    path: str | Path,
    device: str = "auto",
    seed: int = 0,
    compile: bool = False,
    precision: str = "float32",
) -> TrainedModel:
    """A BGNN checkpoint or a LaM-SLidE stage-2 checkpoint (told apart by their format tag).
    LaM-SLidE runs on the CPU for now; `seed` draws its identifiers and sampling noise.
    `compile`: a BGNN's network or LaM-SLidE's latent dynamics through torch.compile (see
    BGNNSimulator.compile, LamSlideSimulator.compile). `precision`: a BGNN's processor (see
    BGNNSimulator.use_precision); LaM-SLidE runs in float32 only."""
    payload = read_payload(path)  # read once, then told apart
    if isinstance(payload, dict) and payload.get("format") == DYNAMICS_FORMAT:
        if precision != "float32":
            raise ConfigError(f"--precision {precision} applies to BGNN models; {path} is a "
                              "LaM-SLidE model, which runs in float32")  # fmt: skip
        method, backend = "lamslide", lamslide_from_payload(payload, str(path), seed)
        on = torch.device("cpu")
    else:
        method, backend = "bgnn", bgnn_from_payload(payload, path, device)
        on = next(backend.model.parameters()).device
        backend.use_precision(precision)
    if compile:
        backend.compile()
    return TrainedModel(method, backend, payload["data"], payload["step"], on)
