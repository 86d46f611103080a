"""Checks of option values that need no file: run while the command line is parsed, so that a
bad value is a usage error (exit 2) before any work."""

from __future__ import annotations

import re

import typer

from bgnn_sim.errors import BgnnError

DEVICES = "auto, cpu, cuda or cuda:N"


def check_device(value: str) -> str:
    """--device: auto, cpu, cuda or cuda:N; a GPU asked for must exist (exit 1 when not: the
    machine, not the command line, is wrong)."""
    if value in ("auto", "cpu"):
        return value
    match = re.fullmatch(r"cuda(?::(\d+))?", value)
    if match is None:
        raise typer.BadParameter(f"{value!r} is not a device; use {DEVICES}")
    import torch  # only when a GPU is named: torch is slow to import

    if not torch.cuda.is_available():
        raise BgnnError(f"--device {value} was asked for, but no CUDA GPU is available")
    index, count = int(match.group(1) or 0), torch.cuda.device_count()
    if index >= count:
        raise BgnnError(f"--device {value}: this machine has {count} CUDA GPU(s), cuda:0 to "
                        f"cuda:{count - 1}")  # fmt: skip
    return value


def check_limits(values: list[str] | None) -> list[str] | None:
    """--fail-above METRIC=VALUE: known metric names and numbers, before the comparison runs."""
    from bgnn_sim.app.analyze import parse_limits
    from bgnn_sim.errors import ConfigError

    try:
        parse_limits(values or [])
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    return values
