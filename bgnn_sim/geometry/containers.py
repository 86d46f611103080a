"""The container types: a `Hopper` (open at the top, discharging through a bottom outlet behind a
gate into a sink) and a `Drum` (closed, turning about its axis), behind one protocol,
`Container`, which says what a simulation of each needs: its walls in motion and its sinks, the
default fill and duration, the particles' labels, its scenario attributes, where it lies outside
a model's training data. `geometry.container.inspect_container` recognises them in a mesh.

`kind` is the name a container goes by at the file boundary (model cards, dataset manifests,
trajectory attributes); the code asks the container, never compares kinds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
import trimesh

from bgnn_sim.defaults import (
    DEFAULT_DRUM_FILL,
    DEFAULT_DRUM_SECONDS,
    DEFAULT_HOPPER_FILL,
    DEFAULT_HOPPER_SECONDS,
    SINK_DEPTH,
)
from bgnn_sim.geometry.fill import volume_below
from bgnn_sim.geometry.sink import Sink
from bgnn_sim.geometry.wall import Rotation, Wall, make_gate, walls_bounds

AXES = {"x": 0, "y": 1, "z": 2}


class Settings(Protocol):
    """What a run sets for its container (`SimulationConfig` has these): the time (s) a hopper's
    gate opens, a drum's speed (rpm)."""

    open_at: float
    rpm: float


@dataclass(frozen=True)
class Opening:
    """A horizontal open loop of a container's wall.

    Attributes:
        center: [3] centroid of the loop (m).
        width: smallest horizontal extent (m): a circle's diameter, a square's side, a slot's
            width.
        length: largest horizontal extent (m).
    """

    center: np.ndarray
    width: float
    length: float

    @property
    def z(self) -> float:
        return float(self.center[2])

    @property
    def size(self) -> str:
        """ "24.0 mm wide", or "20.0 x 40.0 mm" for a slot or a rectangle."""
        if self.length > 1.05 * self.width:
            return f"{self.width * 1e3:.1f} x {self.length * 1e3:.1f} mm"
        return f"{self.width * 1e3:.1f} mm wide"


class Container(Protocol):
    """What every container type answers (see Hopper and Drum)."""

    kind: ClassVar[str]
    walls: list[Wall]
    # Whether a run ends once the container is empty (a hopper's does).
    empties: ClassVar[bool]
    # Whether its particles are labelled to watch them mix (a drum's halves are).
    mixes: ClassVar[bool]

    @property
    def bounds(self) -> np.ndarray: ...
    @property
    def outlet_z(self) -> float | None: ...
    def describe(self) -> str: ...
    def plan(self, settings: Settings) -> str: ...
    def walls_in_motion(self, settings: Settings) -> list[Wall]: ...
    def sinks(self) -> list[Sink]: ...
    def scenario_attrs(self, settings: Settings) -> dict: ...
    def default_seconds(self, settings: Settings) -> float: ...
    def default_fill_height(self, solid: trimesh.Trimesh) -> float: ...
    def labels(self, positions: np.ndarray) -> np.ndarray: ...
    def outside_training(self, trained: list[dict], diameter: float, settings: Settings
                         ) -> list[tuple[str, float, list[float], str]]: ...  # fmt: skip
    def training_notes(self) -> list[str]: ...


@dataclass(frozen=True)
class Hopper:
    """A hopper: open at the top and at a bottom outlet, gravity along -z. A run fills it behind
    a gate over the outlet, removes the gate at `open_at`, and particles leave through a sink
    SINK_DEPTH below the outlet.

    Attributes:
        walls: the walls as loaded (static).
        outlet, top: the bottom and top openings.
    """

    walls: list[Wall]
    outlet: Opening
    top: Opening
    kind: ClassVar[str] = "hopper"
    empties: ClassVar[bool] = True
    mixes: ClassVar[bool] = False

    @property
    def bounds(self) -> np.ndarray:
        """[2, 3] min and max corners of the walls."""
        return walls_bounds(self.walls)

    @property
    def center(self) -> np.ndarray:
        """[3] the outlet's centre."""
        return self.outlet.center

    @property
    def outlet_z(self) -> float:
        """Height (m) of the outlet plane, where the discharge is counted."""
        return self.outlet.z

    @property
    def sink_z(self) -> float:
        return self.outlet.z - SINK_DEPTH

    def describe(self) -> str:
        """One line saying what was inferred, in millimetres."""
        return (
            f"hopper: outlet {self.outlet.size} at z = {self.outlet.z * 1e3:.1f} mm, centre "
            f"{_mm(self.outlet.center)}; top opening {self.top.size} at z = "
            f"{self.top.z * 1e3:.1f} mm"
        )

    def plan(self, settings: Settings) -> str:
        return (f"the gate under the outlet opens at {settings.open_at:g} s (--open-at); "
                f"particles leave {SINK_DEPTH * 100:g} cm below the outlet")  # fmt: skip

    def walls_in_motion(self, settings: Settings) -> list[Wall]:
        """The walls and the gate that closes the outlet until `open_at`."""
        gate = make_gate(tuple(self.outlet.center), self.top.length, settings.open_at)
        return [*self.walls, gate]

    def sinks(self) -> list[Sink]:
        return [Sink(self.sink_z)]

    def scenario_attrs(self, settings: Settings) -> dict:
        return {"kind": self.kind, "open_at": settings.open_at,
                "outlet_width": self.outlet.width, "outlet_z": self.outlet.z,
                "sink_z": self.sink_z}  # fmt: skip

    def default_seconds(self, settings: Settings) -> float:
        return settings.open_at + DEFAULT_HOPPER_SECONDS

    def default_fill_height(self, solid: trimesh.Trimesh) -> float:
        bottom, top = self.bounds[:, 2]
        return bottom + DEFAULT_HOPPER_FILL * (top - bottom)

    def labels(self, positions: np.ndarray) -> np.ndarray:
        """[N] int64 types: all 1."""
        return np.ones(len(positions), dtype=np.int64)

    def outside_training(self, trained, diameter, settings):
        """(what, value, trained values, unit) to check against the training runs' ranges."""
        outlets = [s["spec"]["outlet"] / diameter for s in trained]
        return [("outlet width", self.outlet.width / diameter, outlets, " diameters")]

    def training_notes(self) -> list[str]:
        return []


