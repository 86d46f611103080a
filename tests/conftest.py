"""Shared fixtures: the repository's meshes and the committed real LIGGGHTS run."""

from __future__ import annotations

from pathlib import Path

import pytest
from bgnn_cli.main import app

REPO = Path(__file__).resolve().parents[1]
MESHES = REPO / "meshes"
LIGGGHTS_HOPPER = Path(__file__).parent / "fixtures" / "liggghts_hopper"


@pytest.fixture
def run_cli(capsys):
    """Run `bgnn ARGS...` in-process; returns (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exit_info:
            app(args=[str(a) for a in args], prog_name="bgnn")
        out, err = capsys.readouterr()
        return exit_info.value.code or 0, out, err

    return run
