"""The `bgnn` command: parse, call bgnn_sim, report. No simulation logic lives here."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from bgnn_cli.app import App
from bgnn_cli.options import check_device, check_limits
from bgnn_sim.app.simulation_config import DEFAULT_RPM
from bgnn_sim.defaults import PRECISIONS
from bgnn_sim.errors import LimitExceededError

Force = Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")]
Scale = Annotated[
    float, typer.Option(help="Factor applied to mesh coordinates (0.001 for millimetres).")
]
Threads = Annotated[int, typer.Option(min=0, help="CPU threads for the network (0: all cores).")]
Compile = Annotated[
    bool,
    typer.Option(
        "--compile",
        help="Compile the network (BGNN) or the latent dynamics (LaM-SLidE) with "
        "torch.compile, after 10-45 s of compilation; pays on long or large rollouts "
        "(10k particles), not on small ones.",
    ),
]
PrecisionName = StrEnum("PrecisionName", {name: name for name in PRECISIONS})
Precision = Annotated[
    PrecisionName,
    typer.Option(
        help="BGNN: the precision of the network's message passing; bfloat16 runs its matrix "
        "products on the bfloat16 units of recent CPUs (AMX, AVX-512 BF16) and GPUs.",
    ),
]
DemDt = Annotated[float, typer.Option(help="LIGGGHTS time step (s): time = step x dt.")]
NoWallGuard = Annotated[
    bool,
    typer.Option(
        "--no-wall-guard",
        help="Run the raw model: no wall guard putting particles that cross or touch a wall "
        "back on their side.",
    ),
]


app = App(
    help="bgnn-sim: learned granular-flow simulation in hoppers and drums.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
mesh_app = typer.Typer(help="Generate container meshes (metres).", no_args_is_help=True)
app.add_typer(mesh_app, name="mesh")


@app.command()
def info(
    path: Annotated[Path, typer.Argument(help="A mesh (.stl/.obj/.ply) or a trajectory (.h5).")],
    scale: Scale = 1.0,
) -> None:
    """Summarise a mesh or a trajectory file."""
    from bgnn_cli.report import describe

    for line in describe(path, scale):
        typer.echo(line)


@app.command()
def convert(
    dumps: Annotated[
        list[str], typer.Argument(help="LIGGGHTS dump files or glob patterns (quote them).")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Trajectory file (.h5).")],
    dem_dt: DemDt = 2.5e-5,
    radius: Annotated[
        float | None, typer.Option(help="Particle radius (m) when the dumps have none.")
    ] = None,
    mesh: Annotated[
        Path | None, typer.Option(help="Container mesh to store as static walls.")
    ] = None,
    scale: Scale = 1.0,
    force: Force = False,
) -> None:
    """Convert LIGGGHTS dumps (text `dump custom`, .gz, or `custom/vtk`) to a trajectory."""
    from bgnn_sim.geometry.mesh import load_walls
    from bgnn_sim.io.hdf5 import write_trajectory
    from bgnn_sim.io.liggghts import read_dumps
    from bgnn_sim.io.outputs import check_output_file

    check_output_file(output, force)
    trajectory = read_dumps(dumps, dem_dt=dem_dt, radius=radius)
    if mesh is not None:
        trajectory.walls = load_walls(mesh, scale)
    write_trajectory(output, trajectory, force=force)
    typer.echo(
        f"wrote {output}: {trajectory.n_particles} particles, {trajectory.n_frames} frames, "
        f"t = {trajectory.time[0]:g} .. {trajectory.time[-1]:g} s"
    )


@app.command()
def export(
    trajectory: Annotated[Path, typer.Argument(help="Trajectory file (.h5).")],
    vtk: Annotated[Path, typer.Option(help="Folder for the ParaView series.")],
    every: Annotated[int, typer.Option(min=1, help="Write every k-th frame.")] = 1,
    force: Force = False,
) -> None:
    """Write a ParaView series (particles.pvd, walls.pvd and a .vtp per frame)."""
    from bgnn_sim.io.hdf5 import TrajectoryFile
    from bgnn_sim.io.vtk import check_vtk_dir, export_vtk

    check_vtk_dir(vtk, force)
    with TrajectoryFile(trajectory) as traj:
        pvd = export_vtk(traj, vtk, every=every, force=force)
    typer.echo(f"wrote {pvd} and {pvd.with_name('walls.pvd')}: open both in ParaView")


class Backend(StrEnum):
    bgnn = "bgnn"
    lamslide = "lamslide"


class Stage(StrEnum):
    autoencoder = "autoencoder"
    dynamics = "dynamics"


class Fill(StrEnum):
    geometric = "geometric"
    liggghts = "liggghts"


class Kind(StrEnum):
    hopper = "hopper"
    drum = "drum"
    mixed = "mixed"


class Preset(StrEnum):
    default = "default"
    tiny = "tiny"


@app.command()
def generate(
    kind: Annotated[Kind, typer.Argument(help="Scenario family; mixed alternates the two.")],
    out: Annotated[Path, typer.Option("--out", help="Dataset folder (resumed if it exists).")],
    runs: Annotated[int, typer.Option(min=3, help="LIGGGHTS runs (>= 3: train/valid/test).")] = 40,
    workers: Annotated[int, typer.Option(min=1, help="LIGGGHTS runs at once.")] = 1,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the scenario draws.")] = 0,
    preset: Annotated[Preset, typer.Option(help="tiny: ~200 particles, seconds a run.")] = (
        Preset.default
    ),
    mpi: Annotated[int, typer.Option(min=1, help="MPI processes per LIGGGHTS run.")] = 1,
    keep_dumps: Annotated[
        bool, typer.Option("--keep-dumps", help="Keep LIGGGHTS's text dumps after conversion.")
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(help="TOML with [material] and [timing] tables (default: the reference)."),
    ] = None,
) -> None:
    """Generate training data with LIGGGHTS: runs, trajectories, splits and statistics."""
    from bgnn_cli.progress import progress_bar
    from bgnn_cli.report import split_sizes
    from bgnn_sim.dem.config import load_dem_config
    from bgnn_sim.dem.generate import generate_dataset
    from bgnn_sim.dem.runner import find_liggghts

    material, timing = load_dem_config(config) if config else (None, None)
    find_liggghts()
    with progress_bar(runs, f"LIGGGHTS {kind.value} runs") as advance:
        manifest = generate_dataset(
            kind.value, runs, out, workers, seed, preset.value,
            on_run_finished=lambda run_dir, error: advance(run_dir.name), mpi_procs=mpi,
            material=material, timing=timing, keep_dumps=keep_dumps,
        )  # fmt: skip
    failed = [r["name"] for r in manifest["runs"] if not r["checks"]["passed"]]
    typer.echo(f"wrote {out}: {len(manifest['runs'])} runs, splits " + split_sizes(manifest))
    if failed:
        typer.echo(f"warning: sanity checks failed for {', '.join(failed)} (see manifest.json)")


Device = Annotated[
    str,
    typer.Option(help="auto (CUDA when available), cpu, cuda or cuda:N.", callback=check_device),
]


@app.command()
def train(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder from bgnn generate.")],
    out: Annotated[Path, typer.Option("--out", help="Run folder: checkpoints, metrics.")],
    config: Annotated[Path | None, typer.Option(help="TOML training configuration.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the checkpoint.")] = (
        False
    ),
    steps: Annotated[int | None, typer.Option(min=1, help="Override the steps.")] = None,
    device: Device = "auto",
    distributed: Annotated[
        bool, typer.Option("--distributed", help="Under torchrun: one process per GPU (DDP).")
    ] = False,
    force: Force = False,
    backend: Annotated[Backend, typer.Option(help="bgnn, or lamslide (LaM-SLidE).")] = (
        Backend.bgnn
    ),
    stage: Annotated[
        Stage, typer.Option(help="LaM-SLidE stage: autoencoder first, then dynamics.")
    ] = Stage.autoencoder,
    autoencoder: Annotated[
        Path | None, typer.Option(help="LaM-SLidE dynamics: the trained autoencoder.pt.")
    ] = None,
    init: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Fine-tune: start from this trained BGNN (a run's .pt or a shipped model) "
            "with the configuration's steps and schedule; --resume continues such a run.",
        ),
    ] = None,
) -> None:
    """Train a BGNN on a LIGGGHTS dataset (resumable; multi-GPU through torchrun)."""
    from bgnn_cli.progress import progress_bar
    from bgnn_sim.app.train import train_session
    from bgnn_sim.errors import ConfigError

    if backend == Backend.lamslide:
        if init is not None:
            raise ConfigError("--init fine-tunes a BGNN; LaM-SLidE trains from scratch")
        _train_lamslide(dataset, out, config, resume, steps, force, stage, autoencoder)
        return

    final = train_session(
        dataset, out, config, resume, steps, device, distributed, force, progress_bar, init
    )
    if final is not None:
        typer.echo(f"wrote {out / 'model.pt'}: {final.step} steps, {final.metrics}")


def _train_lamslide(dataset, out, config, resume, steps, force, stage, autoencoder) -> None:
    from bgnn_cli.progress import progress_bar
    from bgnn_sim.errors import ConfigError, OutputExistsError
    from bgnn_sim.training import lamslide

    checkpoint = out / (lamslide.CHECKPOINT if stage == Stage.autoencoder
                        else lamslide.DYNAMICS_CHECKPOINT)  # fmt: skip
    if checkpoint.exists() and not (resume or force):
        raise OutputExistsError(f"{out} holds a run; pass --resume to continue it or --force")
    if stage == Stage.dynamics and autoencoder is None:
        raise ConfigError("--stage dynamics needs --autoencoder AUTOENCODER.pt (stage 1)")
    settings = lamslide.load_stage_settings(stage.value, config, steps)
    with progress_bar(settings.steps, stage.value) as advance:
        report = lambda step, loss: advance(f"loss {loss:.4g}")  # noqa: E731
        if stage == Stage.dynamics:
            loss = lamslide.train_dynamics(dataset, out, autoencoder, settings, resume, report)
        else:
            figures = lamslide.train_autoencoder(dataset, out, settings, resume, report)
    if stage == Stage.dynamics:
        typer.echo(f"wrote {checkpoint}: last flow-matching loss {loss:.4g}")
        return
    typer.echo(
        f"wrote {checkpoint}: test reconstruction error "
        f"{figures['error_diameters']:.3f} diameters (particles moved "
        f"{figures['moved_diameters']:.3f}), identity swaps {figures['swap_rate']:.2%}"
    )


@app.command()
def rollout(
    checkpoint: Annotated[Path, typer.Argument(help="Trained model (model.pt/checkpoint.pt).")],
    init: Annotated[str, typer.Option(help="Initial state: a trajectory .h5 or LIGGGHTS dumps.")],
    frames: Annotated[int, typer.Option(min=1, help="Frames to simulate.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Trajectory file (.h5).")],
    start: Annotated[int, typer.Option(help="Frame of --init to start from (-1: last).")] = -1,
    mesh: Annotated[Path | None, typer.Option(help="Walls for --init dumps (static).")] = None,
    vtk: Annotated[Path | None, typer.Option(help="Also write a ParaView series here.")] = None,
    device: Device = "auto",
    force: Force = False,
    no_wall_guard: NoWallGuard = False,
    threads: Threads = 0,
    compile: Compile = False,
    precision: Precision = PrecisionName.float32,
    seed: Annotated[
        int, typer.Option(min=0, help="LaM-SLidE: the member of its ensemble (sampling draws).")
    ] = 0,
) -> None:
    """Roll out a trained model from a LIGGGHTS state or a trajectory."""
    from bgnn_cli.progress import progress_bar
    from bgnn_sim.app.rollout import rollout_session
    from bgnn_sim.io.outputs import check_output_file
    from bgnn_sim.io.vtk import check_vtk_dir

    check_output_file(output, force)  # before any work, as the ParaView folder
    if vtk is not None:
        check_vtk_dir(vtk, force)
    corrections = rollout_session(checkpoint, init, frames, output, start, mesh, device, force,
                                  progress_bar, not no_wall_guard, threads, compile,
                                  seed, precision.value)  # fmt: skip
    guarded = "raw model" if corrections is None else f"wall guard: {corrections} corrections"
    typer.echo(f"wrote {output}: {frames} frames ({guarded})")
    if vtk is not None:
        export(output, vtk, every=1, force=force)


@app.command()
def simulate(
    mesh: Annotated[Path, typer.Argument(help="Container mesh: a hopper (open outlet) or a drum.")],
    out: Annotated[
        Path | None, typer.Option(help="Run folder [default: <mesh name>-simulation].")
    ] = None,
    particles: Annotated[int | None, typer.Option(min=1, help="Particles to fill in.")] = None,
    fill_height: Annotated[
        float | None, typer.Option(help="Bed height above the container's bottom (m).")
    ] = None,
    fill: Annotated[
        Fill, typer.Option(help="geometric, or liggghts: the bed settled by LIGGGHTS as well.")
    ] = Fill.geometric,
    init: Annotated[
        str | None,
        typer.Option(help="Start from LIGGGHTS dumps or a trajectory (.h5), at frame --start."),
    ] = None,
    start: Annotated[
        int,
        typer.Option(
            help="Frame of --init to start from: 0 the first, negative from the end (-1 the "
            "last); the model's history frames precede it."
        ),
    ] = -1,
    open_at: Annotated[float, typer.Option(help="Hopper: gate opening time (s).")] = 0.05,
    rotate: Annotated[float, typer.Option(help="Drum: rotation speed (rpm).")] = DEFAULT_RPM,
    axis: Annotated[
        str | None, typer.Option(help="Drum: rotation axis x|y|z [default: inferred].")
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(help="Simulated seconds [default: hopper until empty, drum 1 s]."),
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="Your checkpoint [default: the shipped model].")
    ] = None,
    backend: Annotated[
        Backend | None,
        typer.Option(help="bgnn, or lamslide (LaM-SLidE) [default: the --model file's, or bgnn]."),
    ] = None,
    device: Device = "auto",
    seed: Annotated[int, typer.Option(help="Draw of the fill.")] = 0,
    vtk_every: Annotated[int, typer.Option(min=1, help="ParaView: every k-th frame.")] = 10,
    samples: Annotated[
        int, typer.Option(min=1, help="Ensemble members (LaM-SLidE models sample futures).")
    ] = 1,
    scale: Scale = 1.0,
    force: Force = False,
    no_wall_guard: NoWallGuard = False,
    threads: Threads = 0,
    compile: Compile = False,
    precision: Precision = PrecisionName.float32,
) -> None:
    """Fill a container, simulate the flow with a learned model, write ParaView files + plots."""
    from bgnn_cli.progress import progress_bar
    from bgnn_sim.app.simulate import simulate as run_simulation
    from bgnn_sim.app.simulation_config import SimulationConfig

    config = SimulationConfig(
        mesh=mesh, out=out or Path(f"{mesh.stem}-simulation"), scale=scale,
        particles=particles, fill_height=fill_height, fill=fill.value, init=init,
        start=start, open_at=open_at, rpm=rotate, axis=axis, duration=duration, model=model,
        backend=backend and backend.value, device=device, seed=seed, vtk_every=vtk_every,
        samples=samples, force=force, wall_guard=not no_wall_guard, threads=threads,
        compile=compile, precision=precision.value,
    )  # fmt: skip
    result = run_simulation(config, progress_bar, say=typer.echo)
    summary = result.summary
    corrections = summary["guard_corrections"]
    guarded = "raw model" if corrections is None else f"wall guard: {corrections} corrections"
    typer.echo(
        f"simulated {summary['simulated_s']:.3f} s ({summary['frames']} frames) at "
        f"{summary['frames_per_s']:.1f} frames/s on {summary['device']} ({guarded})"
    )
    _echo_metrics(summary["metrics"])
    typer.echo(f"wrote {result.out}/: open paraview/particles.pvd and paraview/walls.pvd")


Source = Annotated[str, typer.Argument(help="A trajectory (.h5) or LIGGGHTS dumps (glob).")]
ReportDir = Annotated[Path, typer.Option("--out", help="Folder for the plots and metrics.")]
OutletZ = Annotated[
    float | None, typer.Option(help="Hopper outlet plane height (m); default the walls' bottom.")
]
Density = Annotated[
    float | None, typer.Option(help="Particle density (kg/m^3); default the trajectory's.")
]
MixingBins = Annotated[int, typer.Option(min=1, help="Mixing grid bins per axis.")]


@app.command()
def analyze(
    trajectory: Source,
    out: ReportDir,
    outlet_z: OutletZ = None,
    density: Density = None,
    mixing_bins: MixingBins = 9,
    dem_dt: DemDt = 2.5e-5,
    force: Force = False,
) -> None:
    """Measure one trajectory: discharge or drum flow, mixing, energy, leakage; plots."""
    from bgnn_sim.analysis.summary import AnalysisOptions
    from bgnn_sim.app.analyze import analyze_session

    options = AnalysisOptions(outlet_z, density, mixing_bins)
    metrics = analyze_session(trajectory, out, options, dem_dt, force)
    _echo_metrics(metrics)
    typer.echo(f"wrote {out / 'report.md'}")


@app.command()
def compare(
    rollout: Annotated[str, typer.Argument(help="The rollout (.h5) to judge.")],
    reference: Annotated[str, typer.Argument(help="Reference: a trajectory or LIGGGHTS dumps.")],
    out: ReportDir,
    fail_above: Annotated[
        list[str] | None,
        typer.Option(
            help="METRIC=VALUE: exit 3 when the metric exceeds it, or was not measured "
            "(repeatable).",
            callback=check_limits,
        ),
    ] = None,
    distance_frames: Annotated[
        int, typer.Option(min=1, help="Frames (evenly spread) for the cloud distances.")
    ] = 5,
    outlet_z: OutletZ = None,
    density: Density = None,
    mixing_bins: MixingBins = 9,
    dem_dt: DemDt = 2.5e-5,
    force: Force = False,
) -> None:
    """Compare a rollout with LIGGGHTS: curve errors, distances, leakage; plots and report."""
    from bgnn_sim.analysis.summary import AnalysisOptions
    from bgnn_sim.app.analyze import compare_session, exceeded, parse_limits

    limits = parse_limits(fail_above or [])
    options = AnalysisOptions(outlet_z, density, mixing_bins)
    metrics = compare_session(rollout, reference, out, options, dem_dt, distance_frames, force)
    _echo_metrics(metrics)
    typer.echo(f"wrote {out / 'report.md'}")
    broken = exceeded(metrics, limits)
    if broken:
        raise LimitExceededError("limits exceeded: " + "; ".join(broken))


def _echo_metrics(metrics: dict) -> None:
    width = max(map(len, metrics))
    for name, value in metrics.items():
        shown = f"{value:.4g}" if isinstance(value, float) else value
        typer.echo(f"  {name:<{width}}  {shown}")


class HopperShape(StrEnum):
    conical = "conical"
    wedge = "wedge"
    pyramid = "pyramid"


Output = Annotated[Path, typer.Option("-o", "--output", help="Mesh file (.stl, .obj or .ply).")]


@mesh_app.command("hopper")
def mesh_hopper(
    output: Output,
    shape: Annotated[HopperShape, typer.Option(help="Cross-section.")] = HopperShape.conical,
    outlet: Annotated[float, typer.Option(help="Outlet diameter/side/slot width (m).")] = 0.024,
    angle: Annotated[float, typer.Option(help="Wall angle from the vertical (deg).")] = 30.0,
    top: Annotated[float, typer.Option(help="Width of the top opening (m).")] = 0.07,
    bin_height: Annotated[float, typer.Option(help="Height of the vertical bin (m).")] = 0.03,
    depth: Annotated[float, typer.Option(help="Extent along y of a wedge (m).")] = 0.04,
    force: Force = False,
) -> None:
    """A hopper with its outlet centred at the origin in the plane z = 0."""
    from bgnn_sim.geometry.generators import HopperSpec, hopper

    spec = _checked(HopperSpec, shape.value, outlet, angle, top, bin_height, depth)
    _save_mesh(hopper(spec), output, force)


@mesh_app.command("drum")
def mesh_drum(
    output: Output,
    radius: Annotated[float, typer.Option(help="Inner radius (m).")] = 0.05,
    length: Annotated[float, typer.Option(help="Length along the axis y (m).")] = 0.04,
    force: Force = False,
) -> None:
    """A closed cylindrical drum with its axis along y, centred at the origin."""
    from bgnn_sim.geometry.generators import drum

    _save_mesh(_checked(drum, radius, length), output, force)


def _checked(factory, *args):
    """Call a geometry factory, reporting bad dimensions as a usage error."""
    try:
        return factory(*args)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _save_mesh(mesh, output: Path, force: bool) -> None:
    from bgnn_sim.geometry.mesh import save_mesh
    from bgnn_sim.io.outputs import check_output_file

    check_output_file(output, force)
    save_mesh(mesh, output, force)
    typer.echo(f"wrote {output}: {len(mesh.faces)} triangles, extent {mesh.extents.round(4)} m")


if __name__ == "__main__":
    app()
