"""Settling a filled container with LIGGGHTS (`bgnn simulate --fill liggghts`).

The geometric fill's bed is frictionless; this hands it to the real DEM engine with the model's
material (friction, rolling friction, Hertz contacts), lets it settle behind the closed gate and
reads back the rested positions: the bed a LIGGGHTS user would start from, in seconds.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import trimesh

from bgnn_sim.dem.config import Material, Timing
from bgnn_sim.dem.deck import DECK, WALLS_STL, header_section, material_section, walls_section
from bgnn_sim.dem.runner import run_deck
from bgnn_sim.errors import DemError
from bgnn_sim.io.liggghts import read_dumps

SETTLE_TIME = 0.3  # s of DEM time; the geometric bed is already compact
FINAL_DUMP = "post/settled*.liggghts"


def settle_with_liggghts(
    walls: trimesh.Trimesh,
    positions: np.ndarray,
    material: Material,
    timing: Timing,
    gate_z: float | None = None,
    settle_time: float = SETTLE_TIME,
) -> np.ndarray:
    """Positions [N, 3] of the spheres `positions` [N, 3] after LIGGGHTS settled them.

    Args:
        walls: the container as LIGGGHTS sees it (metres).
        positions: starting centres, inside the container.
        material: the spheres (radius, density, contact properties).
        timing: the DEM step.
        gate_z: a hopper's closed outlet plane (a horizontal wall at this height), or None.
        settle_time: DEM seconds to run.

    Raises:
        DemError: liggghts missing or failing, or particles lost.
    """
    with tempfile.TemporaryDirectory(prefix="bgnn-settle-") as work:
        run_dir = Path(work)
        (run_dir / "post").mkdir()
        walls.export(run_dir / WALLS_STL, file_type="stl_ascii")
        (run_dir / DECK).write_text(settle_deck(walls.bounds, positions, material, timing,
                                                gate_z, settle_time))  # fmt: skip
        run_deck(run_dir)
        settled = read_dumps(str(run_dir / FINAL_DUMP), dem_dt=timing.dem_dt)
    if settled.n_particles != len(positions) or not settled.active[-1].all():
        raise DemError(f"LIGGGHTS lost particles while settling the fill ({settled.n_particles} "
                       f"of {len(positions)} left)")  # fmt: skip
    order = np.argsort(settled.ids)  # ids follow the order of `positions`
    return settled.positions[-1][order]


def settle_deck(
    bounds: np.ndarray,
    positions: np.ndarray,
    m: Material,
    timing: Timing,
    gate_z: float | None,
    settle_time: float,
) -> str:
    """The deck: container walls (+ gate plane), one `create_atoms` per sphere, settle, dump."""
    margin = 2 * m.diameter
    low, high = bounds[0] - margin, bounds[1] + margin
    domain = (low[0], high[0], low[1], high[1], low[2], high[2])
    atoms = "\n".join(f"create_atoms    1 single {x:.9g} {y:.9g} {z:.9g} units box"
                      for x, y, z in positions)  # fmt: skip
    gate = (
        "fix             gate all wall/gran model hertz tangential history "
        f"rolling_friction epsd2 primitive type 1 zplane {gate_z:.9g}"
        if gate_z is not None
        else ""
    )
    return "\n".join(
        [
            f"# Settle {len(positions)} spheres placed by bgnn simulate's geometric fill.",
            header_section(domain, n_types=1, timing=timing),
            material_section(m, n_types=1),
            walls_section(),
            gate,
            atoms,
            f"set             group all diameter {m.diameter:g} density {m.density:g}",
            f"run             {timing.steps(settle_time)}",
            f"dump            final all custom 1 {FINAL_DUMP} id type x y z vx vy vz radius",
            'dump_modify     final sort id format "%d %d %.10g %.10g %.10g %.7g %.7g %.7g %g"',
            "run             0",
            "",
        ]
    )
