"""Run LIGGGHTS decks as subprocesses: failure detection, parallel runs, resumability.

A run folder holds the deck, its STL, `post/` (dumps), `screen.txt` and `log.liggghts`; a
`done.json` marker is written last, so a folder without it is half-finished and is redone.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bgnn_sim.dem.config import Material, Timing
from bgnn_sim.dem.deck import DECK, deck_text, write_deck
from bgnn_sim.errors import DemError

DONE = "done.json"
SCREEN = "screen.txt"
INSTALL_HINT = "install it with `sudo apt-get install liggghts` (Debian/Ubuntu package)"
# Log lines worth showing when a run fails.
_FAILURE_MARKERS = ("ERROR", "Lost atoms", "Segmentation fault", "Killed")
# Open MPI's start-up (liggghts is an MPI program even on one process) races when runs start
# side by side: each creates the shared session folder /tmp/ompi.HOST.UID, and the loser stops
# with this line before LIGGGHTS reads its deck. Such a run is started again after a pause.
MPI_STARTUP_FAILURE = "Unable to start a daemon on the local node"
MPI_STARTUP_TRIES = 3


def find_liggghts() -> str:
    """Path of the `liggghts` binary, or a DemError saying how to install it."""
    path = shutil.which("liggghts")
    if path is None:
        raise DemError(f"the DEM engine `liggghts` is not installed; {INSTALL_HINT}")
    return path


def run_deck(run_dir: Path, mpi_procs: int = 1, timeout: float | None = None) -> float:
    """Run `run_dir/in.deck`; returns the wall time in seconds, raises DemError on failure.

    A run that Open MPI failed to start (MPI_STARTUP_FAILURE) is started again, up to
    MPI_STARTUP_TRIES times in all. Screen output goes to screen.txt (not `-screen none`: it
    segfaults while reading an STL).
    """
    command = [find_liggghts(), "-in", DECK, "-log", "log.liggghts"]
    if mpi_procs > 1:
        command = [*_mpirun(mpi_procs), *command]
    start = time.perf_counter()
    for attempt in range(1, MPI_STARTUP_TRIES + 1):
        exit_code = _run_once(command, run_dir, timeout)
        screen = (run_dir / SCREEN).read_text(errors="replace")
        if exit_code == 0 or MPI_STARTUP_FAILURE not in screen or attempt == MPI_STARTUP_TRIES:
            break
        time.sleep(random.uniform(0.5, 2.0))  # apart from the run it raced with
    problems = failure_lines(screen)
    if exit_code != 0 or problems:
        detail = " | ".join(problems[-3:]) or "no ERROR line; see " + str(run_dir / SCREEN)
        raise DemError(f"{run_dir}: liggghts failed (exit {exit_code}): {detail}")
    return time.perf_counter() - start


def _run_once(command: list[str], run_dir: Path, timeout: float | None) -> int:
    """Exit code of one run of `command` in run_dir, its output in screen.txt."""
    with (run_dir / SCREEN).open("w") as screen:
        try:
            done = subprocess.run(
                command, cwd=run_dir, stdout=screen, stderr=subprocess.STDOUT, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise DemError(f"{run_dir}: liggghts ran longer than {timeout:g} s") from None
    return done.returncode


def _mpirun(procs: int) -> list[str]:
    """The Open MPI launcher for `procs` processes (root needs its explicit consent)."""
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        raise DemError("mpirun is not installed; install openmpi-bin or run without --mpi")
    as_root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    return [mpirun, *as_root, "--oversubscribe", "-np", str(procs)]


def failure_lines(log: str) -> list[str]:
    """The lines of a LIGGGHTS log that report a failure."""
    return [line.strip() for line in log.splitlines() if any(m in line for m in _FAILURE_MARKERS)]


def is_done(run_dir: Path, deck: str) -> bool:
    """Whether `run_dir` holds a finished run of exactly this deck text."""
    marker = run_dir / DONE
    if not marker.is_file():
        return False
    return json.loads(marker.read_text()).get("deck_sha256") == _sha256(deck)


def run_scenario(
    scenario, run_dir: Path, material: Material, timing: Timing, mpi_procs: int = 1
) -> bool:
    """Write and run one scenario unless it is already done; returns True if it ran."""
    deck = deck_text(scenario, material, timing)
    if is_done(run_dir, deck):
        return False
    shutil.rmtree(run_dir, ignore_errors=True)  # half-finished or another scenario: start clean
    write_deck(scenario, run_dir, material, timing)
    seconds = run_deck(run_dir, mpi_procs)
    marker = {"deck_sha256": _sha256(deck), "wall_seconds": round(seconds, 2)}
    (run_dir / DONE).write_text(json.dumps(marker))
    return True


def run_scenarios(
    runs: Iterable[tuple[object, Path]],
    material: Material,
    timing: Timing,
    workers: int = 1,
    on_finished: Callable[[Path, DemError | None], None] | None = None,
    mpi_procs: int = 1,
) -> None:
    """Run (scenario, run_dir) pairs, `workers` at a time; finished runs are skipped.

    `on_finished(run_dir, error)` is called as each run ends (error None on success). Each run
    uses `mpi_procs` MPI processes. Every run is attempted; the first failure is raised once
    all have ended.
    """
    find_liggghts()
    runs = list(runs)

    def one(run: tuple[object, Path]) -> DemError | None:
        scenario, run_dir = run
        error = None
        try:
            run_scenario(scenario, run_dir, material, timing, mpi_procs)
        except DemError as exc:
            error = exc
        if on_finished is not None:
            on_finished(run_dir, error)
        return error

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        errors = [e for e in pool.map(one, runs) if e is not None]
    if errors:
        raise errors[0]


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
