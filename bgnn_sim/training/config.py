"""Training configuration: one typed dataclass, read from TOML, written next to the run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from bgnn_sim.configfile import Checked, read_toml, setting, subtable, typed
from bgnn_sim.graph.features import GraphSpec
from bgnn_sim.graph.neighbors import BACKENDS as NEIGHBOUR_BACKENDS
from bgnn_sim.models.bgnn import BGNNConfig
from bgnn_sim.models.loading import LEGACY_GRAPH, LEGACY_MODEL, graph_spec


@dataclass(frozen=True)
class TrainConfig(Checked):
    """How to train a BGNN (defaults: a short CPU-friendly run; raise `steps` on a GPU).

    Attributes:
        model: the network's size and shape.
        steps: optimiser steps.
        windows_per_step: training windows whose graphs form one batch.
        lr, lr_final: Adam learning rate, decayed exponentially from lr to lr_final.
        stride: recorded frames per model frame: the model steps `stride` x the dataset's
            frame (1 ms) at a time; fewer, longer steps make a rollout cheaper.
        noise_std: random-walk input noise, std of the last input velocity (m/frame).
        undo_position_noise: the first trained step's target is the data's next frame itself,
            so the model learns to undo the noise's position error too (the overlaps it made
            included). False (GNS): the target moves with the last input frame's noise, and
            the model undoes only the velocity error, not the position error (3.3 noise_std
            per coordinate at 5 velocities). Tried on the 4 ms hopper, it left the rollouts'
            overlaps where they were (benchmarks/TRAINING.md, fifteenth session).
        ema_decay: None trains as ever; a decay (e.g. 0.999) keeps an exponential moving
            average of the weights, updated after every step, and the validation, best.pt
            and model.pt use the averaged weights (the raw ones go on training): a model
            whose rollouts swing from one validation to the next is judged and shipped
            smoothed over ~1 / (1 - decay) steps.
        pushforward: at most this many model steps (no gradient) before the trained step.
        pushforward_stage: steps after which each further unroll depth is allowed (staged
            pushforward: depth k from step k x this); 0 allows every depth from the start.
        pushforward_chance: probability that a window is unrolled at all (its depth then
            uniform over the allowed ones); None: every depth, 0 included, equally likely.
        loss_steps: consecutive model steps trained together, each against the data's next
            frame, the gradient flowing back through the model's own positions between them
            (backpropagation through time): the model learns what its errors do a few frames
            on. 1: the one-step loss.
        event_weight: windows whose trained frame lies within `event_span_s` after the run's
            event (a gate opening, a drum starting to turn) are drawn this many times more
            often than the others.
        event_span_s: how long after the event a window counts as one of its windows (s).
        onset_weight: windows whose first trained step starts within `onset_span_s` after
            the event are drawn this many times more often again: the step where a gate's
            removal releases the bed, whose history is still at rest (a few windows per run).
        onset_span_s: how long after the event a window's first trained step counts as the
            onset's (s; one model frame: only the step that starts at the event).
        narrow_outlet_diameters: hopper runs whose outlet is narrower than this many particle
            diameters count as narrow (None: none does).
        narrow_outlet_weight: the windows of narrow-outlet runs are drawn this many times more
            often (on top of the event weight). Tried once for the 2 ms hopper, and worse
            (benchmarks/TRAINING.md, eleventh session); off by default.
        aligned_removals: with a stride, train only on windows whose model steps do not
            straddle a wall's removal (a gate opening on a recorded frame between two of a
            step's frames): a rollout removes a wall on one of its own frames, so such a step
            teaches an onset it never takes. Off in the recipes written before it.
        cutoff_radii: particle-particle cutoff in particle radii (BGNN hopper: 4).
        wall_cutoff_radii: particle-wall cutoff in radii; None: the particle cutoff.
        threads: torch CPU threads (0: torch's default, all cores).
        validate_every: steps between validations (loss + rollouts through the event).
        validation_windows: windows of the valid split in the validation loss.
        validation_rollout: recorded frames each validation rollout covers from just before
            the event (0 = none); a drum's rollout lasts at least a quarter turn, and none
            goes past its run's end (a number above the runs' length: the whole runs).
        validation_runs: valid runs rolled out at each validation (the first ones).
        checkpoint_every: steps between checkpoints.
        log_every: steps between lines in metrics.csv.
        seed: everything random derives from it and the step number.
        graph_backend: neighbour search, "auto", "kdtree" or "torch_cluster".
        deterministic: bit-reproducible reductions (message sums), so that a run and its
            resumed twin are identical; off trades that for speed on GPUs.
    """

    model: BGNNConfig = field(default_factory=BGNNConfig)
    steps: int = setting(20_000, at_least=1)
    windows_per_step: int = setting(2, at_least=1)
    lr: float = setting(1e-4, above=0.0)
    lr_final: float = setting(1e-6, above=0.0)
    stride: int = setting(1, at_least=1)
    noise_std: float = setting(3e-7, at_least=0.0)
    undo_position_noise: bool = False
    ema_decay: float | None = setting(None, at_least=0.0, below=1.0)
    pushforward: int = setting(0, at_least=0)
    pushforward_stage: int = setting(0, at_least=0)
    pushforward_chance: float | None = setting(None, at_least=0.0, at_most=1.0)
    loss_steps: int = setting(1, at_least=1)
    event_weight: float = setting(10.0, above=0.0)
    event_span_s: float = setting(0.1, at_least=0.0)
    onset_weight: float = setting(1.0, above=0.0)
    onset_span_s: float = setting(0.0, at_least=0.0)
    narrow_outlet_diameters: float | None = setting(None, above=0.0)
    narrow_outlet_weight: float = setting(1.0, above=0.0)
    aligned_removals: bool = False
    cutoff_radii: float = setting(3.0, above=0.0)
    wall_cutoff_radii: float | None = setting(4.0, above=0.0)
    threads: int = setting(0, at_least=0)
    validate_every: int = setting(1000, at_least=1)
    validation_windows: int = setting(50, at_least=1)
    validation_rollout: int = setting(300, at_least=0)
    validation_runs: int = setting(5, at_least=1)
    checkpoint_every: int = setting(1000, at_least=1)
    log_every: int = setting(50, at_least=1)
    seed: int = setting(0, at_least=0)
    graph_backend: str = setting("auto", one_of=NEIGHBOUR_BACKENDS)
    deterministic: bool = True

    def graph_spec(self, radius: float) -> GraphSpec:
        """The graph this configuration's model reads, for particles of `radius` (m)."""
        return graph_spec(self.model, radius, self.cutoff_radii, self.wall_cutoff_radii)

    def pushforward_depths(self, step: int) -> int:
        """The deepest unroll allowed at `step` (staged pushforward)."""
        if self.pushforward_stage <= 0:
            return self.pushforward
        return min(self.pushforward, step // self.pushforward_stage)

    def lr_at(self, step: int) -> float:
        """Exponential decay from lr (step 0) to lr_final (last step)."""
        fraction = min(step / max(self.steps - 1, 1), 1.0)
        return self.lr * (self.lr_final / self.lr) ** fraction


def config_to_dict(config: TrainConfig) -> dict:
    return dataclasses.asdict(config)


# What a checkpoint written before these settings existed was trained with: a key it lacks
# takes this value, not today's default (the graph's and the network's: models.loading).
LEGACY = {
    **LEGACY_GRAPH,
    "event_weight": 1.0,
    "stride": 1,
    "validation_rollout": 50,
    "validation_runs": 2,
}


def config_from_dict(data: dict, source: str = "config", legacy: bool = False) -> TrainConfig:
    """Build a TrainConfig from nested dicts (a [model] table inside). With `legacy` (a
    checkpoint's stored config), keys it lacks take their LEGACY values."""
    data = dict(data)
    model = dict(subtable(data, "model", source))
    data.pop("model", None)
    if legacy:
        data = {**LEGACY, **data}
        model = {**LEGACY_MODEL, **model}
    model = typed(BGNNConfig, model, f"{source} [model]")
    return typed(TrainConfig, {**data, "model": model}, source)


def load_train_config(path: str | Path) -> TrainConfig:
    return config_from_dict(read_toml(path), str(path))
