"""Rollout speed in the user's unit: wall seconds per simulated second, next to LIGGGHTS.

For each scene (a conical hopper discharging, a drum turning at 20 rpm) and particle count N,
LIGGGHTS fills and settles the container, then runs the event (`--seconds` of discharge or
rotation, dumping every frame as a user's run does) on 1 and on 2 MPI processes: its own "Loop
time" of that last run is the reference. The learned backends then roll out the same event
from LIGGGHTS's state, writing every frame to HDF5 as `bgnn rollout` does (wall guard on):

- BGNN plain: the shipped model of the scene's kind, a fresh neighbour search per frame;
- BGNN lists: the same with Verlet lists (bgnn_sim/graph/verlet.py, skin of one radius), as
  `bgnn simulate` and `bgnn rollout` run it;
- BGNN lists + bfloat16: the same with the processor's matrix products in bfloat16
  (`--precision bfloat16`);
- BGNN compiled: the network through torch.compile (its compilation time printed apart), with
  and without the lists, and with the lists in bfloat16;
- LaM-SLidE: the shipped drum model (drum scenes), timed over whole windows of its 5 ms frames,
  then with its latent dynamics compiled.

Printed: seconds per simulated second and the ratio to LIGGGHTS on the most cores timed
(below 1: faster than LIGGGHTS), then where a plain BGNN frame goes (neighbours, wall contacts,
the rest of the graph, network, wall guard, output and the rest of the engine), then the price
of other BGNN shapes for the accuracy work to weigh: each network of OPTIONS (particle cutoff,
width, blocks; untrained weights cost what trained ones do) timed on the scene's own graph in
each precision, and
what a lists frame with that network would cost per simulated second at longer frames (the
frame's other work taken as measured, only the network swapped).

    python benchmarks/rollout_speed.py --particles 1000 1500 10000
    python benchmarks/rollout_speed.py --particles 1500 --device cuda --no-liggghts
    python benchmarks/rollout_speed.py --scenes drum --particles 1500 --bgnn runs/x/best.pt
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import re
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import torch
from training_profile import Clock

from bgnn_sim.dem.config import SETTLED_PACKING, Material, Timing, sphere_volume
from bgnn_sim.dem.dataset import build_trajectory
from bgnn_sim.dem.deck import write_deck
from bgnn_sim.dem.runner import run_deck
from bgnn_sim.dem.scenarios import DrumScenario, HopperScenario, with_bin_for
from bgnn_sim.engine import rollout as engine
from bgnn_sim.engine.state import frame_stride, scene_from_trajectory, state_from_trajectory
from bgnn_sim.geometry.generators import HopperSpec
from bgnn_sim.graph import verlet
from bgnn_sim.graph import walls as graph_walls
from bgnn_sim.models import simulator as bgnn_simulator
from bgnn_sim.models.bgnn import BGNN
from bgnn_sim.models.loading import load_model
from bgnn_sim.pretrained import pretrained_model

MATERIAL, TIMING = Material(), Timing()
DRUM_FILL, DRUM_RPM = 0.4, 20.0
# BGNN shapes priced: (particle cutoff in radii, width, blocks); the first is the shipped one.
OPTIONS = ((3.0, 64, 3), (2.5, 64, 3), (4.0, 64, 3), (3.0, 48, 3), (3.0, 32, 3), (3.0, 64, 2),
           (3.0, 32, 2), (2.5, 32, 2))  # fmt: skip
OPTION_FRAME_MS = (1.0, 2.0, 4.0, 5.0)
OPTION_PRECISIONS = ("float32", "bfloat16")


def hopper_for(n: int, seconds: float) -> HopperScenario:
    """A conical hopper (30 degrees, outlet 8 diameters) whose top grows with N, so that the bed
    keeps its proportions, with a bin tall enough to insert N (as `bgnn generate` sizes it)."""
    top = round(0.07 * (n / 1500) ** (1 / 3), 4)
    spec = HopperSpec("conical", outlet=8 * MATERIAL.diameter, angle=30.0, top=top)
    spec = with_bin_for(spec, n, MATERIAL)
    return HopperScenario(spec, n, settle_time=0.5, settled_record=0.02, discharge_time=seconds)


def drum_for(n: int, seconds: float) -> DrumScenario:
    """A closed drum (axis y, length = radius) that N settled particles fill to 40 %."""
    volume = n * sphere_volume(MATERIAL.radius) / SETTLED_PACKING / DRUM_FILL
    radius = round((volume / math.pi) ** (1 / 3), 4)
    return DrumScenario(radius, radius, n, DRUM_RPM, revolutions=seconds * DRUM_RPM / 60)


def liggghts_run(scenario, run_dir: Path, procs: int, seconds: float) -> float:
    """Run the scenario's deck; LIGGGHTS's wall seconds per simulated second of its event."""
    write_deck(scenario, run_dir, MATERIAL, TIMING)
    run_deck(run_dir, mpi_procs=procs)
    log = (run_dir / "log.liggghts").read_text()
    loops = re.findall(r"Loop time of ([\d.e+-]+) on \d+ procs for (\d+) steps", log)
    loop_seconds, steps = float(loops[-1][0]), int(loops[-1][1])
    return loop_seconds / (steps * TIMING.dem_dt)


def learned_start(scenario, run_dir: Path, trained):
    """The scene and the state at the event's start (at least the model's history after the
    first dump), in the model's frame step."""
    traj, _ = build_trajectory(scenario, run_dir, MATERIAL, TIMING)
    frame_dt = trained.timing.frame_dt
    stride = frame_stride(traj, frame_dt)
    event = int((traj.time < scenario.start_time(TIMING) - 1e-9).sum())
    first = max(event, stride * trained.backend.history)
    state = state_from_trajectory(traj, first, trained.backend.history, stride=stride)
    return scene_from_trajectory(traj, frame_dt), state.to(trained.device)


