"""A picture of one frame, rendered off-screen with pyvista: particles as spheres coloured by
speed (or by type in a drum), walls as a translucent surface.

VTK's log stays at errors while rendering: on a machine without a display VTK first tries an X
window, warns "bad X server connection" (in colour, in the middle of the command's output),
then renders off-screen (EGL or OSMesa) all the same.
"""

from __future__ import annotations

import ctypes.util
import os
from pathlib import Path

import numpy as np
import pyvista as pv

from bgnn_sim.io.hdf5 import TrajectoryFile
from bgnn_sim.io.vtk import particles_polydata, set_point_array, walls_polydata


def offscreen_unavailable() -> str | None:
    """Why this machine cannot render a picture, or None when it can. Without a display VTK
    renders through EGL (the library and a vendor of it, Mesa's or NVIDIA's) or OSMesa, and
    with neither it crashes the process (a segmentation fault), so look before rendering."""
    if os.environ.get("DISPLAY") or ctypes.util.find_library("OSMesa"):
        return None
    if ctypes.util.find_library("EGL") and any(
        ctypes.util.find_library(vendor) for vendor in ("EGL_mesa", "EGL_nvidia")
    ):
        return None
    return "no off-screen OpenGL here (EGL or OSMesa): apt-get install libegl1 libegl-mesa0"


def render_frame(
    trajectory: TrajectoryFile, index: int, path: str | Path, by_type: bool = False
) -> Path:
    """Write a PNG of frame `index`, seen from the side (-y) with the walls see-through.

    Args:
        trajectory: an open trajectory file (with velocities, as rollouts are written).
        index: the frame.
        path: the PNG to write.
        by_type: colour particles by type (drum mixing) instead of by speed.
    """
    frame = trajectory.frame(index)
    velocities = (
        frame.velocities if frame.velocities is not None else np.zeros_like(frame.positions)
    )
    cloud = particles_polydata(trajectory, frame, velocities)
    speed = np.linalg.norm(np.asarray(velocities, dtype=float)[frame.active], axis=1)
    set_point_array(cloud, "speed (m/s)", speed)
    with pv.vtk_verbosity("error"):
        _draw(cloud, walls_polydata(trajectory.walls, frame.time), frame.time, by_type, path)
    return Path(path)


def _draw(cloud: pv.PolyData, walls: pv.PolyData, time: float, by_type: bool, path) -> None:
    """Render particles `cloud` (none when all have left) and `walls` into the PNG `path`."""
    plotter = pv.Plotter(off_screen=True, window_size=(900, 900))
    plotter.set_background("white")
    if walls.n_points:
        plotter.add_mesh(walls, color="lightsteelblue", opacity=0.25, show_edges=False)
    if cloud.n_points:
        spheres = cloud.glyph(geom=pv.Sphere(radius=1.0, theta_resolution=10, phi_resolution=10),
                              scale="radius", orient=False)  # fmt: skip
        scalars = "type" if by_type else "speed (m/s)"
        plotter.add_mesh(spheres, scalars=scalars, cmap="coolwarm" if by_type else "viridis",
                         show_scalar_bar=not by_type)  # fmt: skip
    plotter.add_text(f"t = {time:.3f} s", font_size=14, color="black")
    plotter.view_xz()
    plotter.camera.elevation = 15
    plotter.screenshot(str(path))
    plotter.close()
