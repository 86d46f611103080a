"""Physical constants every stage shares (SI units)."""

from __future__ import annotations

import math

# m/s^2, along -z: the decks' `fix gravity` and the learned simulators' known term.
GRAVITY = 9.81
# Solid fraction of a settled bed of monodisperse spheres (random close packing is ~0.64): what
# turns a bed's volume (a drum's fill level, a hopper's fill height) into a particle count.
SETTLED_PACKING = 0.6


def sphere_volume(radius):
    """Volume (m^3) of spheres of `radius` (m): a float, or an array of them."""
    return 4.0 / 3.0 * math.pi * radius**3
