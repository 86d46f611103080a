"""Rollout speed: BGNN ms per frame versus particle count, next to LIGGGHTS on the same scene.

For each particle count N, LIGGGHTS fills a closed drum (axis y, length = radius, 40 % full)
with N reference particles, lets them settle, then turns the drum: it dumps 6 frames (the BGNN's
history) and is timed over `--frames` further frames (40 DEM steps each, no dumps). The BGNN
(random weights: speed does not depend on them) rolls out the same number of frames from those
6 frames, for two model sizes. LIGGGHTS runs on `--liggghts-procs` MPI processes (one core
each); torch uses `--threads` threads.

    python benchmarks/rollout_speed.py --particles 1000 10000 --frames 20
"""

from __future__ import annotations

import argparse
import math
import re
import tempfile
import time
from pathlib import Path

import torch

from bgnn_sim.dem.config import Material, Timing
from bgnn_sim.dem.dataset import scenario_walls
from bgnn_sim.dem.deck import DUMP_PATTERN, deck_text, write_deck
from bgnn_sim.dem.runner import run_deck
from bgnn_sim.dem.scenarios import SETTLED_PACKING, DrumScenario
from bgnn_sim.engine.rollout import rollout
from bgnn_sim.engine.state import Scene, state_from_trajectory
from bgnn_sim.io.liggghts import read_dumps
from bgnn_sim.models.bgnn import BGNN, BGNNConfig, count_parameters
from bgnn_sim.models.simulator import BGNNSimulator
from bgnn_sim.training.config import TrainConfig

MODELS = {
    "small (5 x 64)": BGNNConfig(latent=64, message_passing=5),
    "large (10 x 128)": BGNNConfig(latent=128, message_passing=10),
}
HISTORY_FRAMES = 6
# Statistics of the right order for the reference material (they only scale features).
STATS = {
    "velocity": {"mean": [0.0, 0.0, 0.0], "std": [3e-5, 3e-5, 4e-5]},
    "acceleration": {"mean": [0.0, 0.0, -2e-6], "std": [3e-6, 3e-6, 4e-6]},
}


def drum_for(n: int, material: Material, frames: int) -> DrumScenario:
    """A drum (length = radius) that N particles fill to 40 %, turning at 20 rpm."""
    drum_volume = n * material.particle_volume / SETTLED_PACKING / 0.4
    radius = (drum_volume / math.pi) ** (1 / 3)
    recorded_s = (HISTORY_FRAMES + frames) * Timing().frame_dt
    return DrumScenario(
        round(radius, 4), round(radius, 4), n, rpm=20.0, revolutions=recorded_s * 20 / 60
    )


def liggghts_ms_per_frame(
    scenario: DrumScenario, run_dir: Path, frames: int, procs: int = 1
) -> float:
    """Run the drum deck on `procs` MPI processes, timing its last `frames` frames without
    dumps (ms per frame)."""
    material, timing = Material(), Timing()
    write_deck(scenario, run_dir, material, timing)
    deck = deck_text(scenario, material, timing).rstrip().rsplit("\n", 1)[0]  # drop last run
    history_steps = (HISTORY_FRAMES - 1) * timing.steps_per_frame
    deck += f"\nrun {history_steps}\nundump frames\nrun {frames * timing.steps_per_frame}\n"
    (run_dir / "in.deck").write_text(deck)
    run_deck(run_dir, mpi_procs=procs)
    loops = re.findall(r"Loop time of ([\d.e+-]+) on \d+ procs for (\d+) steps", (
        run_dir / "log.liggghts").read_text())  # fmt: skip
    seconds, steps = float(loops[-1][0]), int(loops[-1][1])
    return seconds / steps * timing.steps_per_frame * 1e3


def bgnn_ms_per_frame(config: BGNNConfig, scenario, run_dir: Path, frames: int, device) -> float:
    """Roll a random BGNN out from LIGGGHTS's 6 frames; ms per frame after one warm-up frame."""
    torch.manual_seed(0)
    truth = read_dumps(str(run_dir / DUMP_PATTERN), dem_dt=Timing().dem_dt)
    state = state_from_trajectory(truth, HISTORY_FRAMES - 1, HISTORY_FRAMES - 1).to(device)
    scene = Scene(scenario_walls(scenario, Timing()), frame_dt=Timing().frame_dt)
    model = BGNN(config).to(device).eval()
    spec = TrainConfig(model=config).graph_spec(Material().radius)
    simulator = BGNNSimulator(model, STATS, spec, Timing().frame_dt)
    state = rollout(simulator, scene, state, 1)  # warm-up: allocations, lazy imports
    _sync(device)
    start = time.perf_counter()
    rollout(simulator, scene, state, frames, max_speed=math.inf)
    _sync(device)
    return (time.perf_counter() - start) / frames * 1e3


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--liggghts-procs", type=int, default=1, help="MPI processes")
    parser.add_argument("--no-liggghts", action="store_true", help="BGNN only (e.g. on a GPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name, config in MODELS.items():
        print(f"model {name}: {count_parameters(BGNN(config)):,} parameters")
    print(f"| particles | LIGGGHTS ms/frame ({args.liggghts_procs} proc) | " + " | ".join(
        f"BGNN {name} ms/frame ({args.device})" for name in MODELS) + " |")  # fmt: skip
    for n in args.particles:
        scenario = drum_for(n, Material(), args.frames)
        with tempfile.TemporaryDirectory(prefix="bgnn_bench_") as tmp:
            run_dir = Path(tmp)
            reference = "n/a"
            if args.no_liggghts:
                liggghts_ms_per_frame(scenario, run_dir, 1)  # still makes the initial frames
            else:
                ms = liggghts_ms_per_frame(scenario, run_dir, args.frames, args.liggghts_procs)
                reference = f"{ms:.1f}"
            rows = [
                f"{bgnn_ms_per_frame(c, scenario, run_dir, args.frames, args.device):.1f}"
                for c in MODELS.values()
            ]
        print(f"| {n} | {reference} | " + " | ".join(rows) + " |", flush=True)


if __name__ == "__main__":
    main()
