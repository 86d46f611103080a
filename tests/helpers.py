"""Paths and small builders shared by the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bgnn_sim.geometry.generators import drum
from bgnn_sim.geometry.mesh import load_walls
from bgnn_sim.geometry.wall import Rotation, Wall, make_gate
from bgnn_sim.io.liggghts import read_dumps
from bgnn_sim.models.bgnn import BGNNConfig
from bgnn_sim.training.config import TrainConfig
from bgnn_sim.trajectory import Trajectory

REPO = Path(__file__).resolve().parents[1]
MESHES = REPO / "meshes"
# A small real LIGGGHTS run (200 beads discharging a conical hopper), deck and regenerating
# script included.
LIGGGHTS_HOPPER = Path(__file__).parent / "fixtures" / "liggghts_hopper"

# A model small enough to train in seconds on a tiny dataset (it learns little: tests of the
# machinery, not of accuracy).
TINY = TrainConfig(
    model=BGNNConfig(latent=16, message_passing=2, mlp_layers=1),
    steps=6,
    windows_per_step=1,
    lr=3e-3,
    lr_final=3e-4,
    noise_std=3e-7,
    pushforward=1,
    validate_every=3,
    validation_windows=3,
    validation_rollout=3,
    checkpoint_every=3,
    log_every=1,
    graph_backend="kdtree",
)


def liggghts_hopper_run() -> Trajectory:
    """The committed LIGGGHTS hopper run with its walls: the mesh and the plug (opened at
    step 12000 = 0.3 s, see in.hopper); its sink is 20 mm below the outlet."""
    truth = read_dumps(str(LIGGGHTS_HOPPER / "post" / "dump*.liggghts.gz"), dem_dt=2.5e-5)
    truth.walls = [*load_walls(LIGGGHTS_HOPPER / "hopper.stl"), make_gate((0, 0, 0), 0.03, 0.3)]
    return truth


def make_trajectory(n_frames=6, n_particles=20, seed=0) -> Trajectory:
    rng = np.random.default_rng(seed)
    active = np.ones((n_frames, n_particles), bool)
    active[4:, :3] = False  # three particles leave through a sink
    positions = np.where(active[..., None], rng.normal(size=(n_frames, n_particles, 3)), 0.0)
    mesh = drum()
    walls = [
        Wall(
            "drum", np.asarray(mesh.vertices), np.asarray(mesh.faces), Rotation((0, 1, 0), rpm=20)
        ),
        make_gate((0, 0, 0), 0.02, open_at=0.003),
    ]
    return Trajectory(
        time=np.arange(n_frames) * 1e-3,
        positions=positions,
        active=active,
        ids=np.arange(n_particles, dtype=np.int64) * 3 + 1,
        types=rng.integers(1, 3, n_particles).astype(np.int32),
        radius=np.full(n_particles, 0.002),
        velocities=rng.normal(size=(n_frames, n_particles, 3)).astype(np.float32),
        walls=walls,
        attrs={"source": "test", "dem_dt": 2.5e-5},
    )
