"""Configuration checked at the door: a value of a wrong type or out of its range is one error
line naming the key (exit 1) before any work; shipped recipes and checkpoints still load."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from bgnn_sim.app.simulation_config import SimulationConfig
from bgnn_sim.configfile import Checked, setting, typed
from bgnn_sim.dem.config import SETTLED_PACKING, Material, Timing
from bgnn_sim.errors import ConfigError
from bgnn_sim.models.bgnn import BGNNConfig
from bgnn_sim.models.loading import load_model
from bgnn_sim.pretrained import pretrained_model
from bgnn_sim.training.config import LEGACY, LEGACY_MODEL, config_from_dict, load_train_config
from tests.helpers import MESHES

RECIPES = sorted((Path(__file__).parents[1] / "benchmarks" / "recipes").glob("*.toml"))
# Each shipped model and the frame it steps, in seconds (the drum BGNN steps four recorded frames).
SHIPPED_FRAMES = {("hopper", "bgnn"): 4e-3, ("drum", "bgnn"): 4e-3, ("drum", "lamslide"): 5e-3}
SHIPPED = list(SHIPPED_FRAMES)


def _toml(tmp: Path, text: str) -> Path:
    (tmp / "config.toml").write_text(text)
    return tmp / "config.toml"


# Each case writes its inputs in tmp_path and returns (command line, the whole error line).


def _train_type(tmp):
    config = _toml(tmp, 'steps = "100"\n')
    args = ["train", tmp / "dataset", "--out", tmp / "run", "--config", config]
    return args, f"{config}: steps must be an integer, got '100'"


def _train_range(tmp):
    config = _toml(tmp, "[model]\nlatent = 0\n")
    args = ["train", tmp / "dataset", "--out", tmp / "run", "--config", config]
    return args, f"{config} [model]: latent must be >= 1, got 0"


def _train_choice(tmp):
    config = _toml(tmp, 'graph_backend = "octree"\n')
    args = ["train", tmp / "dataset", "--out", tmp / "run", "--config", config]
    return args, (f"{config}: graph_backend must be one of 'auto', 'kdtree', 'torch_cluster', "
                  "got 'octree'")  # fmt: skip


def _train_table(tmp):
    config = _toml(tmp, "model = 3\n")
    args = ["train", tmp / "dataset", "--out", tmp / "run", "--config", config]
    return args, f"{config}: model must be a table ([model]), got 3"


def _lamslide_range(tmp):
    config = _toml(tmp, "stride = 0\n")
    args = ["train", tmp / "dataset", "--out", tmp / "run", "--backend", "lamslide",
            "--config", config]  # fmt: skip
    return args, f"{config}: stride must be >= 1, got 0"


def _material_type(tmp):
    config = _toml(tmp, '[material]\nradius = "2 mm"\n')
    args = ["generate", "hopper", "--out", tmp / "run", "--config", config]
    return args, f"{config} [material]: radius must be a finite number, got '2 mm'"


def _timing_range(tmp):
    config = _toml(tmp, "[timing]\nsteps_per_frame = 0\n")
    args = ["generate", "hopper", "--out", tmp / "run", "--config", config]
    return args, f"{config} [timing]: steps_per_frame must be >= 1, got 0"


def _restitution_range(tmp):
    config = _toml(tmp, "[material]\nrestitution = 1.5\n")
    args = ["generate", "drum", "--out", tmp / "run", "--config", config]
    return args, f"{config} [material]: restitution must be <= 1, got 1.5"


def _simulate_range(tmp):
    args = ["simulate", MESHES / "drum.stl", "--rotate", "0", "--out", tmp / "run"]
    return args, "rpm must be > 0, got 0.0"


def _simulate_seed(tmp):
    args = ["simulate", MESHES / "hopper.stl", "--seed", "-1", "--out", tmp / "run"]
    return args, "seed must be >= 0, got -1"


def _simulate_axis(tmp):
    args = ["simulate", MESHES / "drum.stl", "--axis", "w", "--out", tmp / "run"]
    return args, "axis must be one of 'x', 'y', 'z', got 'w'"


CASES = [
    _train_type, _train_range, _train_choice, _train_table, _lamslide_range, _material_type,
    _timing_range, _restitution_range, _simulate_range, _simulate_seed, _simulate_axis,
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.__name__[1:] for c in CASES])
def test_a_bad_setting_is_one_error_line_naming_the_key(run_cli, tmp_path, case):
    args, line = case(tmp_path)
    code, out, err = run_cli(*args)
    assert (code, err) == (1, f"error: {line}\n"), out + err
    assert not (tmp_path / "run").exists()


def test_a_wrong_type_on_the_command_line_is_a_usage_error(run_cli, tmp_path):
    code, _, err = run_cli("simulate", MESHES / "drum.stl", "--rotate", "fast")
    assert code == 2 and "--rotate" in err and "Traceback" not in err


def test_a_simulation_built_in_code_is_checked_too():
    with pytest.raises(ConfigError, match="^vtk_every must be an integer, got '10'$"):
        SimulationConfig(mesh=Path("a.stl"), out=Path("run"), vtk_every="10")
    with pytest.raises(ConfigError, match="^fill_height must be > 0, got -0.1$"):
        SimulationConfig(mesh=Path("a.stl"), out=Path("run"), fill_height=-0.1)
    config = SimulationConfig(mesh="a.stl", out="run", rpm=20, wall_guard=False)
    assert config.mesh == Path("a.stl") and config.rpm == 20.0 and type(config.rpm) is float
    with pytest.raises(ConfigError, match="samples must be >= 1"):
        replace(config, samples=0)


@dataclass(frozen=True)
class _Example(Checked):
    count: int = setting(1, at_least=1)
    share: float | None = setting(None, at_least=0.0, at_most=1.0)
    name: str = setting("a", one_of=("a", "b"))
    flag: bool = False
    span: tuple[float, float] = (0.0, 1.0)
    sizes: tuple[int, ...] = ()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"count": True}, "count must be an integer, got True"),
        ({"count": 1.0}, "count must be an integer, got 1.0"),
        ({"count": 0}, "count must be >= 1, got 0"),
        ({"share": "half"}, "share must be a finite number, got 'half'"),
        ({"share": float("nan")}, "share must be a finite number, got nan"),
        ({"share": 2}, "share must be <= 1, got 2"),
        ({"name": "c"}, "name must be one of 'a', 'b', got 'c'"),
        ({"flag": 1}, "flag must be true or false, got 1"),
        ({"span": [1.0]}, "span must be a list of 2 values, got [1.0]"),
        ({"sizes": [1, "2"]}, "sizes must be a list of integers, got [1, '2']"),
        ({"counts": 1}, "unknown _Example keys ['counts']"),
    ],
)
def test_each_field_is_checked_against_its_type_and_rules(values, message):
    with pytest.raises(ConfigError) as error:
        typed(_Example, values, "example.toml")
    assert str(error.value).startswith(f"example.toml: {message}")


def test_values_are_converted_to_their_field_type():
    example = typed(_Example, {"share": 1, "span": [0, 2], "sizes": [3, 4]}, "example.toml")
    assert (example.share, example.span, example.sizes) == (1.0, (0.0, 2.0), (3, 4))
    assert type(example.share) is float and type(example.span[0]) is float
    assert typed(_Example, {"share": None}, "example.toml").share is None


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_the_shipped_recipes_load(recipe):
    config = load_train_config(recipe)
    written = tomllib.loads(recipe.read_text())
    assert (config.steps, config.lr) == (written["steps"], written["lr"])
    # The [model] table is read, not left at its default (128): ablations change the width.
    assert config.model.latent == written["model"]["latent"] != BGNNConfig().latent


def test_a_checkpoint_config_without_todays_keys_loads_as_the_legacy_recipe():
    config = config_from_dict({"steps": 10, "model": {"latent": 8}}, "old.pt", legacy=True)
    assert config.cutoff_radii == LEGACY["cutoff_radii"] and config.wall_cutoff_radii is None
    assert config.model.wall_channel is LEGACY_MODEL["wall_channel"]


@pytest.mark.parametrize(("kind", "backend"), SHIPPED, ids=["-".join(s) for s in SHIPPED])
def test_the_shipped_checkpoints_load(kind, backend):
    trained = load_model(pretrained_model(kind, backend), "cpu")
    assert trained.method == backend
    timing, material = Timing(**trained.data["timing"]), Material(**trained.data["material"])
    assert timing.frame_dt == pytest.approx(SHIPPED_FRAMES[kind, backend])
    assert material.settled_count(material.particle_volume / SETTLED_PACKING * 100.5) == 100
