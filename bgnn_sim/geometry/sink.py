"""Sinks: regions of a scene where particles leave the simulation."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sink:
    """Particles whose centre falls below `z` (m) leave the simulation (a hopper's outlet)."""

    z: float

    def contains(self, positions):
        """[N] bool for positions [N, 3] (a tensor or an array)."""
        return positions[:, 2] < self.z
