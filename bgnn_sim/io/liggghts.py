"""Read LIGGGHTS particle dumps into a `Trajectory` whose particles are aligned by atom id.

Formats: text `dump custom` (optionally gzipped; one or many `ITEM: TIMESTEP` blocks per file,
columns in any order) and legacy VTK from `dump custom/vtk` (`*.vtk`: points are positions, point
arrays hold id, type, radius and `v`). A VTK file does not store its timestep: it is read from
the last number in the file name, where LIGGGHTS writes the step in place of the dump name's `*`.
Frames without particles (LIGGGHTS dumps them before the first insertion and after a hopper has
emptied; a VTK file then holds `POINTS 0`) are frames in which no particle is active.
Every problem is a `DumpError` whose message names the file and, for text, the line.
"""

from __future__ import annotations

import glob
import gzip
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import BinaryIO

import numpy as np

from bgnn_sim.errors import DumpError
from bgnn_sim.trajectory import Trajectory

# Position column triples in order of preference; scaled ones are mapped through the box.
_POSITION_SETS = (("x", "y", "z"), ("xu", "yu", "zu"), ("xs", "ys", "zs"), ("xsu", "ysu", "zsu"))
_VELOCITY = ("vx", "vy", "vz")


@dataclass
class DumpFrame:
    """One snapshot of a dump, columns as written.

    Attributes:
        timestep: LIGGGHTS step number.
        columns: column name -> [N] float64 values, rows in file order (VTK vector arrays are
            split into components: `v` -> vx, vy, vz).
        source: "FILE:LINE" of the block's `ITEM: TIMESTEP` (text) or the file path (VTK).
        box: [3, 3] rows x, y, z of (lo bound, hi bound, tilt xy/xz/yz) from `ITEM: BOX BOUNDS`;
            None for VTK.
        first_row: line number of the first atom row; 0 where rows have no lines (VTK).
    """

    timestep: int
    columns: dict[str, np.ndarray]
    source: str
    box: np.ndarray | None = None
    first_row: int = 0

    def row_source(self, row: int) -> str:
        """Where atom row `row` is: "FILE:LINE", or the frame's source where rows have no lines."""
        if not self.first_row:
            return self.source
        return f"{self.source.rsplit(':', 1)[0]}:{self.first_row + row}"


def read_dumps(
    sources: str | Path | Sequence[str | Path], dem_dt: float, radius: float | None = None
) -> Trajectory:
    """Read LIGGGHTS dumps (text, gzipped text or legacy VTK) into one trajectory.

    Args:
        sources: a path, a glob pattern ("post/dump*.liggghts") or a list of them. Frames are
            ordered by the timestep they hold, not by file name. Glob matches named
            `*_boundingBox*` (the box files `dump custom/vtk` writes beside each frame) are skipped.
        dem_dt: LIGGGHTS time step (s); frame time = timestep * dem_dt.
        radius: particle radius (m) for dumps without a `radius` column (the column wins).

    Returns:
        Trajectory with particles = sorted union of atom ids over all frames; `active[t, j]` is
        False where atom j is absent from frame t (not yet inserted, or deleted by a sink).

    Raises:
        DumpError: no matching file, a malformed or inconsistent dump, no particle in any
            frame, or dem_dt <= 0.
    """
    if not dem_dt > 0:
        raise DumpError(f"the DEM time step must be positive seconds, got dem_dt={dem_dt}")
    if radius is not None and not radius > 0:
        raise DumpError(f"the particle radius must be positive metres, got radius={radius}")
    patterns = [str(s) for s in ([sources] if isinstance(sources, (str, Path)) else sources)]
    registry = _Registry()
    snapshots = []
    for path in _expand(patterns):
        for frame in iter_dump_frames(path):
            snapshots.append(_snapshot(frame, radius, registry))
    snapshots.sort(key=lambda s: s.timestep)
    for before, after in zip(snapshots[:-1], snapshots[1:], strict=True):
        if before.timestep == after.timestep:
            raise DumpError(
                f"{after.source}: timestep {after.timestep} appears twice (also {before.source})"
            )
    occupied = [s for s in snapshots if s.ids.size]
    if not occupied:
        frames = "its one frame" if len(snapshots) == 1 else f"any of its {len(snapshots)} frames"
        raise DumpError(f"{', '.join(patterns)}: no particle in {frames} (dumped before the "
                        "first insertion?)")  # fmt: skip
    traj = _assemble(snapshots, registry, dem_dt)
    traj.attrs.update(
        source="liggghts",
        dem_dt=float(dem_dt),
        dump_sources=patterns,
        dump_columns=sorted(set().union(*(s.columns for s in occupied))),
        radius_from="column" if "radius" in occupied[0].columns else "argument",
    )
    return traj


