"""Parametric container geometries: hoppers (conical, wedge, square pyramid) and a closed drum.

Conventions shared by every generator (the data generation reuses them to sample families):
- metres; hoppers stand on the z axis with the outlet centred at the origin in the plane z = 0,
  open at the outlet and at the top; the drum's axis is y, centred at the origin, closed.
- the wall angle is measured from the vertical, as hopper designers quote it.
- all three hoppers are lofts of horizontal rings (circle or rectangle) stitched with triangles:
  a converging section from the outlet up to the top width, then a vertical bin section.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import trimesh

HOPPER_SHAPES = ("conical", "wedge", "pyramid")


@dataclass(frozen=True)
class HopperSpec:
    """Dimensions of a hopper (metres, degrees).

    Attributes:
        shape: "conical" (circular outlet), "wedge" (plane-symmetric, slot outlet along y) or
            "pyramid" (square outlet).
        outlet: outlet diameter (conical), slot width (wedge) or side (pyramid).
        angle: wall angle from the vertical, degrees (0 < angle < 90).
        top: width of the top opening (diameter or side, along x for the wedge).
        bin_height: height of the vertical section above the converging one.
        depth: extent along y of the wedge (ignored by the other shapes).
        segments: polygon segments of the conical hopper's rings.
    """

    shape: str = "conical"
    outlet: float = 0.024
    angle: float = 30.0
    top: float = 0.07
    bin_height: float = 0.03
    depth: float = 0.04
    segments: int = 48

    def __post_init__(self) -> None:
        if self.shape not in HOPPER_SHAPES:
            raise ValueError(f"hopper shape {self.shape!r} not in {HOPPER_SHAPES}")
        if not 0.0 < self.angle < 90.0:
            raise ValueError(f"wall angle {self.angle} deg must be between 0 and 90 (exclusive)")
        if not 0.0 < self.outlet < self.top:
            raise ValueError(f"outlet {self.outlet} m must be positive and narrower than top")
        if self.bin_height < 0 or self.depth <= 0:
            raise ValueError("bin_height must be >= 0 and depth > 0")

    @property
    def cone_height(self) -> float:
        """Height of the converging section (m)."""
        return (self.top - self.outlet) / 2.0 / math.tan(math.radians(self.angle))

    @property
    def height(self) -> float:
        return self.cone_height + self.bin_height


def hopper(spec: HopperSpec) -> trimesh.Trimesh:
    """Triangle mesh of the hopper wall described by `spec` (outlet at z = 0)."""
    heights = [0.0, spec.cone_height]
    widths = [spec.outlet, spec.top]
    if spec.bin_height > 0:
        heights.append(spec.height)
        widths.append(spec.top)
    rings = [_ring(spec, w, z) for w, z in zip(widths, heights, strict=True)]
    # A wedge's rectangle rings keep their y extent, so the loft's y = +-depth/2 faces are the
    # flat end plates that close the slot.
    return _loft(rings)


def drum(radius: float = 0.05, length: float = 0.04, segments: int = 64) -> trimesh.Trimesh:
    """Closed cylinder with its axis along y, centred at the origin (watertight)."""
    if radius <= 0 or length <= 0:
        raise ValueError("drum radius and length must be positive")
    mesh = trimesh.creation.cylinder(radius=radius, height=length, sections=segments)
    mesh.apply_transform(trimesh.transformations.rotation_matrix(math.pi / 2, [1, 0, 0]))
    return mesh


def _ring(spec: HopperSpec, width: float, z: float) -> np.ndarray:
    """Horizontal cross-section [M, 3] of the hopper of full width `width` at height z."""
    if spec.shape == "conical":
        phi = np.linspace(0.0, 2.0 * math.pi, spec.segments, endpoint=False)
        xy = 0.5 * width * np.stack([np.cos(phi), np.sin(phi)], axis=1)
    else:
        half_y = 0.5 * (width if spec.shape == "pyramid" else spec.depth)
        xy = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], float) * [0.5 * width, half_y]
    return np.column_stack([xy, np.full(len(xy), z)])


def _loft(rings: list[np.ndarray]) -> trimesh.Trimesh:
    """Stitch consecutive closed rings (each [M, 3], same M) into an open tube of triangles."""
    m = len(rings[0])
    faces = []
    for k in range(len(rings) - 1):
        lower = k * m + np.arange(m)
        upper = lower + m
        lower_next = k * m + (np.arange(m) + 1) % m
        upper_next = lower_next + m
        faces.append(np.column_stack([lower, lower_next, upper_next]))
        faces.append(np.column_stack([lower, upper_next, upper]))
    return trimesh.Trimesh(np.concatenate(rings), np.concatenate(faces), process=False)
