"""Plots (matplotlib, PNG), metrics.json and report.md for one trajectory or a comparison.

Every figure takes labelled analyses ({"rollout": ..., "LIGGGHTS": ...}) so one trajectory, a pair
or an ensemble of rollouts share the same figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in tests
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bgnn_sim.analysis.compare import Comparison  # noqa: E402
from bgnn_sim.analysis.summary import Analysis  # noqa: E402
from bgnn_sim.errors import OutputError  # noqa: E402
from bgnn_sim.io.outputs import (  # noqa: E402
    check_folder_writable,
    check_writable,
    strict_json,
    write_atomically,
)

Series = dict[str, Analysis]
ENSEMBLE = "sample"  # label prefix of the members of an ensemble: drawn as a band
PLOTS = ("discharge", "mixing", "drum", "kinetic_energy", "leakage", "distances")  # file stems
REPORT_FILES = ("metrics.json", "report.md", *(f"{name}.png" for name in PLOTS))


def check_report_dir(out_dir: Path, force: bool) -> None:
    """Before any work: `out_dir` can be made or written, and holds no report unless `force`."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"--out {out_dir} is a file; give a folder for the report")
    check_folder_writable(out_dir)
    for name in REPORT_FILES:
        check_writable(out_dir / name, force)


def write_analysis_report(analysis: Analysis, out_dir: Path, title: str, force: bool) -> dict:
    """`bgnn analyze`: plots, metrics.json (the trajectory's scalars) and report.md."""
    metrics = analysis.scalars()
    _write_report(out_dir, title, {"trajectory": analysis}, None, metrics, force)
    return metrics


def write_ensemble_report(analyses: list[Analysis], out_dir: Path, title: str, force: bool) -> dict:
    """Several samples of one simulation (LaM-SLidE): plots with the ensemble's band, and
    metrics.json with each scalar's mean over the samples and its standard deviation."""
    series = {f"{ENSEMBLE} {k}": a for k, a in enumerate(analyses)}
    table = [a.scalars() for a in analyses]
    metrics: dict = {"samples": len(analyses)}
    for key, value in table[0].items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            metrics[key] = value
            continue
        values = np.array([row[key] for row in table], dtype=float)
        metrics[key], metrics[f"{key}_std"] = float(values.mean()), float(values.std())
    _write_report(out_dir, title, series, None, metrics, force)
    return metrics


def write_comparison_report(
    comparison: Comparison, out_dir: Path, labels: tuple[str, str], title: str, force: bool
) -> dict:
    """`bgnn compare`: plots of both trajectories, their distances, metrics.json, report.md."""
    series = {labels[0]: comparison.rollout, labels[1]: comparison.reference}
    _write_report(out_dir, title, series, comparison, comparison.metrics, force)
    return comparison.metrics


def _write_report(out_dir, title, series: Series, comparison, metrics, force) -> None:
    out_dir = Path(out_dir)
    check_report_dir(out_dir, force)  # refuse before writing anything
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {
        "discharge": discharge_figure(series),
        "mixing": mixing_figure(series),
        "drum": drum_figure(series),
        "kinetic_energy": kinetic_energy_figure(series),
        "leakage": leakage_figure(series),
        "distances": distances_figure(comparison) if comparison else None,
    }
    written = []
    for name, fig in figures.items():
        if fig is not None:
            write_atomically(
                out_dir / f"{name}.png", partial(fig.savefig, dpi=110, format="png"), force
            )
            plt.close(fig)
            written.append(name)
    text = strict_json(metrics)
    write_atomically(out_dir / "metrics.json", lambda tmp: tmp.write_text(text), force)
    markdown = report_markdown(title, metrics, written)
    write_atomically(out_dir / "report.md", lambda tmp: tmp.write_text(markdown), force)


def report_markdown(title: str, metrics: dict, plots: list[str]) -> str:
    """report.md: a metrics table and the figures."""
    rows = "\n".join(f"| {key} | {_format(value)} |" for key, value in metrics.items())
    figures = "\n\n".join(f"![{name}]({name}.png)" for name in plots)
    return f"# {title}\n\n| metric | value |\n|---|---|\n{rows}\n\n{figures}\n"


