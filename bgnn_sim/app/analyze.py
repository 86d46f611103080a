"""`bgnn analyze` and `bgnn compare`: load, measure, write the report, check limits."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from bgnn_sim.analysis.compare import METRICS, compare
from bgnn_sim.analysis.report import (
    check_report_dir,
    write_analysis_report,
    write_comparison_report,
)
from bgnn_sim.analysis.summary import AnalysisOptions, analyze
from bgnn_sim.errors import ConfigError
from bgnn_sim.io.sources import open_source
from bgnn_sim.trajectory import SCENE_ATTRS, Trajectory


def analyze_session(
    source: str, out_dir: Path, options: AnalysisOptions, dem_dt: float, force: bool = False
) -> dict:
    """Measure one trajectory (or LIGGGHTS dumps) and write its report; returns its scalars."""
    check_report_dir(out_dir, force)
    traj = open_source(source, dem_dt).read()
    return write_analysis_report(analyze(traj, options), out_dir, f"Analysis of {source}", force)


def compare_session(
    rollout: str,
    reference: str,
    out_dir: Path,
    options: AnalysisOptions,
    dem_dt: float,
    distance_frames: int = 5,
    force: bool = False,
) -> dict:
    """Compare a rollout with a reference and write the report; returns the metrics.

    A reference without walls (LIGGGHTS dumps) is taken to flow in the rollout's container:
    it inherits the rollout's walls and scenario description.
    """
    check_report_dir(out_dir, force)
    ours = open_source(rollout, dem_dt).read()
    theirs = with_scene_of(open_source(reference, dem_dt).read(), ours)
    title = f"{rollout} against {reference}"
    comparison = compare(ours, theirs, options, distance_frames)
    return write_comparison_report(comparison, out_dir, ("rollout", "reference"), title, force)


def with_scene_of(traj: Trajectory, other: Trajectory) -> Trajectory:
    """`traj`, with `other`'s walls and scene attrs when it has no walls of its own."""
    if traj.walls:
        return traj
    scene = {key: other.attrs[key] for key in SCENE_ATTRS if key in other.attrs}
    return replace(traj, walls=other.walls, attrs={**scene, **traj.attrs})


def parse_limits(pairs: list[str]) -> dict[str, float]:
    """ "METRIC=VALUE" strings (--fail-above) as a dict; ConfigError for a malformed pair, an
    unknown metric (see `compare.METRICS`) or a value that is not a finite number."""
    limits = {}
    for pair in pairs:
        name, equals, value = (part.strip() for part in pair.partition("="))
        try:
            limit = float(value)
        except ValueError:
            limit = math.nan
        if not equals or not math.isfinite(limit):
            raise ConfigError(f"{pair!r}: expected METRIC=VALUE, VALUE a number")
        if name not in METRICS:
            raise ConfigError(f"{pair!r}: unknown metric {name!r}; known: {', '.join(METRICS)}")
        limits[name] = limit
    return limits


def exceeded(metrics: dict, limits: dict[str, float]) -> list[str]:
    """Descriptions of the limits that `metrics` break; a metric that could not be measured
    (NaN, None, or absent: a hopper's metric in a drum) breaks its limit."""
    broken = []
    for name, limit in limits.items():
        value = metrics.get(name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            broken.append(f"{name} not measured (limit {limit})")
        elif value > limit:
            broken.append(f"{name} = {value} > {limit}")
    return broken