def seconds_per_second(trained, scene, state, frames: int, out: Path) -> float:
    """Wall seconds per simulated second of a rollout written to `out` (after a warm-up)."""
    engine.rollout(trained.backend, scene, state, 1, max_speed=math.inf)
    started = time.perf_counter()
    engine.rollout_to_file(trained.backend, scene, state, frames, out, force=True)
    if trained.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / (frames * scene.frame_dt)


def in_bfloat16(trained, scene, state, frames: int, out: Path) -> float:
    """`seconds_per_second` of a BGNN with its processor in bfloat16, then back in float32."""
    trained.backend.use_precision("bfloat16")
    try:
        return seconds_per_second(trained, scene, state, frames, out)
    finally:
        trained.backend.use_precision("float32")


def frame_split(trained, scene, state, frames: int, out: Path) -> dict:
    """ms per frame by section of a plain BGNN rollout written to `out`."""
    clock, simulator = Clock(), trained.backend
    with ExitStack() as stack:
        for module, name, section in (
            (verlet, "radius_graph", "neighbours"),
            (graph_walls, "closest_point_on_triangles", "wall contacts"),
            (bgnn_simulator, "build_graph", "graph (rest)"),  # features; the searches come first
            (engine, "guarded_advance", "wall guard"),
            (engine, "write_frame", "output"),
        ):
            stack.enter_context(clock.wrapped(module, name, section))
        stack.enter_context(clock.wrapped(simulator, "network", "network"))
        engine.rollout(simulator, scene, state, 1, max_speed=math.inf)
        clock.seconds.clear()
        with clock.section("total"):
            engine.rollout_to_file(simulator, scene, state, frames, out, force=True)
    split = {name: 1e3 * s / frames for name, s in clock.seconds.items()}
    split["engine (rest)"] = 2 * split["total"] - sum(split.values())
    return split


