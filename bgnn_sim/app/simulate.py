"""`bgnn simulate`: mesh -> container -> particles -> rollout -> run folder.

The run folder holds
    trajectory.h5        every frame (bgnn-sim trajectory format); trajectory_0.h5 ... for the
                         members of an ensemble (--samples, LaM-SLidE)
    paraview/            particles.pvd + walls.pvd and their .vtp files (walls move with time)
    report/              analysis plots (discharge or mixing, energy, leakage) and metrics.json
    snapshot.png         one frame rendered off-screen (a hopper a quarter emptied, a drum's end)
    summary.json         what was inferred and simulated, speed, warnings, the wall guard's
                         corrections, key figures
    config.toml          the resolved settings (the particle count and model filled in)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

from bgnn_sim.analysis.report import write_analysis_report, write_ensemble_report
from bgnn_sim.analysis.summary import AnalysisOptions, analyze
from bgnn_sim.app.run_folder import SNAPSHOT, SOURCE, TRAJECTORY, clear, previous_run
from bgnn_sim.app.scenario import (
    domain_warnings,
    initial_state,
    scenario_attrs,
    scene_for,
    simulated_seconds,
)
from bgnn_sim.app.simulation_config import SimulationConfig
from bgnn_sim.configfile import write_toml
from bgnn_sim.device import use_threads
from bgnn_sim.engine.guard import DEFAULT_WALL_GUARD
from bgnn_sim.engine.rollout import rollout_to_file
from bgnn_sim.errors import ConfigError
from bgnn_sim.geometry.container import Container, inspect_container
from bgnn_sim.geometry.mesh import load_walls
from bgnn_sim.geometry.wall import TIME_TOLERANCE
from bgnn_sim.io.hdf5 import TrajectoryFile
from bgnn_sim.io.outputs import strict_json
from bgnn_sim.io.render import offscreen_unavailable, render_frame
from bgnn_sim.io.vtk import export_vtk
from bgnn_sim.models.loading import load_model
from bgnn_sim.pretrained import pretrained_model


@dataclass
class SimulationResult:
    out: Path
    summary: dict


def simulate(
    config: SimulationConfig,
    progress: Callable | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> SimulationResult:
    """Run one simulation into `config.out` (see the module docstring for what is written).

    Args:
        config: the settings.
        progress: `progress(total, description)`, a context manager yielding `advance(text)`.
        say: receives one-line notes: what was inferred, warnings.
    """
    previous = previous_run(Path(config.out), config.force)  # before any work
    container = inspect_container(load_walls(config.mesh, config.scale), config.axis)
    say(f"{config.mesh}: {container.describe()}")
    say(_plan(container, config))
    model_path = config.model or pretrained_model(container.kind, config.backend or "bgnn")
    use_threads(config.threads)
    trained = load_model(model_path, config.device, config.seed, config.compile,
                         config.precision)  # fmt: skip
    if config.backend not in (None, trained.method):
        raise ConfigError(f"--backend {config.backend}, but {model_path} is a {trained.method} "
                          "model")  # fmt: skip
    if config.samples > 1 and trained.method != "lamslide":
        raise ConfigError("--samples needs a LaM-SLidE model: BGNN rollouts are deterministic")
    frame_dt = trained.timing.frame_dt
    radius = float(trained.data["material"]["radius"])

    started = time.perf_counter()
    state = initial_state(container, config, trained.data, trained.backend.history)
    fill_seconds = time.perf_counter() - started
    if container.kind == "hopper":
        config = _gate_on_frames(config, state.time, frame_dt, say)
    n_particles = int(state.active.sum())
    # The resolved settings reproduce the run: the fill's count and the model actually used.
    config = replace(config, model=Path(model_path), backend=trained.method)
    if config.init is None:
        config = replace(config, particles=n_particles, fill_height=None)
    origin = f"from {config.init}" if config.init else f"filled in {fill_seconds:.1f} s"
    say(f"{n_particles} particles of radius {radius * 1e3:g} mm ({origin})")
    warnings = domain_warnings(container, state, config, trained.data)
    if cannot_render := offscreen_unavailable():
        warnings.append(f"no {SNAPSHOT}: {cannot_render}")
    for warning in warnings:
        say(f"warning: {warning}")

    out = clear(Path(config.out), previous)  # only now: a bad mesh or fill keeps the old run
    scene = scene_for(container, config, frame_dt)
    frames = math.ceil(simulated_seconds(container, config) / frame_dt)
    attrs = _attrs(container, config, trained.data)
    started = time.perf_counter()
    paths = trajectory_paths(out, config.samples)
    guard = DEFAULT_WALL_GUARD if config.wall_guard else None
    last = _roll_out(trained, scene, state, frames, paths, attrs, container.empties, config.seed,
                     progress, guard)  # fmt: skip
    rollout_seconds = time.perf_counter() - started
    done = round((last.time - state.time) / frame_dt)

    metrics = _outputs(out, paths, container, config, picture=not cannot_render)
    summary = {
        "mesh": str(config.mesh), "container": container.describe(), "kind": container.kind,
        "model": str(model_path), "model_step": trained.step, "device": str(trained.device),
        "particles": n_particles, "frames": done, "frame_dt_s": frame_dt,
        "simulated_s": done * frame_dt, "fill_s": fill_seconds, "rollout_s": rollout_seconds,
        "frames_per_s": done * len(paths) / rollout_seconds, "samples": len(paths),
        "wall_guard": config.wall_guard, "guard_corrections": _guard_corrections(paths),
        "warnings": warnings, "metrics": metrics,
    }  # fmt: skip
    (out / "summary.json").write_text(strict_json(summary))
    write_toml(out / "config.toml", config.as_table())
    return SimulationResult(out, summary)


def _plan(container: Container, config: SimulationConfig) -> str:
    """What will happen, with the options that change it."""
    return container.plan(config)


def _gate_on_frames(
    config: SimulationConfig, start: float, frame_dt: float, say: Callable[[str], None]
) -> SimulationConfig:
    """The settings with the gate's opening on the model frame nearest `open_at` (the frames
    fall every `frame_dt` from `start`): a rollout's graph holds the walls present at each of
    its frames, so a gate between two would open up to a frame late."""
    if config.open_at <= start:
        return config
    open_at = round(start + max(1, round((config.open_at - start) / frame_dt)) * frame_dt, 12)
    if abs(open_at - config.open_at) < TIME_TOLERANCE:
        return config
    say(f"the gate opens at {open_at:g} s, on the model's {frame_dt * 1e3:g} ms frames "
        f"(--open-at {config.open_at:g})")  # fmt: skip
    return replace(config, open_at=open_at)


def _attrs(container: Container, config: SimulationConfig, data: dict) -> dict:
    return {
        "source": SOURCE, "mesh": str(config.mesh), "model": str(config.model),
        "kind": container.kind, "scenario": scenario_attrs(container, config),
        "material": data["material"], "timing": data["timing"],
    }  # fmt: skip


def trajectory_paths(out: Path, samples: int) -> list[Path]:
    """trajectory.h5, or trajectory_0.h5 ... for the members of an ensemble."""
    if samples == 1:
        return [out / TRAJECTORY]
    return [out / f"trajectory_{k}.h5" for k in range(samples)]


def _roll_out(trained, scene, state, frames, paths, attrs, empties: bool, seed: int, progress,
              guard):  # fmt: skip
    """One rollout per path (the members of an ensemble differ by their seed), through the wall
    `guard` (None: the raw model); a container that `empties` (a hopper) stops once empty.
    Returns the last state of the last rollout."""
    empty = (lambda s: not bool(s.active.any())) if empties else None
    with progress(frames * len(paths), "simulate") if progress else nullcontext() as advance:
        report = (lambda s: advance(f"{int(s.active.sum())} particles")) if advance else None
        for k, path in enumerate(paths):
            if k:  # the next member of the ensemble: fresh identifiers and sampling noise
                trained.backend.reseed(seed + k)
            last = rollout_to_file(trained.backend, scene, state.to(trained.device), frames,
                                   path, attrs, on_frame=report, until=empty,
                                   wall_guard=guard)  # fmt: skip
    return last


def _guard_corrections(paths: list[Path]) -> int | None:
    """The wall guard's corrections over all the rollouts; None when it was off."""
    counts = []
    for path in paths:
        with TrajectoryFile(path) as trajectory:
            if trajectory.guard_corrections is not None:
                counts.append(int(trajectory.guard_corrections.sum()))
    return sum(counts) if counts else None


