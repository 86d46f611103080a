"""The HDF5 trajectory store: streamed, flushed per frame, read lazily.

Schema (format "bgnn-sim-trajectory", version 1):

    /                      attrs: format, version, complete (False until the writer closes),
                                  metadata (JSON of Trajectory.attrs)
    /particles/ids         [N] int64     LIGGGHTS atom ids
    /particles/types       [N] int32
    /particles/radius      [N] float64   metres
    /frames/time           [T] float64   seconds; written last for each frame, so its length is
                                         the number of finished frames
    /frames/positions      [T, N, 3] float64, metres, one chunk per frame, gzip + shuffle
    /frames/active         [T, N] bool
    /frames/velocities     [T, N, 3] float32, m/s (optional)
    /frames/guard_corrections  [T] int32, particles the rollout's wall guard moved to make each
                           frame (optional: only rollouts with the guard on; 0 for the frames
                           it did not make, such as the initial history)
    /walls/<k>/vertices    [V, 3] float64, /walls/<k>/faces [F, 3] int64;
                           attrs: name, motion (JSON), removed_at (absent = never removed)
    /sinks/z               [S] float64, metres: particles whose centre falls below z leave the
                           simulation (a hopper's sink; empty for a drum). Absent in files
                           written before sinks were stored: the reader takes them from the
                           scenario attrs (trajectory.legacy_sinks).

A killed writer leaves a readable file holding every frame finished before the kill, with
`complete = False` so that it is never mistaken for a finished run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from bgnn_sim.errors import TrajectoryError
from bgnn_sim.geometry.sink import Sink
from bgnn_sim.geometry.wall import Wall, motion_from_dict, motion_to_dict
from bgnn_sim.io.outputs import check_writable
from bgnn_sim.trajectory import Trajectory, legacy_sinks

TRAJECTORY_SUFFIXES = (".h5", ".hdf5")
FORMAT = "bgnn-sim-trajectory"
VERSION = 1
_FRAME_DATASETS = ("positions", "active", "velocities")
GUARD_CORRECTIONS = "guard_corrections"


class TrajectoryWriter:
    """Append frames to a new trajectory file, flushing after each one.

    Use as a context manager; the file is marked complete only when the block ends normally.

    Args:
        path: output .h5 file.
        ids, types, radius: [N] per-particle constants.
        walls: the container's walls (stored with their motion).
        attrs: JSON-serialisable metadata.
        with_velocities: whether frames carry velocities.
        force: overwrite an existing file.
        sinks: where particles leave the simulation (stored next to the walls); None: not
            recorded (a reader then takes them from the scenario in `attrs`).
    """

    def __init__(
        self,
        path: str | Path,
        ids: np.ndarray,
        types: np.ndarray,
        radius: np.ndarray,
        walls: list[Wall] = (),
        attrs: dict[str, Any] | None = None,
        with_velocities: bool = True,
        force: bool = False,
        sinks: list[Sink] | None = None,
    ) -> None:
        self.path = Path(path)
        check_writable(self.path, force)
        n = len(ids)
        if n == 0:
            raise TrajectoryError(f"{self.path}: a trajectory needs at least one particle")
        self.n_particles = n
        self.n_frames = 0
        self._last_time = -np.inf
        self._file = h5py.File(self.path, "w")
        self._file.attrs.update(
            format=FORMAT, version=VERSION, complete=False, metadata=json.dumps(attrs or {})
        )
        particles = self._file.create_group("particles")
        particles["ids"] = np.asarray(ids, dtype=np.int64)
        particles["types"] = np.asarray(types, dtype=np.int32)
        particles["radius"] = np.asarray(radius, dtype=np.float64)
        self._create_frame_datasets(n, with_velocities)
        _write_walls(self._file.create_group("walls"), walls)
        if sinks is not None:
            self._file.create_group("sinks")["z"] = np.array([s.z for s in sinks], np.float64)
        self._file.flush()

    def _create_frame_datasets(self, n: int, with_velocities: bool) -> None:
        """The growing per-frame datasets, kept as handles: looking them up by name cost more
        than writing a frame (h5py builds a new object per lookup)."""
        self._frames = self._file.create_group("frames")
        self._datasets: dict[str, h5py.Dataset] = {}
        # gzip level 1: level 4 took 0.7 ms more per frame of 1,400 particles for 1 % less
        # disk (positions in float64 barely compress; most of the gain is the shuffle's).
        compress = dict(compression="gzip", compression_opts=1, shuffle=True)
        self._add_frame_dataset("time", (), np.float64, chunk_frames=1024)
        self._add_frame_dataset("positions", (n, 3), np.float64, **compress)
        self._add_frame_dataset("active", (n,), bool, **compress)
        if with_velocities:
            self._add_frame_dataset("velocities", (n, 3), np.float32, **compress)

    def _add_frame_dataset(
        self, name: str, frame_shape: tuple, dtype, chunk_frames: int = 1, **options
    ) -> None:
        """A dataset [T, *frame_shape] that grows by a frame at a time, created with the frames
        written so far (reading 0: HDF5's fill value)."""
        self._datasets[name] = self._frames.create_dataset(
            name, (self.n_frames, *frame_shape), dtype, maxshape=(None, *frame_shape),
            chunks=(chunk_frames, *frame_shape), **options,
        )  # fmt: skip

    def append(
        self,
        time: float,
        positions: np.ndarray,
        active: np.ndarray,
        velocities: np.ndarray | None = None,
        guard_corrections: int | None = None,
    ) -> None:
        """Write one frame: positions [N, 3], active [N], velocities [N, 3] (if enabled), and
        the wall guard's corrections (the dataset appears with the first frame that has them;
        the frames before it, and later frames without them, read 0)."""
        if not time > self._last_time:
            raise ValueError(f"frame time {time} does not follow {self._last_time}")
        positions = np.where(active[:, None], positions, 0.0)
        if not np.isfinite(positions).all():
            raise TrajectoryError(f"{self.path}: non-finite positions at t={time:g} s, not written")
        values = {"positions": positions, "active": active, "velocities": velocities}
        for name in _FRAME_DATASETS:
            if name in self._datasets:
                if values[name] is None:
                    raise ValueError(f"{name} missing for a trajectory that stores them")
                self._append(name, values[name])
        if guard_corrections is not None or GUARD_CORRECTIONS in self._datasets:
            if GUARD_CORRECTIONS not in self._datasets:  # 0 for the frames before
                self._add_frame_dataset(GUARD_CORRECTIONS, (), np.int32, chunk_frames=1024)
            self._append(GUARD_CORRECTIONS, guard_corrections or 0)
        # Time last: its length is what readers trust as the number of finished frames.
        self._append("time", time)
        self._file.flush()
        self.n_frames += 1
        self._last_time = time

    def _append(self, name: str, value) -> None:
        """Grow dataset `name` by the frame being written and write `value` there."""
        dataset = self._datasets[name]
        dataset.resize(self.n_frames + 1, axis=0)
        dataset[self.n_frames] = value

    def close(self, complete: bool = True) -> None:
        if self._file.id.valid:
            self._file.attrs["complete"] = complete
            self._file.close()

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(complete=exc_type is None)


def write_trajectory(path: str | Path, trajectory: Trajectory, force: bool = False) -> None:
    """Write a whole in-memory trajectory."""
    tr = trajectory
    with TrajectoryWriter(
        path,
        tr.ids,
        tr.types,
        tr.radius,
        tr.walls,
        tr.attrs,
        tr.velocities is not None,
        force,
        tr.sinks,
    ) as writer:
        for t in range(tr.n_frames):
            velocities = None if tr.velocities is None else tr.velocities[t]
            corrections = None if tr.guard_corrections is None else int(tr.guard_corrections[t])
            writer.append(float(tr.time[t]), tr.positions[t], tr.active[t], velocities,
                          corrections)  # fmt: skip


@dataclass(frozen=True)
class Frame:
    """One frame read from a trajectory file."""

    time: float
    positions: np.ndarray  # [N, 3]
    active: np.ndarray  # [N]
    velocities: np.ndarray | None  # [N, 3]


class TrajectoryFile:
    """Read-only, lazy view of a trajectory file: frames are read from disk when asked for."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise TrajectoryError(f"{self.path}: no such file")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as exc:
            raise TrajectoryError(f"{self.path}: not a readable HDF5 file ({exc})") from exc
        try:
            self._check_format()
            self._read_header()
        except (KeyError, ValueError, OSError) as exc:
            self._file.close()
            raise TrajectoryError(f"{self.path}: corrupt trajectory file ({exc})") from exc

    def _check_format(self) -> None:
        attrs = self._file.attrs
        if attrs.get("format") != FORMAT:
            raise TrajectoryError(f"{self.path}: not a bgnn-sim trajectory (no format={FORMAT!r})")
        if attrs.get("version") != VERSION:
            raise TrajectoryError(
                f"{self.path}: trajectory format version {attrs.get('version')} is not supported "
                f"(this bgnn-sim reads version {VERSION})"
            )

    def _read_header(self) -> None:
        frames = self._file["frames"]
        self._frames = frames
        time = frames["time"][:]
        # A writer killed mid-frame may have grown other datasets by one row more than time.
        lengths = [len(frames[name]) for name in _FRAME_DATASETS if name in frames]
        self.n_frames = min(len(time), *lengths)
        self.time = time[: self.n_frames]
        # Optional, written before time: at least as long as time in a file killed mid-frame.
        self.guard_corrections: np.ndarray | None = (
            frames[GUARD_CORRECTIONS][: self.n_frames] if GUARD_CORRECTIONS in frames else None
        )
        particles = self._file["particles"]
        self.ids = particles["ids"][:]
        self.types = particles["types"][:]
        self.radius = particles["radius"][:]
        self.complete = bool(self._file.attrs["complete"])
        self.attrs: dict[str, Any] = json.loads(self._file.attrs["metadata"])
        self.walls = _read_walls(self._file["walls"])
        self.sinks = (
            [Sink(float(z)) for z in self._file["sinks"]["z"][:]]
            if "sinks" in self._file
            else legacy_sinks(self.attrs)
        )

    @property
    def n_particles(self) -> int:
        return len(self.ids)

    @property
    def has_velocities(self) -> bool:
        return "velocities" in self._frames

    def frame(self, index: int) -> Frame:
        """Frame `index` (negative counts from the end): positions [N, 3], active [N]."""
        if not -self.n_frames <= index < self.n_frames:
            raise IndexError(f"frame {index} out of range for {self.n_frames} frames")
        index %= self.n_frames
        velocities = self._frames["velocities"][index] if self.has_velocities else None
        return Frame(
            float(self.time[index]),
            self._frames["positions"][index],
            self._frames["active"][index],
            velocities,
        )

    def read(self, start: int = 0, stop: int | None = None, step: int = 1) -> Trajectory:
        """Frames [start, stop) (every `step`-th) in memory as a Trajectory (all by default)."""
        stop = self.n_frames if stop is None else min(stop, self.n_frames)
        span = slice(start, stop, step)
        return Trajectory(
            time=self.time[span].copy(),
            positions=self._frames["positions"][span],
            active=self._frames["active"][span],
            ids=self.ids,
            types=self.types,
            radius=self.radius,
            velocities=self._frames["velocities"][span] if self.has_velocities else None,
            walls=self.walls,
            attrs=dict(self.attrs),
            sinks=list(self.sinks),
            guard_corrections=None if self.guard_corrections is None
            else self.guard_corrections[span].copy(),
        )  # fmt: skip

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> TrajectoryFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_trajectory(path: str | Path) -> Trajectory:
    """Read a whole trajectory file into memory."""
    with TrajectoryFile(path) as f:
        return f.read()


def _write_walls(group: h5py.Group, walls: list[Wall]) -> None:
    for k, wall in enumerate(walls):
        g = group.create_group(f"{k:03d}")
        g["vertices"] = wall.vertices
        g["faces"] = wall.faces
        g.attrs["name"] = wall.name
        g.attrs["motion"] = json.dumps(motion_to_dict(wall.motion))
        if wall.removed_at is not None:
            g.attrs["removed_at"] = wall.removed_at


def _read_walls(group: h5py.Group) -> list[Wall]:
    return [
        Wall(
            name=str(g.attrs["name"]),
            vertices=g["vertices"][:],
            faces=g["faces"][:],
            motion=motion_from_dict(json.loads(g.attrs["motion"])),
            removed_at=float(g.attrs["removed_at"]) if "removed_at" in g.attrs else None,
        )
        for _, g in sorted(group.items())
    ]
