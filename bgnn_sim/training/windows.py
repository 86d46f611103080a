"""Training samples: windows of consecutive frames read lazily from a dataset's runs.

A window of H+2 frames is the position history x_{t-H} .. x_t of the particles present in the
whole window plus the next position x_{t+1}, the target of one step; longer windows serve
pushforward training (the model first rolls out a few frames of its own). A stride s takes every
s-th frame: a model that steps s dataset frames at a time (LaM-SLidE).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bgnn_sim.dem.dataset import read_manifest
from bgnn_sim.engine.state import removal_frames
from bgnn_sim.geometry.wall import Wall
from bgnn_sim.io.hdf5 import TrajectoryFile


@dataclass
class Window:
    """One training sample.

    Attributes:
        positions: [L, n, 3] float64 positions (m) of the n particles present in every frame.
        types: [n] int64, LIGGGHTS types (from 1).
        time: [L] float64 time of each frame (s).
        walls: the run's walls (posed by the graph code at each time).
        run: name of the run.
    """

    positions: Tensor
    types: Tensor
    time: Tensor
    walls: list[Wall]
    run: str


class WindowDataset(torch.utils.data.Dataset):
    """All windows of the runs of one split; frames are read from disk per sample.

    Args:
        dataset_dir: folder written by `bgnn generate`.
        split: "train", "valid" or "test".
        length: L, frames per window (H + 2 for one step of a model with H velocities).
        stride: dataset frames from one window frame to the next.
    """

    def __init__(self, dataset_dir: str | Path, split: str, length: int, stride: int = 1) -> None:
        self.root = Path(dataset_dir)
        self.manifest = read_manifest(self.root)
        self.length, self.stride = length, stride
        self.span = (length - 1) * stride + 1  # dataset frames a window covers
        self.runs = [r for r in self.manifest["runs"] if r["split"] == split]
        # (run position, first frame) of every window that fits in its run.
        self.index = [
            (k, start)
            for k, run in enumerate(self.runs)
            for start in range(run["n_frames"] - self.span + 1)
        ]
        self._files: dict[int, TrajectoryFile] = {}

    def __len__(self) -> int:
        return len(self.index)

    def trajectory(self, k: int) -> TrajectoryFile:
        # Opened lazily so that each DataLoader worker (a forked process) opens its own handle.
        if k not in self._files:
            self._files[k] = TrajectoryFile(self.root / self.runs[k]["file"])
        return self._files[k]

    def event_weights(self, offset: int, weight: float, span_s: float) -> torch.Tensor:
        """[len] sampling weight per window: `weight` when the window's frame `offset` lies
        within `span_s` seconds after its run's event (attrs["start_time"]: the gate opening or
        the drum starting to turn), 1 otherwise (and for runs without an event)."""
        weights = torch.ones(len(self.index), dtype=torch.float64)
        starts = np.array([start for _, start in self.index], dtype=np.int64)
        runs = self.window_runs()
        for k in range(len(self.runs)):
            traj = self.trajectory(k)
            event = traj.attrs.get("start_time")
            mine = np.flatnonzero(runs == k)
            if event is None or len(mine) == 0:
                continue
            time = traj.time[starts[mine] + offset * self.stride]
            near = (time >= event) & (time < event + span_s)
            weights[torch.from_numpy(mine[near])] = weight
        return weights

    def narrow_outlet_weights(self, diameters: float, weight: float) -> torch.Tensor:
        """[len] sampling weight per window: `weight` for the windows of hopper runs whose outlet
        is narrower than `diameters` particle diameters, 1 otherwise (and for other kinds)."""
        narrowest = diameters * 2 * self.manifest["material"]["radius"]
        per_run = torch.tensor(
            [weight if run["scenario"].get("spec", {}).get("outlet", np.inf) < narrowest else 1.0
             for run in self.runs],
            dtype=torch.float64,
        )  # fmt: skip
        return per_run[torch.from_numpy(self.window_runs())]

    def removal_weights(self, first_step: int) -> torch.Tensor:
        """[len] sampling weight per window: 0 where a wall's removal (a gate opening) falls on
        a recorded frame that the window skips within one of its model steps (from its frame
        `first_step` on), 1 otherwise.

        Such a step reads the wall as present and has for target a frame after its removal: a
        rollout never takes it, since it removes a wall on one of its frames (the graph holds
        the walls present at a step's first frame), and the onset it teaches is blurred."""
        weights = torch.ones(len(self.index), dtype=torch.float64)
        starts = np.array([start for _, start in self.index], dtype=np.int64)
        runs = self.window_runs()
        for k in range(len(self.runs)):
            for removal in removal_frames(self.trajectory(k)):
                offset = removal - starts  # the removal's place in each window, in frames
                straddled = (offset > first_step * self.stride) & (offset % self.stride != 0)
                straddled &= (runs == k) & (offset < self.span - 1)
                weights[torch.from_numpy(straddled)] = 0.0
        return weights

    def window_runs(self) -> np.ndarray:
        """[len] int64: the run (its position in `runs`) of each window."""
        return np.array([k for k, _ in self.index], dtype=np.int64)

    def __getitem__(self, i: int) -> Window:
        k, start = self.index[i]
        traj = self.trajectory(k)
        window = traj.read(start, start + self.span, self.stride)
        present = window.active.all(axis=0)
        return Window(
            positions=torch.from_numpy(window.positions[:, present]),
            types=torch.from_numpy(window.types[present].astype(np.int64)),
            time=torch.from_numpy(window.time),
            walls=traj.walls,
            run=self.runs[k]["name"],
        )
