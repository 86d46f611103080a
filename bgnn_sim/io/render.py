"""A picture of one frame, rendered off-screen with pyvista: particles as spheres coloured by
speed (or by type in a drum), walls as a translucent surface."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyvista as pv

from bgnn_sim.io.hdf5 import TrajectoryFile
from bgnn_sim.io.vtk import particles_polydata, walls_polydata


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
    cloud.point_data["speed (m/s)"] = np.linalg.norm(cloud.point_data["velocity"], axis=1)
    plotter = pv.Plotter(off_screen=True, window_size=(900, 900))
    plotter.set_background("white")
    walls = walls_polydata(trajectory.walls, frame.time)
    if walls.n_points:
        plotter.add_mesh(walls, color="lightsteelblue", opacity=0.25, show_edges=False)
    spheres = cloud.glyph(geom=pv.Sphere(radius=1.0, theta_resolution=10, phi_resolution=10),
                          scale="radius", orient=False)  # fmt: skip
    scalars = "type" if by_type else "speed (m/s)"
    plotter.add_mesh(spheres, scalars=scalars, cmap="coolwarm" if by_type else "viridis",
                     show_scalar_bar=not by_type)  # fmt: skip
    plotter.add_text(f"t = {frame.time:.3f} s", font_size=14, color="black")
    plotter.view_xz()
    plotter.camera.elevation = 15
    plotter.screenshot(str(path))
    plotter.close()
    return Path(path)
