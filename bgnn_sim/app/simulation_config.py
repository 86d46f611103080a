"""The settings of one `bgnn simulate` run: typed, with the defaults in one place."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from bgnn_sim.configfile import Checked, setting
from bgnn_sim.defaults import DEFAULT_RPM as DEFAULT_RPM  # the CLI's default too
from bgnn_sim.defaults import PRECISIONS
from bgnn_sim.errors import ConfigError
from bgnn_sim.pretrained import BACKENDS

FILLS = ("geometric", "liggghts")
AXES = ("x", "y", "z")  # geometry.container.AXES (not imported: trimesh is slow to import)


@dataclass(frozen=True)
class SimulationConfig(Checked):
    """One simulation; SI units. None means "inferred from the geometry and the model".

    Attributes:
        mesh: the container (STL/OBJ/PLY, metres after `scale`).
        out: run folder for every output.
        scale: factor applied to the mesh coordinates.
        particles: particles to fill in (default: from `fill_height`).
        fill_height: height of the bed above the container's lowest point (m); default half a
            hopper's height, a quarter of a drum's volume.
        fill: "geometric" (frictionless settling, no DEM needed) or "liggghts" (the geometric
            bed settled further by LIGGGHTS with the model's material).
        init: start from a LIGGGHTS state instead (dumps or a trajectory .h5).
        start: the frame of `init` to start from: 0 the first, negative counts from the end
            (-1, the default, is the last); the model's history frames come before it.
        open_at: s after the start at which a hopper's gate opens.
        rpm: a drum's rotation speed.
        axis: a drum's axis ("x", "y", "z"; default inferred).
        duration: simulated seconds (default: a hopper until empty, at most open_at + 1.5 s;
            a drum 1 s).
        model: checkpoint (default the shipped model of `backend` for the container kind).
        backend: "bgnn" or "lamslide"; None: the model file's, else BGNN.
        device: "auto", "cpu" or "cuda".
        seed: draw of the fill.
        vtk_every: write every k-th frame to the ParaView series.
        samples: members of an ensemble (a LaM-SLidE model samples different futures).
        force: replace a previous run folder.
        wall_guard: keep particles on their side of the walls (bgnn_sim/engine/guard.py, a
            safety net); False runs the raw model (--no-wall-guard).
        threads: torch CPU threads (0: all cores).
        compile: a BGNN's network or LaM-SLidE's latent dynamics through torch.compile
            (faster frames after a compilation).
        precision: a BGNN's processor, "float32" or "bfloat16" (BGNNSimulator.use_precision).
    """

    mesh: Path
    out: Path
    scale: float = setting(1.0, above=0.0)
    particles: int | None = setting(None, at_least=1)
    fill_height: float | None = setting(None, above=0.0)
    fill: str = setting("geometric", one_of=FILLS)
    init: str | None = None
    start: int = -1
    open_at: float = setting(0.05, at_least=0.0)
    rpm: float = setting(DEFAULT_RPM, above=0.0)
    axis: str | None = setting(None, one_of=AXES)
    duration: float | None = setting(None, above=0.0)
    model: Path | None = None
    backend: str | None = setting(None, one_of=BACKENDS)
    device: str = "auto"
    seed: int = setting(0, at_least=0)
    vtk_every: int = setting(10, at_least=1)
    samples: int = setting(1, at_least=1)
    force: bool = False
    wall_guard: bool = True
    threads: int = setting(0, at_least=0)
    compile: bool = False
    precision: str = setting("float32", one_of=PRECISIONS)

    def __post_init__(self) -> None:
        super().__post_init__()  # types and ranges
        if self.particles is not None and self.fill_height is not None:
            raise ConfigError("give --particles or --fill-height, not both")
        if self.init is None and self.start != -1:
            raise ConfigError("--start picks a frame of --init; give --init SRC")
        if self.init is not None and (self.particles or self.fill_height):
            raise ConfigError("--init brings its own particles: drop --particles/--fill-height")

    def as_table(self) -> dict:
        """Plain values (paths as strings) for the resolved config file."""
        return {k: str(v) if isinstance(v, Path) else v
                for k, v in dataclasses.asdict(self).items()}  # fmt: skip
