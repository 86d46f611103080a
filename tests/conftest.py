"""Shared pytest fixtures."""

from __future__ import annotations

import pytest

from bgnn_cli.main import app

# Session fixtures that run the real LIGGGHTS: a tiny dataset, or a model trained on one.
LIGGGHTS_FIXTURES = {"tiny_dataset", "tiny_drum_dataset", "tiny_hopper_model", "tiny_drum_model"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """`liggghts` on every test that uses a LIGGGHTS fixture; `slow` on every `liggghts` test."""
    for item in items:
        if LIGGGHTS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.liggghts)
        if item.get_closest_marker("liggghts"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def run_cli(capsys):
    """Run `bgnn ARGS...` in-process; returns (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exit_info:
            app(args=[str(a) for a in args], prog_name="bgnn")
        out, err = capsys.readouterr()
        return exit_info.value.code or 0, out, err

    return run


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A tiny real hopper dataset (3 LIGGGHTS runs, ~200 particles, ~150 frames each)."""
    from bgnn_sim.dem.generate import generate_dataset

    out = tmp_path_factory.mktemp("tiny_hopper")
    generate_dataset("hopper", 3, str(out), workers=2, seed=0, preset="tiny")  # a str works too
    return out


@pytest.fixture(scope="session")
def tiny_drum_dataset(tmp_path_factory):
    """A tiny real drum dataset (3 LIGGGHTS runs, two particle types, ~150 frames each)."""
    from bgnn_sim.dem.generate import generate_dataset

    out = tmp_path_factory.mktemp("tiny_drum")
    generate_dataset("drum", 3, out, workers=2, seed=0, preset="tiny")
    return out


@pytest.fixture(scope="session")
def tiny_hopper_model(tiny_dataset, tmp_path_factory):
    """model.pt of the TINY config trained a few steps on the tiny hopper dataset."""
    return _train_tiny(tiny_dataset, tmp_path_factory.mktemp("tiny_hopper_model"))


@pytest.fixture(scope="session")
def tiny_drum_model(tiny_drum_dataset, tmp_path_factory):
    """model.pt of the TINY config trained a few steps on the tiny drum dataset."""
    return _train_tiny(tiny_drum_dataset, tmp_path_factory.mktemp("tiny_drum_model"))


def _train_tiny(dataset, out):
    from bgnn_sim.training.distributed import Context
    from bgnn_sim.training.trainer import Trainer
    from tests.helpers import TINY

    Trainer(dataset, out, TINY, Context()).fit()
    return out / "model.pt"