def iter_dump_frames(path: str | Path) -> Iterator[DumpFrame]:
    """Frames of one dump file, in file order.

    Args:
        path: text dump (gzip detected by content) or legacy VTK (`.vtk`, one frame).

    Yields:
        DumpFrame per `ITEM: TIMESTEP` block (text) or the file's one frame (VTK).

    Raises:
        DumpError: missing, empty, truncated or malformed file.
    """
    path = Path(path)
    if not path.is_file():
        raise DumpError(f"{path}: no such dump file")
    if path.suffix.lower() == ".vtk":
        yield _read_vtk_frame(path)
    else:
        yield from _iter_text_frames(path)


def _is_dump(path: Path) -> bool:
    # dump custom/vtk writes NAME_boundingBox_STEP.vtk beside each frame: the box, no atoms.
    return path.is_file() and "_boundingBox" not in path.name


def _expand(patterns: list[str]) -> list[Path]:
    """Files named by paths and glob patterns, each once."""
    if not patterns:
        raise DumpError("no dump files given")
    paths: dict[Path, Path] = {}
    for pattern in patterns:
        matches = [Path(pattern)]
        if re.search(r"[*?[]", pattern):  # a glob
            matches = [Path(p) for p in sorted(glob.glob(pattern)) if _is_dump(Path(p))]
            if not matches:
                raise DumpError(f"no dump file matches {pattern!r}")
        for path in matches:
            paths.setdefault(path.resolve(), path)
    return list(paths.values())


class _Lines:
    """Lines of a binary file with their 1-based line numbers."""

    def __init__(self, handle: BinaryIO, path: Path) -> None:
        self.handle, self.path, self.lineno = handle, path, 0

    def next(self) -> bytes | None:
        line = self.handle.readline()
        if not line:
            return None
        self.lineno += 1
        return line

    def take(self, count: int) -> list[bytes]:
        rows = list(islice(self.handle, count))  # whole lines, no per-line Python work
        self.lineno += len(rows)
        return rows

    def here(self, offset: int = 0) -> str:
        return f"{self.path}:{self.lineno + offset}"

    def item(self, name: str, line: bytes | None = None) -> bytes:
        """The next line (or `line`, just read), which must start with `ITEM: name`."""
        line = self.next() if line is None else line
        if line is None:
            raise DumpError(f"{self.here(1)}: file ends where 'ITEM: {name}' was expected")
        if not line.startswith(b"ITEM: " + name.encode()):
            raise DumpError(f"{self.here()}: expected 'ITEM: {name}', found {_show(line)}")
        return line

    def numbers(self, what: str, counts: tuple[int, ...], kind: type = float) -> list:
        """The `counts` (allowed lengths) numbers >= 0 (ints) or any (floats) of the next line."""
        line = self.next()
        try:
            values = [kind(v) for v in (line or b"").split()]
        except ValueError:
            values = []
        if len(values) not in counts or (kind is int and min(values) < 0):
            found = "the end of the file" if line is None else _show(line)
            raise DumpError(f"{self.here(int(line is None))}: expected {what}, found {found}")
        return values


