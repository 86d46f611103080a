"""Random-walk input noise (GNS): the model learns to correct the errors of its own rollouts.

Noise is added to the H input velocities as a random walk (per-step std sigma / sqrt(H), so the
last velocity carries std sigma) and integrated into the positions, the oldest frame unchanged.
A particle whose noisy position would come closer to a wall than half its distance to it gets
its noise re-drawn (then zeroed): noise never pushes a particle through a wall.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bgnn_sim.geometry.proximity import closest_point_on_triangles
from bgnn_sim.geometry.wall import Wall, present_triangles

_REDRAWS = 3


def random_walk_noise(shape: tuple[int, ...], sigma: float, generator, dtype, device) -> Tensor:
    """Position noise [H+1, n, 3] whose velocities are a random walk; row 0 is zero."""
    history, n = shape[0] - 1, shape[1]
    # Drawn on the CPU (where the step's generator lives), then moved: same noise on any device.
    steps = torch.randn((history, n, 3), generator=generator, dtype=dtype).to(device)
    velocity_noise = torch.cumsum(steps * (sigma / history**0.5), dim=0)
    position_noise = torch.cumsum(velocity_noise, dim=0)
    return torch.cat([position_noise.new_zeros(1, n, 3), position_noise])


def noisy_history(
    history: Tensor, sigma: float, walls: list[Wall], time: float, generator=None
) -> Tensor:
    """history [H+1, n, 3] (m) plus random-walk noise that keeps clear of the walls."""
    if sigma <= 0:
        return history
    noise = random_walk_noise(history.shape, sigma, generator, history.dtype, history.device)
    clearance = _wall_clearance(history[-1], walls, time, reach=20 * sigma * history.shape[0])
    for attempt in range(_REDRAWS + 1):
        # How far the noise moves each particle at most over the history.
        moved = noise.norm(dim=2).amax(dim=0)
        unsafe = moved > 0.5 * clearance
        if not unsafe.any():
            break
        if attempt == _REDRAWS:
            noise[:, unsafe] = 0.0
            break
        fresh = random_walk_noise(noise.shape, sigma, generator, noise.dtype, noise.device)
        noise[:, unsafe] = fresh[:, unsafe]
    return history + noise


def _wall_clearance(positions: Tensor, walls: list[Wall], time: float, reach: float) -> Tensor:
    """[n] distance to the nearest present wall, +inf beyond `reach`."""
    clearance = positions.new_full((len(positions),), float("inf"))
    triangles = torch.from_numpy(present_triangles(walls, time)).to(positions)
    contacts = closest_point_on_triangles(positions, triangles, reach)
    return clearance.scatter_reduce(0, contacts.point_index, contacts.distance, reduce="amin")