def network_ms(simulator, scene, state, option: tuple, repeats: int = 10) -> float:
    """ms of one forward pass of an untrained BGNN of `option` = (cutoff radii, width, blocks,
    precision) on the graph `simulator` builds for `state` at that cutoff."""
    cutoff_radii, width, blocks, precision = option
    priced = copy.copy(simulator)
    priced.spec = dataclasses.replace(simulator.spec, cutoff=cutoff_radii * simulator.spec.radius)
    priced.lists = None
    priced.use_precision(precision)
    config = dataclasses.replace(simulator.model.config, latent=width, message_passing=blocks)
    clock = Clock()
    priced.network = clock.timed(BGNN(config).to(state.positions.device).eval(), "network")
    with torch.inference_mode():
        priced.acceleration(scene, state)  # warm-up
        clock.seconds.clear()
        for _ in range(repeats):
            priced.acceleration(scene, state)
    return 1e3 * clock.seconds["network"] / repeats


def option_costs(simulator, scene, state, lists_seconds: float) -> list[tuple]:
    """Rows (option + (precision,), network ms, [seconds per simulated second at each
    OPTION_FRAME_MS]): a float32 lists frame (`lists_seconds` per simulated second at the
    scene's frame) with the shipped network swapped for the option's."""
    options = [(*shape, precision) for precision in OPTION_PRECISIONS for shape in OPTIONS]
    timed = {option: network_ms(simulator, scene, state, option) for option in options}
    rest_ms = 1e3 * lists_seconds * scene.frame_dt - timed[options[0]]
    return [
        (option, ms, [(rest_ms + ms) / frame_ms for frame_ms in OPTION_FRAME_MS])
        for option, ms in timed.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, nargs="+", default=[1000, 1500, 10000])
    parser.add_argument("--scenes", nargs="+", default=["hopper", "drum"])
    parser.add_argument("--seconds", type=float, default=0.1, help="LIGGGHTS's event")
    parser.add_argument("--frames", type=int, default=20, help="BGNN frames timed")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--liggghts-procs", type=int, nargs="+", default=[1, 2],
                        help="MPI processes of the LIGGGHTS runs timed")  # fmt: skip
    parser.add_argument("--no-liggghts", action="store_true", help="no LIGGGHTS timing")
    parser.add_argument(
        "--bgnn",
        type=Path,
        default=None,
        help="a BGNN checkpoint timed in place of each scene's shipped one",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.device}; "
          f"LIGGGHTS event {args.seconds} s")  # fmt: skip
    rows = []
    for kind in args.scenes:
        for n in args.particles:
            rows.append(measure(kind, n, args))
    columns = list(dict.fromkeys(column for _, _, figures in rows for column in figures))
    print("\n| scene | particles | " + " | ".join(columns) + " |")
    print("|---" * (2 + len(columns)) + "|")
    for kind, n, figures in rows:
        reference = liggghts_reference(figures)
        cells = [_cell(figures.get(c), reference, c.startswith("LIGGGHTS")) for c in columns]
        print(f"| {kind} | {n:,} | " + " | ".join(cells) + " |")