@dataclass(frozen=True)
class Drum:
    """A closed drum turning about its axis at `rpm` from the start, its particles labelled in
    two halves to watch them mix.

    Attributes:
        walls: the walls as loaded (static).
        axis: the rotation axis ("x", "y" or "z").
        center: [3] the drum's centre on its axis.
        radius, length: inner radius and length along the axis (m).
    """

    walls: list[Wall]
    axis: str
    center: np.ndarray
    radius: float
    length: float
    kind: ClassVar[str] = "drum"
    empties: ClassVar[bool] = False
    mixes: ClassVar[bool] = True

    @property
    def bounds(self) -> np.ndarray:
        """[2, 3] min and max corners of the walls."""
        return walls_bounds(self.walls)

    @property
    def outlet_z(self) -> None:
        return None

    def describe(self) -> str:
        """One line saying what was inferred, in millimetres."""
        return (
            f"closed drum: axis {self.axis}, radius {self.radius * 1e3:.1f} mm, length "
            f"{self.length * 1e3:.1f} mm, centre {_mm(self.center)}"
        )

    def plan(self, settings: Settings) -> str:
        return f"the drum turns at {settings.rpm:g} rpm about {self.axis} (--rotate, --axis)"

    def walls_in_motion(self, settings: Settings) -> list[Wall]:
        """The walls turning about the axis at `rpm`."""
        rotation = Rotation(axis=tuple(np.eye(3)[AXES[self.axis]]), origin=tuple(self.center),
                            rpm=settings.rpm)  # fmt: skip
        return [Wall(w.name, w.vertices, w.faces, motion=rotation) for w in self.walls]

    def sinks(self) -> list[Sink]:
        return []

    def scenario_attrs(self, settings: Settings) -> dict:
        return {"kind": self.kind, "rpm": settings.rpm, "axis": self.axis,
                "radius": self.radius, "length": self.length}  # fmt: skip

    def default_seconds(self, settings: Settings) -> float:
        return DEFAULT_DRUM_SECONDS

    def default_fill_height(self, solid: trimesh.Trimesh) -> float:
        """The height that holds DEFAULT_DRUM_FILL of the drum's volume."""
        bottom, top = self.bounds[:, 2]
        heights = np.linspace(bottom, top, 201)
        fractions = np.array([volume_below(solid, h) for h in heights]) / solid.volume
        return float(np.interp(DEFAULT_DRUM_FILL, fractions, heights))

    def labels(self, positions: np.ndarray) -> np.ndarray:
        """[N] int64 types: 2 on the negative side of the horizontal axis across the rotation
        axis (x for a y-axis drum, as in the training runs), else 1."""
        types = np.ones(len(positions), dtype=np.int64)
        across = 0 if self.axis != "x" else 1
        types[positions[:, across] < self.center[across]] = 2
        return types

    def outside_training(self, trained, diameter, settings):
        """(what, value, trained values, unit) to check against the training runs' ranges."""
        return [("drum radius", self.radius / diameter,
                 [s["radius"] / diameter for s in trained], " diameters"),
                ("rotation speed", settings.rpm, [s["rpm"] for s in trained], " rpm")]  # fmt: skip

    def training_notes(self) -> list[str]:
        if self.axis == "y":
            return []
        return [f"the model was trained on drums turning about y, this one about {self.axis}"]


def _mm(point: np.ndarray) -> str:
    return "(" + ", ".join(f"{v * 1e3:.1f}" for v in point) + ") mm"
