"""Where the time of a BGNN training step and of a rollout frame goes.

Times each part of `Trainer.window_loss` + backward + optimiser step (reading the window, input
noise, neighbour search, wall nodes, the rest of the features, forward, backward, Adam) over the
same windows of a dataset's train split, for one or more training configurations, and prints
the split with the graph's size (particle edges and wall nodes per particle). Then the same for
rollout frames (untrained weights: the cost does not depend on them) from the first valid run's
gate opening or drum start: neighbours, wall nodes, features, network, wall guard, the rest.

    python benchmarks/training_profile.py data/hopper --steps 30

`--config` takes a TOML file of `bgnn train`, or `legacy` (the recipe of the shipped models
before issue 13, 64 x 3: 4-radius cutoff, every triangle a wall node, linear edge features, no
wall channel); the default compares `legacy` with benchmarks/recipes/new.toml.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import replace

import torch

from bgnn_sim.engine import rollout as engine
from bgnn_sim.engine.state import scene_from_trajectory, state_from_trajectory
from bgnn_sim.graph import features
from bgnn_sim.training import trainer as trainer_module
from bgnn_sim.training.config import LEGACY, LEGACY_MODEL, TrainConfig, load_train_config
from bgnn_sim.training.distributed import Context
from bgnn_sim.training.trainer import Trainer, step_generator
from bgnn_sim.training.validation import event_start_frame

RECIPE = "benchmarks/recipes/new.toml"


def config_named(name: str) -> TrainConfig:
    if name == "legacy":
        defaults = TrainConfig()
        model = replace(defaults.model, latent=64, message_passing=3, **LEGACY_MODEL)
        legacy = {k: v for k, v in LEGACY.items() if k != "validation_rollout"}
        return replace(defaults, model=model, **legacy)
    return load_train_config(name)


class Clock:
    """Accumulates wall time per named section."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def section(self, name: str):
        started = time.perf_counter()
        yield
        self.seconds[name] += time.perf_counter() - started

    def timed(self, function, section: str):
        """`function`, its calls timed under `section`."""

        def timed(*args, **kwargs):
            with self.section(section):
                return function(*args, **kwargs)

        return timed

    @contextmanager
    def wrapped(self, module, name: str, section: str):
        """Within the block, every call of module.name is timed under `section`."""
        original = getattr(module, name)
        setattr(module, name, self.timed(original, section))
        try:
            yield
        finally:
            setattr(module, name, original)


@contextmanager
def timed_trainer(dataset: str, config: TrainConfig, clock: Clock, also: tuple):
    """A Trainer (no validation) whose neighbour search, wall nodes and `also` = (module, name,
    section) are timed by `clock` within the block."""
    with (
        tempfile.TemporaryDirectory() as out,
        clock.wrapped(features, "radius_graph", "neighbours"),
        clock.wrapped(features, "wall_nodes", "wall nodes"),
        clock.wrapped(*also),
    ):
        yield Trainer(dataset, out, replace(config, validate_every=10**9), Context())


def profile(dataset: str, config: TrainConfig, steps: int) -> tuple[dict, dict]:
    """(ms per step by section, graph sizes) over `steps` training steps."""
    clock = Clock()
    with timed_trainer(
        dataset, config, clock, (trainer_module, "noisy_history", "input noise")
    ) as trainer:
        sizes = defaultdict(float)
        build = trainer.simulator.graph

        def graph(*args, **kwargs):
            g = build(*args, **kwargs)
            sizes["particles"] += g.n_particles
            sizes["particle edges"] += g.edge_index.shape[1] - g.n_wall_nodes
            sizes["wall nodes"] += g.n_wall_nodes
            return g

        trainer.simulator.graph = clock.timed(graph, "graph (all)")
        trainer.network = clock.timed(trainer.network, "forward")
        for _ in range(steps):
            _one_step(trainer, clock)
    split = {name: 1e3 * s / steps for name, s in clock.seconds.items()}
    split["features (rest)"] = split.pop("graph (all)") - split["neighbours"] - split["wall nodes"]
    per_particle = {
        "particle edges / particle": sizes["particle edges"] / sizes["particles"],
        "wall nodes / particle": sizes["wall nodes"] / sizes["particles"],
        "particles / window": sizes["particles"] / (steps * config.windows_per_step),
    }
    return split, per_particle


def profile_rollout(dataset: str, config: TrainConfig, frames: int) -> dict:
    """ms per rollout frame by section, guard on, from the first valid run's event."""
    clock = Clock()
    with timed_trainer(
        dataset, config, clock, (engine, "guarded_advance", "wall guard")
    ) as trainer:
        simulator = trainer.simulator
        simulator.graph = clock.timed(simulator.graph, "graph (all)")
        simulator.model = clock.timed(trainer.model.eval(), "network")
        traj = trainer.valid_set.trajectory(0)
        h = config.model.history
        state = state_from_trajectory(traj, event_start_frame(traj, h), h)
        scene = scene_from_trajectory(traj)
        state = engine.rollout(simulator, scene, state, 2)  # warm-up
        clock.seconds.clear()
        with clock.section("total"):
            engine.rollout(simulator, scene, state, frames, max_speed=float("inf"))
    split = {name: 1e3 * s / frames for name, s in clock.seconds.items()}
    split["features (rest)"] = split.pop("graph (all)") - split["neighbours"] - split["wall nodes"]
    split["engine (rest)"] = split["total"] - sum(v for k, v in split.items() if k != "total")
    return split


def _print_split(title: str, split: dict) -> None:
    total = split.pop("total")
    print(f"\n{title}: {total:.1f} ms")
    for section, ms in sorted(split.items(), key=lambda item: -item[1]):
        print(f"  {section:18s} {ms:8.1f} ms  {100 * ms / total:5.1f} %")


def _one_step(trainer: Trainer, clock: Clock) -> None:
    """Trainer.train_step, section by section."""
    config = trainer.config
    generator = step_generator(config.seed, trainer.step, 0)
    # The same windows for every configuration (drawn uniformly, whatever its event weights).
    picks = torch.randint(len(trainer.train_set), (config.windows_per_step,), generator=generator)
    with clock.section("read windows"):
        windows = [trainer.train_set[int(i)] for i in picks]
    count = 3 * sum(len(w.types) for w in windows)
    trainer.optimizer.zero_grad()
    with clock.section("total"):
        for window in windows:
            errors = trainer.window_loss(window, generator)
            with clock.section("backward"):
                (errors.sum() / count).backward()
        with clock.section("optimiser"):
            trainer.optimizer.step()
    trainer.step += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--config", action="append", default=None)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--frames", type=int, default=20, help="rollout frames timed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.config or ["legacy", RECIPE]:
        config = replace(config_named(name), threads=args.threads)
        profile(args.dataset, config, 2)  # warm-up
        split, sizes = profile(args.dataset, config, args.steps)
        split["total"] += split["read windows"]
        _print_split(f"{name}, training step ({args.threads} threads, "
                     f"{config.windows_per_step} windows)", split)  # fmt: skip
        for key, value in sizes.items():
            print(f"  {key:26s} {value:8.1f}")
        _print_split(f"{name}, rollout frame", profile_rollout(args.dataset, config, args.frames))


if __name__ == "__main__":
    main()
