"""Benchmark: how far LIGGGHTS is from itself, the floor under model_accuracy's figures.

Each run of a split is run again in LIGGGHTS with another seed: the same container, material,
particle count, gate or rotation, and another random fill. The twin is then compared with the
run exactly as model_accuracy.py compares a model's rollout with it (`bgnn compare`), and the
same table is printed. A twin starts from a different bed, where a rollout starts from the run's
own: its errors estimate from above what the flow's own chaos leaves to a perfect model, and show
which of the accuracy targets lie within the DEM's own spread.

`--same-bed` (drums) keeps the run's seed, so its fill and settled bed are the run's own, bit for
bit, and turns the drum 1e-5 slower: the period in the deck moves by a few units of its sixth
digit, so the rim is a few um (under 5) from the run's by the end of the revolution. The twin then
starts from the very bed a rollout starts from, and what it drifts apart by is the flow's chaos
alone: the floor under a perfect model's figures.

    python benchmarks/dem_spread.py data/drum --out eval/dem-spread-drum
    python benchmarks/dem_spread.py data/drum --out eval/dem-spread-drum-same-bed --same-bed

Twin runs are kept under `--out`/runs (resumable like `bgnn generate`: a finished twin is not
run again); the comparisons' reports and `summary.json` go under `--out`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from model_accuracy import COLUMNS, SPLITS, print_table, runs_of

from bgnn_sim.analysis.summary import AnalysisOptions
from bgnn_sim.app.analyze import compare_session
from bgnn_sim.dem.config import Material, Timing
from bgnn_sim.dem.dataset import build_trajectory, read_manifest, remove_dumps, save_run
from bgnn_sim.dem.generate import plan_runs
from bgnn_sim.dem.runner import run_scenario

# Added to a run's seed for its twin: above any seed a dataset of the default size draws.
TWIN_SEED_OFFSET = 100_000
# A same-bed twin's relative change of speed: the smallest the deck's 6-digit period shows.
SAME_BED_SLOWDOWN = 1e-5


def twin_scenarios(dataset: Path, split: str, same_bed: bool = False) -> dict:
    """Run name -> its twin's scenario for the runs of `split`: the run's with another seed,
    or with `same_bed` (drums) its own seed and a speed 1e-5 lower.

    The scenarios are drawn again as `bgnn generate` drew them, and checked against the
    manifest's record of them (a dataset of another version would be twinned wrongly)."""
    manifest = read_manifest(dataset)
    kinds = {run["kind"] for run in manifest["runs"]}
    kind = kinds.pop() if len(kinds) == 1 else "mixed"
    material = Material(**manifest["material"])
    plan = plan_runs(kind, len(manifest["runs"]), manifest["seed"], manifest["preset"], material)
    recorded = {run["name"]: run["scenario"] for run in manifest["runs"]}
    twins = {}
    for name in runs_of(manifest, split):
        scenario = plan[name]
        if json.loads(json.dumps(dataclasses.asdict(scenario))) != recorded[name]:
            raise SystemExit(f"{name}: the manifest's scenario is not the one drawn again")
        twins[name] = twin_of(name, scenario, same_bed)
    return twins


def twin_of(name: str, scenario, same_bed: bool):
    """The run's scenario with another seed, or with `same_bed` (drums) turned slower."""
    if not same_bed:
        return dataclasses.replace(scenario, seed=scenario.seed + TWIN_SEED_OFFSET)
    if scenario.kind != "drum":
        raise SystemExit(f"{name}: --same-bed is for drums; a {scenario.kind} has no speed")
    return dataclasses.replace(scenario, rpm=scenario.rpm * (1 - SAME_BED_SLOWDOWN))


def run_twin(twin, run_dir: Path, trajectory: Path, material: Material, timing: Timing) -> None:
    """Run the twin in LIGGGHTS (unless done) and write its trajectory (unless written)."""
    ran = run_scenario(twin, run_dir, material, timing)
    if ran or not trajectory.exists():
        traj, _ = build_trajectory(twin, run_dir, material, timing)
        save_run(traj, trajectory)
        remove_dumps(run_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="dataset folder (bgnn generate)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--split", default="test", choices=SPLITS, help="runs to twin")
    parser.add_argument(
        "--same-bed", action="store_true", help="drums: the run's own bed, turned 1e-5 slower"
    )
    args = parser.parse_args()

    manifest = read_manifest(args.dataset)
    material, timing = Material(**manifest["material"]), Timing(**manifest["timing"])
    results = {}
    for name, twin in twin_scenarios(args.dataset, args.split, args.same_bed).items():
        trajectory = args.out / "trajectories" / f"{name}.h5"
        trajectory.parent.mkdir(parents=True, exist_ok=True)
        run_twin(twin, args.out / "runs" / name, trajectory, material, timing)
        reference = args.dataset / "trajectories" / f"{name}.h5"
        report = args.out / name / "report"
        results[name] = compare_session(str(trajectory), str(reference), report, AnalysisOptions(),
                                        dem_dt=timing.dem_dt, force=True)  # fmt: skip
        row = {k: results[name].get(k) for k in COLUMNS[twin.kind]}
        print(name, json.dumps(row), flush=True)
        (args.out / "summary.json").write_text(json.dumps(results, indent=2, default=str))
    print_table(results, COLUMNS[twin.kind])


if __name__ == "__main__":
    main()
