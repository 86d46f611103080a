"""The granular material and the DEM timing: one place for a user with other grains to edit."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from bgnn_sim.configfile import read_toml, typed
from bgnn_sim.errors import ConfigError

# m/s^2, along -z: the decks' `fix gravity` and the learned simulators' known term.
GRAVITY = 9.81


@dataclass(frozen=True)
class Material:
    """Monodisperse spheres and their contact parameters (Hertz, tangential history, epsd2).

    Defaults are the project's reference material (glass-like beads of 4 mm diameter).
    """

    radius: float = 0.002  # m
    density: float = 2500.0  # kg/m^3
    youngs_modulus: float = 5e6  # Pa (softened, as usual in DEM, to allow a larger step)
    poisson_ratio: float = 0.4
    restitution: float = 0.5
    friction: float = 0.5
    rolling_friction: float = 0.1

    @property
    def diameter(self) -> float:
        return 2.0 * self.radius

    @property
    def particle_volume(self) -> float:
        return 4.0 / 3.0 * math.pi * self.radius**3


@dataclass(frozen=True)
class Timing:
    """DEM step and the learned simulator's frame (a whole number of DEM steps)."""

    dem_dt: float = 2.5e-5  # s
    steps_per_frame: int = 40  # a frame of 1 ms

    @property
    def frame_dt(self) -> float:
        return self.dem_dt * self.steps_per_frame

    def steps(self, seconds: float) -> int:
        """DEM steps covering `seconds`, rounded to whole frames."""
        return round(seconds / self.frame_dt) * self.steps_per_frame


def load_dem_config(path: str | Path) -> tuple[Material, Timing]:
    """Material and timing from a TOML file with optional [material] and [timing] tables;
    missing keys keep their defaults."""
    data = read_toml(path)
    unknown = set(data) - {"material", "timing"}
    if unknown:
        raise ConfigError(
            f"{path}: unknown tables {sorted(unknown)}; expected [material], [timing]"
        )
    material = typed(Material, data.get("material", {}), f"{path} [material]")
    return material, typed(Timing, data.get("timing", {}), f"{path} [timing]")
