"""The granular material and the DEM timing: one place for a user with other grains to edit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bgnn_sim.configfile import Checked, read_toml, setting, subtable, typed
from bgnn_sim.errors import ConfigError
from bgnn_sim.physics import GRAVITY as GRAVITY  # where the decks and benchmarks read them
from bgnn_sim.physics import SETTLED_PACKING as SETTLED_PACKING
from bgnn_sim.physics import sphere_volume as sphere_volume


@dataclass(frozen=True)
class Material(Checked):
    """Monodisperse spheres and their contact parameters (Hertz, tangential history, epsd2).

    Defaults are the project's reference material (glass-like beads of 4 mm diameter).
    """

    radius: float = setting(0.002, above=0.0)  # m
    density: float = setting(2500.0, above=0.0)  # kg/m^3
    # Pa (softened, as usual in DEM, to allow a larger step)
    youngs_modulus: float = setting(5e6, above=0.0)
    poisson_ratio: float = setting(0.4, at_least=0.0, below=0.5)
    restitution: float = setting(0.5, above=0.0, at_most=1.0)  # the damping takes log(e)
    friction: float = setting(0.5, at_least=0.0)
    rolling_friction: float = setting(0.1, at_least=0.0)

    @property
    def diameter(self) -> float:
        return 2.0 * self.radius

    @property
    def particle_volume(self) -> float:
        return sphere_volume(self.radius)

    def settled_count(self, volume: float) -> int:
        """Particles that a settled bed of `volume` (m^3) holds."""
        return int(SETTLED_PACKING * volume / self.particle_volume)


@dataclass(frozen=True)
class Timing(Checked):
    """DEM step and the learned simulator's frame (a whole number of DEM steps)."""

    dem_dt: float = setting(2.5e-5, above=0.0)  # s
    steps_per_frame: int = setting(40, at_least=1)  # a frame of 1 ms

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
    material = typed(Material, subtable(data, "material", str(path)), f"{path} [material]")
    return material, typed(Timing, subtable(data, "timing", str(path)), f"{path} [timing]")