def _iter_text_frames(path: Path) -> Iterator[DumpFrame]:
    with path.open("rb") as probe:
        zipped = probe.read(2) == b"\x1f\x8b"
    with gzip.open(path, "rb") if zipped else path.open("rb") as handle:
        lines = _Lines(handle, path)
        count = 0
        try:
            while (frame := _read_block(lines)) is not None:
                count += 1
                yield frame
        except (OSError, EOFError, zlib.error) as exc:
            raise DumpError(f"{lines.here(1)}: cannot read this line ({exc})") from exc
    if count == 0:
        raise DumpError(f"{path}:1: empty dump file (no 'ITEM: TIMESTEP' block)")


def _read_block(lines: _Lines) -> DumpFrame | None:
    """Next `ITEM: TIMESTEP` block, or None at the end of the file."""
    line = lines.next()
    while line is not None and not line.strip():  # blank lines between blocks are harmless
        line = lines.next()
    if line is None:
        return None
    source = lines.here()
    lines.item("TIMESTEP", line)
    (timestep,) = lines.numbers("the timestep", (1,), int)
    lines.item("NUMBER OF ATOMS")
    (n_atoms,) = lines.numbers("the number of atoms", (1,), int)
    lines.item("BOX BOUNDS")
    # (lo, hi) per axis, or (lo, hi, tilt) for a triclinic box: [3, 3] with tilt 0 if absent
    box = np.array([(lines.numbers("box bounds 'lo hi'", (2, 3)) + [0.0])[:3] for _ in "xyz"])
    names = lines.item("ATOMS").decode(errors="replace").split()[2:]
    if "id" not in names or not any(all(n in names for n in xyz) for xyz in _POSITION_SETS):
        raise DumpError(f"{lines.here()}: ATOMS header needs an 'id' and x y z (or xu, xs) columns")
    first_row = lines.lineno + 1
    rows = lines.take(n_atoms)
    if len(rows) < n_atoms:
        raise DumpError(f"{lines.here(1)}: file ends after {len(rows)} of {n_atoms} atom rows")
    if rows and not rows[-1].endswith(b"\n"):  # LIGGGHTS ends every row with one
        raise DumpError(f"{lines.here()}: file ends inside atom row {n_atoms} (no newline "
                        "after it: the dump was cut while being written)")  # fmt: skip
    values = _parse_rows(rows, names, f"{lines.path}", first_row)
    columns = {name: values[:, k] for k, name in enumerate(names)}
    return DumpFrame(timestep, columns, source, box, first_row)


def _show(line: bytes) -> str:
    return repr(line.decode(errors="replace").strip()[:60])


def _parse_rows(rows: list[bytes], names: list[str], path: str, first_row: int) -> np.ndarray:
    """Atom rows as numbers: [len(rows), len(names)] float64, every row checked."""
    shape = (len(rows), len(names))
    if not rows:
        return np.empty(shape)
    try:  # numpy's C parser; it skips blank lines, so the shape is checked too
        values = np.loadtxt(rows, dtype=np.float64, comments=None, ndmin=2)
    except ValueError:
        values = None
    if values is None or values.shape != shape:
        _raise_bad_row(rows, names, path, first_row)
    return values


def _raise_bad_row(rows: list[bytes], names: list[str], path: str, first_row: int) -> None:
    # Only reached on a bad block, so a per-value loop is affordable here.
    for row, line in enumerate(rows):
        if line.startswith(b"ITEM:"):  # the next block began early
            problem = f"found {_show(line)} after {row} atom rows, NUMBER OF ATOMS is {len(rows)}"
        else:
            problem = _row_problem(line.split(), names)
        if problem:
            raise DumpError(f"{path}:{first_row + row}: {problem}")
    raise DumpError(f"{path}:{first_row}: atom rows could not be read as numbers")


def _row_problem(tokens: list[bytes], names: list[str]) -> str | None:
    """What is wrong with the values of one atom row, or None."""
    if len(tokens) != len(names):
        return f"atom row has {len(tokens)} values, expected {len(names)} ({' '.join(names)})"
    for name, token in zip(names, tokens, strict=True):
        try:
            float(token)
        except ValueError:
            return f"non-numeric value {_show(token)} in column {name!r}"
    return None