def _format(value) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def plot_curves(ax, curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """One line per label; the members of an ensemble (labels "sample k") instead as their
    min-max band and median, on the first member's times."""
    if len(curves) < 2 or not all(label.startswith(ENSEMBLE) for label in curves):
        for label, (t, y) in curves.items():
            ax.plot(t, y, label=label)
        return
    t = next(iter(curves.values()))[0]
    members = np.array([np.interp(t, ti, yi) for ti, yi in curves.values()])
    ax.fill_between(t, members.min(axis=0), members.max(axis=0), alpha=0.3,
                    label=f"{len(members)} samples (min-max)")  # fmt: skip
    ax.plot(t, np.median(members, axis=0), label="median")


def _figure(draw: Callable, panels: int = 1) -> plt.Figure:
    """A figure of `panels` side-by-side axes drawn by `draw(*axes)`, with legends and grids."""
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), squeeze=False)
    draw(*axes[0])
    for ax in axes[0]:
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def discharge_figure(series: Series) -> plt.Figure | None:
    """Fraction discharged versus time."""
    curves = {label: a for label, a in series.items() if a.discharge is not None}
    if not curves:
        return None

    def draw(ax):
        plot_curves(ax, {k: (a.discharge.time, a.discharge.fraction) for k, a in curves.items()})
        ax.set(xlabel="time (s)", ylabel="fraction discharged", title="Hopper discharge")

    return _figure(draw)


def mixing_figure(series: Series) -> plt.Figure | None:
    """Mixing entropy (with ln 2 marked) and Lacey index versus time."""
    curves = {label: a.mixing for label, a in series.items() if a.mixing is not None}
    if not curves:
        return None

    def draw(left, right):
        plot_curves(left, {label: (m.time, m.entropy) for label, m in curves.items()})
        plot_curves(right, {label: (m.time, m.lacey) for label, m in curves.items()})
        left.axhline(math.log(2), color="grey", ls="--", lw=1, label="ln 2 (mixed)")
        left.set(xlabel="time (s)", ylabel="entropy (nats)", title="Mixing entropy")
        right.set(xlabel="time (s)", ylabel="Lacey index", title="Lacey mixing index")

    return _figure(draw, panels=2)


def drum_figure(series: Series) -> plt.Figure | None:
    """Velocity profile across the bed and the dynamic angle of repose."""
    drums = {label: a for label, a in series.items() if a.repose is not None}
    if not drums:
        return None

    def draw(left, right):
        for label, a in drums.items():
            left.plot(a.profile.speed, a.profile.height, label=label)
            right.plot(a.repose.time, a.repose.angle, label=f"{label} ({a.repose.mean:.1f} deg)")
        left.set(xlabel="mean speed (m/s)", ylabel="height (m)", title="Velocity profile")
        right.set(xlabel="time (s)", ylabel="angle (deg)", title="Dynamic angle of repose")

    return _figure(draw, panels=2)


def kinetic_energy_figure(series: Series) -> plt.Figure | None:
    def draw(ax):
        plot_curves(ax, {label: (a.time, a.kinetic_energy) for label, a in series.items()})
        ax.set(xlabel="time (s)", ylabel="kinetic energy (J)", title="Kinetic energy")

    return _figure(draw)


def leakage_figure(series: Series) -> plt.Figure | None:
    """Cumulative wall crossings (and particles outside a closed container, and the wall
    guard's corrections of a rollout that records them) versus time."""

    def draw(ax):
        for label, a in series.items():
            ax.plot(a.time, np.cumsum(a.leakage.crossings), label=f"{label}: crossed a wall")
            if a.leakage.outside is not None:
                ax.plot(a.time, a.leakage.outside, ls="--", label=f"{label}: outside")
            if a.guard_corrections is not None:
                ax.plot(a.time, np.cumsum(a.guard_corrections), ls=":",
                        label=f"{label}: wall guard corrections")  # fmt: skip
        ax.set(xlabel="time (s)", ylabel="particles", title="Leakage through walls")

    return _figure(draw)


def distances_figure(comparison: Comparison) -> plt.Figure:
    """Cloud distances and the same-id position error versus time."""

    def draw(left, right):
        left.plot(comparison.distance_time, comparison.wasserstein * 1e3, "o-", label="W2 (EMD)")
        left.plot(comparison.distance_time, comparison.sinkhorn * 1e3, "s-", label="Sinkhorn")
        left.set(xlabel="time (s)", ylabel="distance (mm)", title="Particle clouds")
        right.plot(comparison.time, comparison.position_error * 1e3)
        right.set(xlabel="time (s)", ylabel="mean error (mm)", title="Same-id position error")

    return _figure(draw, panels=2)
