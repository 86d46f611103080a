"""LIGGGHTS input decks for the scenario families, written next to the geometry they read.

A deck is assembled from small sections shared by both families (header, material, insertion,
dumps). Pitfalls of LIGGGHTS 3.8 that shape these decks: every random seed must be a prime above
10000; there is no `fix delete/region`, so a sink is `delete_atoms` between short runs
(`compress no` keeps atom ids stable); the default dump format keeps only 6 digits.
"""

from __future__ import annotations

from pathlib import Path

from bgnn_sim.dem.config import GRAVITY, Material, Timing
from bgnn_sim.dem.scenarios import DrumScenario, HopperScenario

DECK = "in.deck"
WALLS_STL = "walls.stl"
DUMP_PATTERN = "post/dump*.liggghts"
# Steps between sink passes and between drum insertion waves.
_SINK_EVERY = 40
_INSERT_WAVE_S = 0.04


def deck_text(scenario: HopperScenario | DrumScenario, material: Material, timing: Timing) -> str:
    """The LIGGGHTS input deck of a hopper or drum scenario (it reads walls.stl)."""
    writer = {HopperScenario: _hopper_deck, DrumScenario: _drum_deck}[type(scenario)]
    return writer(scenario, material, timing)


def write_deck(scenario, run_dir: Path, material: Material, timing: Timing) -> Path:
    """Write the deck and walls.stl into `run_dir` (created); returns the deck's path."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "post").mkdir(exist_ok=True)  # LIGGGHTS does not create folders
    scenario.mesh().export(run_dir / WALLS_STL, file_type="stl_ascii")
    (run_dir / DECK).write_text(deck_text(scenario, material, timing))
    return run_dir / DECK


def _hopper_deck(s: HopperScenario, m: Material, timing: Timing) -> str:
    spec = s.spec
    half = spec.top / 2 + 2 * m.diameter
    domain = (-half, half, -half, half, -s.sink_depth - 2 * m.diameter, spec.height + m.diameter)
    # Insertion: the vertical bin, spheres wholly inside (all_in), 0.05 d off the walls.
    inner = spec.top / 2 - 0.05 * m.diameter
    z0, z1 = spec.cone_height, spec.height - 0.05 * m.diameter
    if spec.shape == "conical":
        fill = f"cylinder z 0.0 0.0 {inner:.6g} {z0:.6g} {z1:.6g}"
    else:
        inner_y = inner if spec.shape == "pyramid" else spec.depth / 2 - 0.05 * m.diameter
        fill = f"block {-inner:.6g} {inner:.6g} {-inner_y:.6g} {inner_y:.6g} {z0:.6g} {z1:.6g}"
    settle = timing.steps(s.settle_time - s.settled_record)
    return "\n".join(
        [
            f"# Hopper discharge: {spec.shape}, outlet {spec.outlet * 1e3:.1f} mm, wall angle "
            f"{spec.angle:g} deg, {s.n_particles} particles (seed {s.seed}).",
            "# Fill the bin, settle behind a plug in the outlet plane z = 0, open, discharge;",
            f"# particles below z = {-s.sink_depth:g} m are deleted (the sink).",
            header_section(domain, n_types=1, timing=timing),
            material_section(m, n_types=1),
            walls_section(),
            "fix             gate all wall/gran model hertz tangential history "
            "rolling_friction epsd2 primitive type 1 zplane 0.0",
            _insertion(s, m, fill, every="once"),
            f"region          SINK block INF INF INF INF INF {-s.sink_depth:.6g} units box",
            "",
            "run             1",
            "unfix           ins",
            f"run             {settle - 1}",
            _dumps(timing),
            f"run             {timing.steps(s.settled_record)}",
            "unfix           gate",
            f"run             {timing.steps(s.discharge_time)} every {_SINK_EVERY} "
            '"delete_atoms region SINK compress no"',
            "",
        ]
    )


def _drum_deck(s: DrumScenario, m: Material, timing: Timing) -> str:
    r, half_l = s.radius + m.diameter, s.length / 2 + m.diameter
    domain = (-r, r, -half_l, half_l, -r, r)
    # The region holds every possible sphere centre, so particles_in_region counts the whole
    # bed and insertion waves stop at exactly n_particles.
    fill = (
        f"cylinder y 0.0 0.0 {s.radius - m.radius / 2:.6g} "
        f"{-(s.length - m.radius) / 2:.6g} {(s.length - m.radius) / 2:.6g}"
    )
    wave = timing.steps(_INSERT_WAVE_S)
    insert_steps = timing.steps(s.settle_time / 2)
    period = 60.0 / s.rpm
    return "\n".join(
        [
            f"# Rotating drum: radius {s.radius * 1e3:.1f} mm, length {s.length * 1e3:.1f} mm, "
            f"{s.n_particles} particles, {s.rpm:g} rpm (seed {s.seed}).",
            "# Fill in waves, settle, label the half x < 0 as type 2, rotate about +y.",
            header_section(domain, n_types=2, timing=timing),
            material_section(m, n_types=2),
            walls_section(),
            _insertion(s, m, fill, every=str(wave)),
            "",
            f"run             {insert_steps}",
            "unfix           ins",
            f"run             {timing.steps(s.settle_time) - insert_steps}",
            "region          left block INF 0.0 INF INF INF INF units box",
            "set             region left type 2",
            "fix             spin all move/mesh mesh walls_mesh rotate origin 0.0 0.0 0.0 "
            f"axis 0.0 1.0 0.0 period {period:.6g}",
            _dumps(timing),
            f"run             {timing.steps(s.rotation_time)}",
            "",
        ]
    )


def header_section(domain: tuple[float, ...], n_types: int, timing: Timing) -> str:
    bounds = " ".join(f"{v:.6g}" for v in domain)
    return f"""