def _outputs(
    out: Path, paths: list[Path], container: Container, config: SimulationConfig, picture: bool
) -> dict:
    """ParaView series and (with `picture`) snapshot of the (first) trajectory, the analysis
    report of all of them (an ensemble's band); returns the key figures.

    The series and the snapshot are written in a second thread while the analysis runs; their
    work (VTK, h5py, numpy) overlaps with it on the cores: 3.5 against 5 s for the default
    drum's outputs, the same files. An error in either is raised here."""
    with TrajectoryFile(paths[0]) as trajectory:
        first = trajectory.read()
    shown = _snapshot_frame(first.active, container.mixes) if picture else None
    options = AnalysisOptions(outlet_z=container.outlet_z)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pictures = pool.submit(_paraview_and_snapshot, out, paths[0], config.vtk_every, shown,
                               container.mixes)  # fmt: skip
        analyses = [analyze(first, options)]
        for path in paths[1:]:
            with TrajectoryFile(path) as trajectory:
                analyses.append(analyze(trajectory.read(), options))
        title = f"Simulation of {config.mesh}"
        if len(analyses) == 1:
            metrics = write_analysis_report(analyses[0], out / "report", title, False)
        else:
            metrics = write_ensemble_report(analyses, out / "report", title, False)
        pictures.result()
    return metrics


def _paraview_and_snapshot(
    out: Path, path: Path, every: int, shown: int | None, by_type: bool
) -> None:
    """The ParaView series (every `every`th frame) of the trajectory at `path`, and its frame
    `shown` rendered as the snapshot (None: no snapshot)."""
    with TrajectoryFile(path) as trajectory:
        export_vtk(trajectory, out / "paraview", every=every)
        if shown is not None:
            render_frame(trajectory, shown, out / SNAPSHOT, by_type=by_type)


def _snapshot_frame(active, mixes: bool) -> int:
    """The frame worth a picture: a drum's last (its halves mixed: `mixes`), a hopper's first
    with a quarter of its particles gone (the flow in full swing), from active masks [T, N]."""
    counts = active.sum(axis=1)
    flowing = (counts <= 0.75 * counts[0]).nonzero()[0]
    return len(counts) - 1 if mixes or len(flowing) == 0 else int(flowing[0])