def measure(kind: str, n: int, args) -> tuple[str, int, dict]:
    """Seconds per simulated second of every backend on one scene; prints the frame split."""
    scenario = (hopper_for if kind == "hopper" else drum_for)(n, args.seconds)
    figures = {}
    with tempfile.TemporaryDirectory(prefix="bgnn_speed_") as scratch:
        scratch = Path(scratch)
        for procs in args.liggghts_procs:
            run_dir = scratch / f"mpi{procs}"
            seconds = liggghts_run(scenario, run_dir, procs, args.seconds)
            if args.no_liggghts:
                break  # one run still makes the learned backends' initial state
            figures[f"LIGGGHTS {procs} core{'s' * (procs > 1)}"] = seconds
        bgnn = load_model(args.bgnn or pretrained_model(kind), args.device)  # Verlet lists
        scene, state = learned_start(scenario, run_dir, bgnn)
        out = scratch / "rollout.h5"
        lists, bgnn.backend.lists = bgnn.backend.lists, None
        split = frame_split(bgnn, scene, state, args.frames, out)
        figures["BGNN plain"] = seconds_per_second(bgnn, scene, state, args.frames, out)
        bgnn.backend.lists = lists
        figures["BGNN lists"] = seconds_per_second(bgnn, scene, state, args.frames, out)
        figures["BGNN lists + bfloat16"] = in_bfloat16(bgnn, scene, state, args.frames, out)
        options = option_costs(bgnn.backend, scene, state, figures["BGNN lists"])
        started = time.perf_counter()
        bgnn.backend.compile()
        engine.rollout(bgnn.backend, scene, state, 2, max_speed=math.inf)  # compiles
        compile_seconds = time.perf_counter() - started
        figures["BGNN lists + compiled"] = seconds_per_second(bgnn, scene, state, args.frames, out)
        # The warm-up frame compiles the bfloat16 graph.
        figures["BGNN lists + compiled + bfloat16"] = in_bfloat16(bgnn, scene, state,
                                                                  args.frames, out)  # fmt: skip
        bgnn.backend.lists = None
        figures["BGNN compiled"] = seconds_per_second(bgnn, scene, state, args.frames, out)
        if kind == "drum":
            lamslide = load_model(pretrained_model("drum", "lamslide"), "cpu")
            scene, state = learned_start(scenario, run_dir, lamslide)
            frames = 3 * lamslide.backend.dynamics.config.future
            figures["LaM-SLidE"] = seconds_per_second(lamslide, scene, state, frames, out)
            lamslide.backend.compile()  # its warm-up window compiles
            figures["LaM-SLidE compiled"] = seconds_per_second(lamslide, scene, state, frames,
                                                               out)  # fmt: skip
    particles = int(state.active.sum())
    print(f"\n{kind}, {n:,} particles ({particles:,} at the learned start): BGNN compiled "
          f"after {compile_seconds:.0f} s of compilation; a plain frame, "
          f"{split['total']:.1f} ms:")  # fmt: skip
    for section, ms in sorted(split.items(), key=lambda item: -item[1]):
        if section != "total":
            print(f"  {section:14s} {ms:8.1f} ms  {100 * ms / split['total']:5.1f} %")
    print_options(options, figures)
    print(json.dumps({"scene": kind, "particles": n, **figures}), flush=True)
    return kind, n, figures


def liggghts_reference(figures: dict) -> float | None:
    """The LIGGGHTS figure that ratios are taken to: its last column (the most cores timed)."""
    return next((v for c, v in reversed(figures.items()) if "LIGGGHTS" in c), None)


def print_options(options: list[tuple], figures: dict) -> None:
    """The table of `option_costs`, with ratios to the last LIGGGHTS column of `figures`."""
    reference = liggghts_reference(figures)
    frames = " | ".join(f"{ms:g} ms frame" for ms in OPTION_FRAME_MS)
    print("BGNN shapes (network on this graph; a lists frame per simulated second):")
    print(f"| cutoff (radii) | width x blocks | precision | network ms | {frames} |")
    print("|---" * (4 + len(OPTION_FRAME_MS)) + "|")
    for (cutoff, width, blocks, precision), ms, costs in options:
        cells = " | ".join(_cell(cost, reference, False) for cost in costs)
        print(f"| {cutoff:g} | {width} x {blocks} | {precision} | {ms:.1f} | {cells} |")


def _cell(seconds: float | None, reference: float | None, is_reference: bool) -> str:
    """Seconds per simulated second, with the ratio to the reference; n/a where not measured."""
    if seconds is None:
        return "n/a"
    if reference is None or is_reference:
        return f"{seconds:.2f}"
    return f"{seconds:.2f} ({seconds / reference:.1f}x)"


if __name__ == "__main__":
    main()
