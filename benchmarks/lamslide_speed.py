"""LaM-SLidE rollout speed next to the BGNN's, versus particle count.

For each particle count N, the geometric fill settles N reference particles in a closed drum
(axis y, length = radius, 40 % full) turning at 20 rpm. Both backends then roll out through the
same engine from that bed: the shipped drum models (BGNN and LaM-SLidE; `--lamslide` for
another). The two step different times per frame (the BGNN 1 ms, the shipped LaM-SLidE 5 ms),
so besides ms per frame the table gives the wall time per simulated second. LaM-SLidE is timed
over whole windows (one network call, its ODE steps, produces `future` frames).

    python benchmarks/lamslide_speed.py --particles 1000 4000 --windows 3
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from bgnn_sim.dem.scenarios import SETTLED_PACKING
from bgnn_sim.engine.rollout import rollout
from bgnn_sim.engine.state import ParticleState, Scene
from bgnn_sim.geometry.container import closed_solid, inspect_container
from bgnn_sim.geometry.fill import fill_container
from bgnn_sim.geometry.generators import drum
from bgnn_sim.geometry.wall import Rotation, Wall
from bgnn_sim.models.loading import TrainedModel, load_model
from bgnn_sim.pretrained import pretrained_model

RADIUS = 0.002


def drum_scene(n: int, frame_dt: float) -> tuple[Scene, torch.Tensor]:
    """A turning drum that n settled particles fill to 40 %, and their positions [n, 3]."""
    volume = n * 4 / 3 * math.pi * RADIUS**3 / SETTLED_PACKING / 0.4
    radius = (volume / math.pi) ** (1 / 3)
    mesh = drum(radius, radius, segments=64)
    wall = Wall("drum", mesh.vertices, mesh.faces.astype("int64"), Rotation((0, 1, 0), rpm=20))
    positions = fill_container(closed_solid(inspect_container([wall])), n, RADIUS, seed=0)
    return Scene([wall], frame_dt), torch.from_numpy(positions)


def at_rest(positions: torch.Tensor, history: int, frame_dt: float) -> ParticleState:
    n = len(positions)
    return ParticleState(
        ids=torch.arange(1, n + 1), types=torch.ones(n, dtype=torch.long),
        radius=torch.full((n,), RADIUS, dtype=torch.float64),
        history=positions.expand(history + 1, -1, -1).clone(),
        active=torch.ones(n, dtype=torch.bool), time=history * frame_dt,
    )  # fmt: skip


def ms_per_frame(trained: TrainedModel, n: int, frames: int) -> tuple[float, float]:
    """Wall ms per frame of a rollout of `frames` frames from a settled bed of n particles, and
    the model's frame step (s)."""
    frame_dt = trained.timing.frame_dt
    scene, positions = drum_scene(n, frame_dt)
    state = at_rest(positions, trained.backend.history, frame_dt)
    # Timing only: a rollout that leaves the drum must not stop the clock.
    rollout(trained.backend, scene, state, 1, max_speed=math.inf)  # warm-up
    started = time.perf_counter()
    rollout(trained.backend, scene, state, frames, max_speed=math.inf)
    return 1e3 * (time.perf_counter() - started) / frames, frame_dt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, nargs="+", default=[1000, 4000])
    parser.add_argument("--windows", type=int, default=3, help="LaM-SLidE windows timed")
    parser.add_argument("--lamslide", default=None, help="LaM-SLidE dynamics.pt [shipped drum]")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bgnn = load_model(pretrained_model("drum"), "cpu")
    lamslide = load_model(args.lamslide or pretrained_model("drum", "lamslide"), "cpu")
    frames = args.windows * lamslide.backend.dynamics.config.future
    print("| particles | BGNN ms/frame | LaM-SLidE ms/frame | BGNN s per simulated s "
          "| LaM-SLidE s per simulated s |")  # fmt: skip
    print("|---|---|---|---|---|")
    for n in args.particles:
        (bgnn_ms, bgnn_dt), (lam_ms, lam_dt) = (ms_per_frame(m, n, frames)
                                                for m in (bgnn, lamslide))  # fmt: skip
        print(
            f"| {n:,} | {bgnn_ms:.1f} | {lam_ms:.1f} | {bgnn_ms / bgnn_dt / 1e3:.0f} "
            f"| {lam_ms / lam_dt / 1e3:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
