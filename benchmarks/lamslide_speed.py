"""LaM-SLidE rollout speed next to the BGNN's, in ms per frame, versus particle count.

For each particle count N, the geometric fill settles N reference particles in a closed drum
(axis y, length = radius, 40 % full) turning at 20 rpm. Both backends then roll out through the
same engine from that bed. The BGNN is the shipped drum model (3 blocks x 64): its cost
depends on the graph, so it needs weights that keep the bed a bed. LaM-SLidE has random weights
(its cost does not depend on them or on the positions) and the default sizes: an autoencoder
128 wide with 64 latents, and dynamics of 4 space/time block pairs with 8 context + 12 future
frames per call and 10 ODE steps. It is timed over whole windows.

    python benchmarks/lamslide_speed.py --particles 1000 4000 --frames 24
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from bgnn_sim.dem.scenarios import SETTLED_PACKING
from bgnn_sim.engine.rollout import rollout
from bgnn_sim.engine.session import load_model
from bgnn_sim.engine.state import ParticleState, Scene
from bgnn_sim.geometry.container import closed_solid, inspect_container
from bgnn_sim.geometry.fill import fill_container
from bgnn_sim.geometry.generators import drum
from bgnn_sim.geometry.wall import Rotation, Wall
from bgnn_sim.models.lamslide.autoencoder import Autoencoder, AutoencoderConfig
from bgnn_sim.models.lamslide.dynamics import DynamicsConfig, LatentDynamics
from bgnn_sim.models.lamslide.simulator import LamSlideSimulator
from bgnn_sim.pretrained import pretrained_model

RADIUS = 0.002
FRAME_DT = 1e-3


def drum_scene(n: int) -> tuple[Scene, torch.Tensor]:
    """A turning drum that n settled particles fill to 40 %, and their positions [n, 3]."""
    volume = n * 4 / 3 * math.pi * RADIUS**3 / SETTLED_PACKING / 0.4
    radius = (volume / math.pi) ** (1 / 3)
    mesh = drum(radius, radius, segments=64)
    wall = Wall("drum", mesh.vertices, mesh.faces.astype("int64"), Rotation((0, 1, 0), rpm=20))
    positions = fill_container(closed_solid(inspect_container([wall])), n, RADIUS)
    return Scene([wall], FRAME_DT), torch.from_numpy(positions)


def at_rest(positions: torch.Tensor, history: int) -> ParticleState:
    n = len(positions)
    return ParticleState(
        ids=torch.arange(1, n + 1), types=torch.ones(n, dtype=torch.long),
        radius=torch.full((n,), RADIUS, dtype=torch.float64),
        history=positions.expand(history + 1, -1, -1).clone(),
        active=torch.ones(n, dtype=torch.bool), time=history * FRAME_DT,
    )  # fmt: skip


def ms_per_frame(backend, scene: Scene, positions: torch.Tensor, frames: int) -> float:
    state = at_rest(positions, backend.history)
    # Random weights move particles anywhere: no divergence check (it costs nothing here).
    rollout(backend, scene, state, 1, max_speed=math.inf)  # warm-up
    started = time.perf_counter()
    rollout(backend, scene, state, frames, max_speed=math.inf)
    return 1e3 * (time.perf_counter() - started) / frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, nargs="+", default=[1000, 4000])
    parser.add_argument("--frames", type=int, default=24, help="a multiple of 12")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    bgnn = load_model(pretrained_model("drum"), "cpu").backend
    lamslide = LamSlideSimulator(Autoencoder(AutoencoderConfig()).eval(),
                                 LatentDynamics(DynamicsConfig()).eval())  # fmt: skip
    print("| particles | BGNN (shipped drum) ms/frame | LaM-SLidE ms/frame |")
    print("|---|---|---|")
    for n in args.particles:
        scene, positions = drum_scene(n)
        timings = [ms_per_frame(b, scene, positions, args.frames) for b in (bgnn, lamslide)]
        print(f"| {n:,} | {timings[0]:.1f} | {timings[1]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
