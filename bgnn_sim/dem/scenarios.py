"""Scenario families: typed ranges from which a seed draws one LIGGGHTS run.

A *scenario* is one run's full description (geometry, particle count, timing); a *family* holds
the ranges the data generation samples from. Everything is in SI units; particle counts and
outlet widths are sized for the material's radius.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import trimesh

from bgnn_sim.defaults import SINK_DEPTH
from bgnn_sim.dem.config import SETTLED_PACKING as SETTLED_PACKING  # the benchmarks' import
from bgnn_sim.dem.config import Material, Timing
from bgnn_sim.geometry.generators import HOPPER_SHAPES, HopperSpec, drum, hopper
from bgnn_sim.geometry.sink import Sink
from bgnn_sim.geometry.wall import Rotation, Wall, make_gate

# Solid fraction that insert/pack reaches reliably when it drops spheres at random without
# overlap (random sequential addition jams near 0.38): the insertion space is sized for it.
INSERTION_PACKING = 0.25


@dataclass(frozen=True)
class HopperScenario:
    """A hopper filled behind a closed gate, settled, then discharged through its outlet.

    Attributes:
        spec: geometry (outlet at the origin, plane z = 0; the gate closes that plane).
        n_particles: particles inserted into the bin.
        settle_time: s from the insertion to the gate opening.
        settled_record: s of the settled bed recorded before the opening.
        discharge_time: s recorded after the opening.
        sink_depth: m below the outlet where particles leave the simulation.
        seed: the draw (also seeds LIGGGHTS's insertion).
    """

    spec: HopperSpec
    n_particles: int
    settle_time: float = 0.5
    settled_record: float = 0.05
    discharge_time: float = 1.5
    sink_depth: float = SINK_DEPTH
    seed: int = 0
    kind: str = field(default="hopper", init=False)

    @property
    def open_at(self) -> float:
        return self.settle_time

    def mesh(self) -> trimesh.Trimesh:
        """The container as LIGGGHTS sees it (outlet at z = 0)."""
        return hopper(self.spec)

    def start_time(self, timing: Timing) -> float:
        """Time (s) at which the deck opens the gate (its runs count whole steps)."""
        settle = timing.steps(self.settle_time - self.settled_record)
        return (settle + timing.steps(self.settled_record)) * timing.dem_dt

    def walls(self, timing: Timing) -> list[Wall]:
        """The hopper and the gate that closes its outlet until `start_time`."""
        mesh = self.mesh()
        gate = make_gate((0.0, 0.0, 0.0), self.spec.top, open_at=self.start_time(timing))
        return [Wall("hopper", np.asarray(mesh.vertices), _faces(mesh)), gate]

    def sinks(self) -> list[Sink]:
        """The deck deletes particles `sink_depth` below the outlet."""
        return [Sink(-self.sink_depth)]

    def may_leave(self, last_z: np.ndarray) -> np.ndarray:
        """[N] bool: a particle last seen at height `last_z` [N] may have left by the outlet."""
        return last_z < 0.0


@dataclass(frozen=True)
class DrumScenario:
    """A closed drum (axis y) filled, settled, labelled in two halves (x < 0 is type 2), rotated.

    Attributes:
        radius, length: inner size of the drum (m).
        n_particles: particles inserted.
        rpm: rotation speed about +y once the bed has settled.
        revolutions: turns recorded.
        settle_time: s from the insertion to the start of the rotation.
        seed: the draw.
    """

    radius: float
    length: float
    n_particles: int
    rpm: float
    revolutions: float = 1.0
    settle_time: float = 0.5
    seed: int = 0
    kind: str = field(default="drum", init=False)

    @property
    def rotation_time(self) -> float:
        return self.revolutions * 60.0 / self.rpm

    def mesh(self) -> trimesh.Trimesh:
        """The closed drum at rest."""
        return drum(self.radius, self.length)

    def start_time(self, timing: Timing) -> float:
        """Time (s) at which the deck starts turning the drum."""
        return timing.steps(self.settle_time) * timing.dem_dt

    def walls(self, timing: Timing) -> list[Wall]:
        """The drum, turning about +y from `start_time`."""
        mesh = self.mesh()
        rotation = Rotation(axis=(0.0, 1.0, 0.0), rpm=self.rpm, start=self.start_time(timing))
        return [Wall("drum", np.asarray(mesh.vertices), _faces(mesh), rotation)]

    def sinks(self) -> list[Sink]:
        return []  # closed: no particle may leave

    def may_leave(self, last_z: np.ndarray) -> np.ndarray:
        return np.zeros(last_z.shape, dtype=bool)


def _faces(mesh: trimesh.Trimesh) -> np.ndarray:
    return np.asarray(mesh.faces, dtype=np.int64)


@dataclass(frozen=True)
class HopperFamily:
    """Ranges of hopper discharge scenarios (uniform draws; angles from the vertical)."""

    shapes: tuple[str, ...] = HOPPER_SHAPES
    angle: tuple[float, float] = (15.0, 40.0)  # degrees
    outlet_diameters: tuple[float, float] = (4.0, 12.0)  # outlet width in particle diameters
    particles: tuple[int, int] = (500, 3000)
    top: tuple[float, float] = (0.06, 0.09)  # m, width of the top opening
    depth_diameters: float = 10.0  # wedge extent along y in particle diameters
    settle_time: float = 0.5
    settled_record: float = 0.05
    discharge_time: float = 1.5

    def sample(self, seed: int, material: Material) -> HopperScenario:
        rng = np.random.default_rng(seed)
        shape = str(rng.choice(self.shapes))
        outlet = rng.uniform(*self.outlet_diameters) * material.diameter
        top = max(rng.uniform(*self.top), outlet + 4 * material.diameter)
        n = int(rng.integers(self.particles[0], self.particles[1] + 1))
        spec = HopperSpec(
            shape=shape,
            outlet=round(outlet, 5),
            angle=round(rng.uniform(*self.angle), 2),
            top=round(top, 4),
            depth=self.depth_diameters * material.diameter,
        )
        spec = with_bin_for(spec, n, material)
        return HopperScenario(
            spec, n, self.settle_time, self.settled_record, self.discharge_time, seed=seed
        )


@dataclass(frozen=True)
class DrumFamily:
    """Ranges of rotating-drum scenarios."""

    radius: tuple[float, float] = (0.035, 0.06)  # m
    length: tuple[float, float] = (0.02, 0.05)  # m
    fill: tuple[float, float] = (0.20, 0.45)  # fraction of the drum's volume taken by the bed
    rpm: tuple[float, float] = (10.0, 40.0)
    revolutions: float = 1.0
    settle_time: float = 0.5

    def sample(self, seed: int, material: Material) -> DrumScenario:
        rng = np.random.default_rng(seed)
        radius = round(rng.uniform(*self.radius), 4)
        length = round(rng.uniform(*self.length), 4)
        fill = rng.uniform(*self.fill)
        bed_volume = fill * math.pi * radius**2 * length
        n = material.settled_count(bed_volume)
        rpm = round(rng.uniform(*self.rpm), 2)
        return DrumScenario(radius, length, n, rpm, self.revolutions, self.settle_time, seed=seed)


def with_bin_for(spec: HopperSpec, n_particles: int, material: Material) -> HopperSpec:
    """The spec with a vertical bin tall enough to insert `n_particles` at INSERTION_PACKING."""
    inner = spec.top - material.diameter  # sphere centres stay a radius off the walls
    if spec.shape == "conical":
        area = math.pi * inner**2 / 4
    elif spec.shape == "pyramid":
        area = inner**2
    else:
        area = inner * (spec.depth - material.diameter)
    height = n_particles * material.particle_volume / (INSERTION_PACKING * area)
    return HopperSpec(**{**spec.__dict__, "bin_height": round(height + material.diameter, 4)})


# Named family pairs. "tiny" (~200 particles, ~150 frames, seconds of LIGGGHTS) is what the
# tests generate; "default" is the training data of the shipped models.
PRESETS: dict[str, tuple[HopperFamily, DrumFamily]] = {
    "default": (HopperFamily(), DrumFamily()),
    "tiny": (
        HopperFamily(
            outlet_diameters=(5.0, 6.0),  # narrower outlets jam with so few particles
            particles=(150, 250),
            top=(0.04, 0.045),
            settle_time=0.4,
            settled_record=0.05,
            discharge_time=0.1,
        ),
        DrumFamily(
            radius=(0.022, 0.026),
            length=(0.016, 0.02),
            fill=(0.3, 0.4),
            rpm=(30.0, 40.0),
            revolutions=0.08,
            settle_time=0.3,
        ),
    ),
}