def _read_vtk_frame(path: Path) -> DumpFrame:
    """The one frame of a legacy VTK file written by `dump custom/vtk`."""
    import pyvista  # deferred: only VTK dumps need it, and it is slow to import

    step = re.search(r"(\d+)\D*$", path.name)
    if step is None:
        raise DumpError(f"{path}: no timestep number in the file name (LIGGGHTS puts it at '*')")
    try:
        with pyvista.vtk_verbosity("error"):  # not VTK's warning about a file of no points
            mesh = pyvista.read(path)
    except Exception as exc:  # VTK readers raise many types; all mean an unreadable file
        raise DumpError(f"{path}: cannot read as a VTK file ({exc})") from exc
    if isinstance(mesh, pyvista.PolyData) and mesh.n_points == 0:  # before insertion: no atom
        return DumpFrame(int(step.group(1)), {c: np.empty(0) for c in ("id", *"xyz")}, str(path))
    if not isinstance(mesh, pyvista.PolyData) or "id" not in mesh.point_data:
        raise DumpError(f"{path}: not a particle dump of `dump custom/vtk` (no 'id' point array)")
    points = np.asarray(mesh.points, dtype=np.float64).reshape(-1, 3)
    columns = {"x": points[:, 0], "y": points[:, 1], "z": points[:, 2]}
    for name in mesh.point_data:
        array = np.asarray(mesh.point_data[name], dtype=np.float64)
        if array.ndim == 1:
            columns[name] = array
        elif array.shape[1] == 3:  # LIGGGHTS names vectors by their stem: v -> vx vy vz
            columns.update({name + axis: array[:, k] for k, axis in enumerate("xyz")})
        else:
            columns.update({f"{name}[{k + 1}]": array[:, k] for k in range(array.shape[1])})
    return DumpFrame(int(step.group(1)), columns, str(path))


@dataclass
class _Snapshot:
    """A frame reduced to what the trajectory keeps, rows sorted by id."""

    timestep: int
    source: str
    columns: list[str]
    ids: np.ndarray  # [n] int64
    positions: np.ndarray  # [n, 3] float64
    velocities: np.ndarray | None  # [n, 3] float32


class _Registry:
    """Type and radius of every atom id met so far (sorted arrays), to catch changes."""

    def __init__(self) -> None:
        # A sentinel id above any real one keeps every searchsorted index valid.
        self.ids = np.array([np.iinfo(np.int64).max])
        self.types = np.zeros(1, np.int32)
        self.radius = np.zeros(1)

    def add(self, frame: DumpFrame, ids: np.ndarray, rows: np.ndarray, types, radius) -> None:
        """Check, then record, atoms `ids` [n] (sorted, unique) read from `rows` [n] of `frame`.

        `types` [n] int32 and `radius` [n] float64 must match the values of earlier frames.
        """
        at = np.searchsorted(self.ids, ids)
        known = self.ids[at] == ids
        for name, old, new in (
            ("type", self.types[at], types),
            ("radius", self.radius[at], radius),
        ):
            changed = np.flatnonzero(known & ~np.isclose(old, new, rtol=1e-5, atol=0))
            if changed.size:
                k = changed[0]
                raise DumpError(
                    f"{frame.row_source(rows[k])}: atom {ids[k]} has {name} {new[k]:g} here but "
                    f"{old[k]:g} in another frame; a {name} must not change between frames"
                )
        fresh = ~known
        self.ids = np.insert(self.ids, at[fresh], ids[fresh])
        self.types = np.insert(self.types, at[fresh], types[fresh])
        self.radius = np.insert(self.radius, at[fresh], radius[fresh])


def _sorted_ids(frame: DumpFrame) -> tuple[np.ndarray, np.ndarray]:
    """Atom ids of `frame` in increasing order [n] int64, and the rows holding them [n]."""
    rows = np.argsort(frame.columns["id"], kind="stable")
    ids = frame.columns["id"][rows].astype(np.int64)
    if not np.array_equal(ids, frame.columns["id"][rows]):
        raise DumpError(f"{frame.source}: atom ids must be integers")
    dup = np.flatnonzero(ids[1:] == ids[:-1])
    if dup.size:
        k = dup[0]
        raise DumpError(
            f"{frame.row_source(rows[k + 1])}: atom id {ids[k]} appears twice in the frame of "
            f"timestep {frame.timestep} (also at {frame.row_source(rows[k])})"
        )
    return ids, rows


