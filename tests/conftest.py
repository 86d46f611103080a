"""Shared pytest fixtures."""

from __future__ import annotations

import pytest

from bgnn_cli.main import app


@pytest.fixture
def run_cli(capsys):
    """Run `bgnn ARGS...` in-process; returns (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exit_info:
            app(args=[str(a) for a in args], prog_name="bgnn")
        out, err = capsys.readouterr()
        return exit_info.value.code or 0, out, err

    return run
