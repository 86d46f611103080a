"""Benchmark: accuracy of a trained model on the held-out test runs of its dataset.

For every test run: roll the model out from the run's first frames (the settled bed before the
gate opens, from the first frame whence the model's frames land on the opening; or the drum as
it starts to turn) for as long as the LIGGGHTS run lasts (or
`--frames`), then `bgnn compare` the rollout with the run. Writes each comparison's report under
`--out`, a `summary.json` with every run's metrics, and prints the table the model cards quote.
Rollouts run through the wall guard, as `bgnn simulate` does (its corrections per run are in the
table); `--no-wall-guard` measures the raw model, so a card can show both runs' crossings.

    python benchmarks/model_accuracy.py bgnn_sim/pretrained/hopper.pt data/hopper --out eval/hopper

`--split` picks other runs: `valid` to choose between candidates, or `all` for a set of extra
held-out runs (`bgnn generate hopper --runs 10 --out data/hopper-extra --seed 100`: scenario
draws 100-109, which the 40 runs of seed 0 do not share).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bgnn_sim.analysis.summary import AnalysisOptions
from bgnn_sim.app.analyze import compare_session
from bgnn_sim.app.rollout import rollout_session
from bgnn_sim.defaults import PRECISIONS
from bgnn_sim.dem.dataset import read_manifest
from bgnn_sim.engine.rollout import DivergenceError
from bgnn_sim.engine.state import aligned_start, frame_stride
from bgnn_sim.io.hdf5 import TrajectoryFile
from bgnn_sim.models.loading import TrainedModel, load_model

COLUMNS = {
    "hopper": ("discharge_fraction_max_error", "t50_relative_error",
               "mass_flow_rate_relative_error", "wasserstein_mean_m", "overlap_mean_m",
               "reference_overlap_mean_m", "leakage_crossings", "guard_corrections",
               "above_top_max"),
    "drum": ("mixing_entropy_max_error", "repose_angle_error_deg", "wasserstein_mean_m",
             "overlap_mean_m", "reference_overlap_mean_m", "leakage_crossings",
             "leakage_outside_max", "guard_corrections"),
}  # fmt: skip
# "all": every run of the dataset (a held-out set generated with its own --seed).
SPLITS = ("train", "valid", "test", "all")


def evaluate_run(model: Path, trained: TrainedModel, reference: Path, out: Path,
                 frames: int | None, wall_guard: bool = True,
                 compile: bool = False, seed: int = 0,
                 precision: str = "float32") -> dict:  # fmt: skip
    """Roll out from the reference's first frames (the model reads `history` of its frames
    behind "now"; from the first frame whence its frames land on a gate's opening), compare,
    return the metrics (+ timing). `frames` counts the model's frames;
    `wall_guard` False rolls the raw model out (its metrics have no guard_corrections);
    `compile` runs a BGNN's network through torch.compile (the same results, faster); `seed`
    picks a LaM-SLidE model's member of the ensemble (a BGNN ignores it); `precision` is a
    BGNN processor's (load_model)."""
    with TrajectoryFile(reference) as run:
        stride = frame_stride(run, trained.timing.frame_dt)
        # From where its frames land on the gate's opening: between two, it would open late.
        start = aligned_start(run, trained.backend.history * stride, stride)
        n_frames = (run.n_frames - 1 - start) // stride if frames is None else frames
    out.mkdir(parents=True, exist_ok=True)
    rollout = out / "rollout.h5"
    started = time.perf_counter()
    try:
        rollout_session(model, str(reference), n_frames, rollout, start=start, force=True,
                        wall_guard=wall_guard, compile=compile, seed=seed,
                        precision=precision)  # fmt: skip
        diverged = None
    except DivergenceError as exc:  # the frames before the blow-up are kept and compared
        diverged = str(exc)
    seconds = time.perf_counter() - started
    metrics = compare_session(str(rollout), str(reference), out / "report", AnalysisOptions(),
                              dem_dt=2.5e-5, force=True)  # fmt: skip
    return {**metrics, "above_top_max": most_above_top(rollout), "rollout_frames": n_frames,
            "rollout_seconds": seconds, "wall_guard": wall_guard, "diverged": diverged}  # fmt: skip


def most_above_top(rollout: Path) -> int:
    """The most active particles at one frame above the walls' highest point at that frame:
    particles thrown out of an open top (a closed drum counts its leaks apart)."""
    with TrajectoryFile(rollout) as trajectory:
        traj = trajectory.read()
    tops = np.array([max(w.vertices_at(t)[:, 2].max() for w in traj.walls if w.present_at(t))
                     for t in traj.time])  # fmt: skip
    above = (traj.positions[..., 2] > tops[:, None]) & traj.active
    return int(above.sum(axis=1).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="checkpoint (.pt)")
    parser.add_argument("dataset", type=Path, help="dataset folder (bgnn generate)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--frames", type=int, default=None, help="model frames per rollout (default: the whole run)"
    )
    parser.add_argument("--split", default="test", choices=SPLITS, help="runs to measure")
    parser.add_argument(
        "--no-wall-guard", action="store_true", help="roll out the raw model (no wall guard)"
    )
    parser.add_argument("--compile", action="store_true", help="BGNN: torch.compile the network")
    parser.add_argument("--seed", type=int, default=0, help="LaM-SLidE: the ensemble member")
    parser.add_argument("--precision", default="float32", choices=PRECISIONS,
                        help="BGNN: the processor's precision")  # fmt: skip
    args = parser.parse_args()

    manifest = read_manifest(args.dataset)
    trained = load_model(args.model, "cpu")
    kind = trained.data["kinds"][0]
    results = {}
    for name in runs_of(manifest, args.split):
        reference = args.dataset / "trajectories" / f"{name}.h5"
        results[name] = evaluate_run(args.model, trained, reference, args.out / name, args.frames,
                                     not args.no_wall_guard, args.compile, args.seed,
                                     args.precision)  # fmt: skip
        row = {k: results[name].get(k) for k in COLUMNS[kind]}
        print(name, json.dumps(row), flush=True)
        (args.out / "summary.json").write_text(json.dumps(results, indent=2, default=str))
    print_table(results, COLUMNS[kind])


def runs_of(manifest: dict, split: str) -> list[str]:
    """The runs of `split` in the manifest, or every run (in name order) for "all"."""
    if split == "all":
        return sorted(name for names in manifest["splits"].values() for name in names)
    return manifest["splits"][split]


def print_table(results: dict, columns: tuple[str, ...]) -> None:
    """Markdown table of the chosen metrics per run, with the mean and the worst."""
    print("| run | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name, metrics in results.items():
        print(f"| {name} | " + " | ".join(_cell(metrics.get(c)) for c in columns) + " |")
    for label, reduce in (("mean", np.mean), ("worst", np.max)):
        values = [_reduce(reduce, [_number(m.get(c)) for m in results.values()]) for c in columns]
        print(f"| {label} | " + " | ".join(_cell(v) for v in values) + " |")


def _reduce(reduce, values: list[float]) -> float:
    """The reduction over the runs that have the metric (NaN when none has it)."""
    present = [v for v in values if v == v]
    return float(reduce(present)) if present else float("nan")


def _number(value) -> float:
    return float("nan") if value is None else abs(float(value))


def _cell(value) -> str:
    return "n/a" if value is None or value != value else f"{value:.4g}"


if __name__ == "__main__":
    main()