def _snapshot(frame: DumpFrame, radius: float | None, registry: _Registry) -> _Snapshot:
    """Check `frame`, record its atoms in `registry`, keep its ids, positions and velocities."""
    cols = frame.columns
    ids, rows = _sorted_ids(frame)
    positions = _positions(frame)[rows]
    velocities = None
    if all(c in cols for c in _VELOCITY):
        velocities = np.column_stack([cols[c] for c in _VELOCITY])[rows].astype(np.float32)
    finite = np.isfinite(positions).all(axis=1)
    if velocities is not None:
        finite &= np.isfinite(velocities).all(axis=1)
    if not finite.all():
        k = np.flatnonzero(~finite)[0]
        raise DumpError(
            f"{frame.row_source(rows[k])}: non-finite position or velocity of atom {ids[k]}"
        )
    if "radius" not in cols and radius is None and ids.size:
        raise DumpError(f"{frame.source}: no 'radius' column; pass the particle radius (--radius)")
    radii = cols["radius"][rows] if "radius" in cols else np.full(ids.size, radius or 0.0)
    types = cols["type"][rows].astype(np.int32) if "type" in cols else np.ones(ids.size, np.int32)
    registry.add(frame, ids, rows, types, radii)
    return _Snapshot(frame.timestep, frame.source, list(cols), ids, positions, velocities)


def _positions(frame: DumpFrame) -> np.ndarray:
    """Cartesian positions [n, 3] from x/xu columns, or scaled xs/xsu ones through the box."""
    triple = next(t for t in _POSITION_SETS if all(c in frame.columns for c in t))
    xyz = np.column_stack([frame.columns[c] for c in triple])
    if not triple[0].startswith("xs"):
        return xyz
    # LAMMPS bounds of a triclinic box enclose the tilted cell; undo that to get the cell edges.
    (xlo, xhi, xy), (ylo, yhi, xz), (zlo, zhi, yz) = frame.box
    xlo, xhi = xlo - min(0.0, xy, xz, xy + xz), xhi - max(0.0, xy, xz, xy + xz)
    ylo, yhi = ylo - min(0.0, yz), yhi - max(0.0, yz)
    cell = np.array([[xhi - xlo, xy, xz], [0.0, yhi - ylo, yz], [0.0, 0.0, zhi - zlo]])
    return np.array([xlo, ylo, zlo]) + xyz @ cell.T


def _assemble(snapshots: list[_Snapshot], registry: _Registry, dem_dt: float) -> Trajectory:
    """Scatter the snapshots (sorted by timestep) into [T, N] arrays over all ids."""
    occupied = [s for s in snapshots if s.ids.size]  # a frame of no atom lacks no column
    with_velocity = [s.velocities is not None for s in occupied]
    if any(with_velocity) and not all(with_velocity):
        lacking = occupied[with_velocity.index(False)]
        raise DumpError(f"{lacking.source}: no vx vy vz columns, but other frames have them")
    ids = registry.ids[:-1]  # without the sentinel
    n_frames, n_atoms = len(snapshots), ids.size
    positions = np.zeros((n_frames, n_atoms, 3))
    active = np.zeros((n_frames, n_atoms), dtype=bool)
    velocities = np.zeros((n_frames, n_atoms, 3), np.float32) if all(with_velocity) else None
    for t, snap in enumerate(snapshots):
        cols = np.searchsorted(ids, snap.ids)
        positions[t, cols] = snap.positions
        active[t, cols] = True
        if velocities is not None and snap.ids.size:
            velocities[t, cols] = snap.velocities
    time = np.array([s.timestep for s in snapshots], dtype=np.float64) * dem_dt
    return Trajectory(
        time, positions, active, ids, registry.types[:-1], registry.radius[:-1], velocities
    )