atom_style      granular
atom_modify     map array
boundary        f f f
newton          off
communicate     single vel yes
units           si
region          domain block {bounds} units box
create_box      {n_types} domain
neighbor        0.001 bin
neigh_modify    delay 0
timestep        {timing.dem_dt:g}
fix             gravity all gravity {GRAVITY:g} vector 0.0 0.0 -1.0
thermo_style    custom step atoms ke
thermo          {timing.steps_per_frame * 100}
thermo_modify   lost error norm no"""


def material_section(m: Material, n_types: int) -> str:
    """Identical properties for every type (the drum's two types differ only by label)."""
    n, pairs = n_types, n_types**2
    return f"""
# Material: r = {m.radius:g} m, density {m.density:g} kg/m3
fix             m1 all property/global youngsModulus peratomtype {_repeat(m.youngs_modulus, n)}
fix             m2 all property/global poissonsRatio peratomtype {_repeat(m.poisson_ratio, n)}
fix             m3 all property/global coefficientRestitution peratomtypepair {n} &
                {_repeat(m.restitution, pairs)}
fix             m4 all property/global coefficientFriction peratomtypepair {n} &
                {_repeat(m.friction, pairs)}
fix             m5 all property/global coefficientRollingFriction peratomtypepair {n} &
                {_repeat(m.rolling_friction, pairs)}
pair_style      gran model hertz tangential history rolling_friction epsd2
pair_coeff      * *
fix             integrate all nve/sphere"""


def _repeat(value: float, count: int) -> str:
    return " ".join([f"{value:g}"] * count)


def walls_section() -> str:
    return """
fix             walls_mesh all mesh/surface file walls.stl type 1
fix             walls all wall/gran model hertz tangential history rolling_friction epsd2 &
                mesh n_meshes 1 meshes walls_mesh"""


def _insertion(s, m: Material, region: str, every: str) -> str:
    p1, p2, p3 = (liggghts_seed(3 * s.seed + k) for k in range(3))
    return f"""
fix             template all particletemplate/sphere {p1} atom_type 1 &
                density constant {m.density:g} radius constant {m.radius:g}
fix             distribution all particledistribution/discrete {p2} 1 template 1.0
region          fill {region} units box
fix             ins all insert/pack seed {p3} distributiontemplate distribution maxattempt 500 &
                insert_every {every} overlapcheck yes all_in yes vel constant 0.0 0.0 0.0 &
                particles_in_region {s.n_particles} region fill"""


def liggghts_seed(n: int) -> int:
    """A distinct prime above 10000 for every n >= 0 (LIGGGHTS rejects other seeds)."""
    candidate = 10_007 + 1_000 * n
    while any(candidate % d == 0 for d in range(2, int(candidate**0.5) + 1)):
        candidate += 1
    return candidate


def _dumps(timing: Timing) -> str:
    # One file per frame, rows sorted by id, positions with 10 significant digits.
    every = timing.steps_per_frame
    return f"""
dump            frames all custom {every} {DUMP_PATTERN} id type x y z vx vy vz radius
dump_modify     frames sort id format "%d %d %.10g %.10g %.10g %.7g %.7g %.7g %g\""""
