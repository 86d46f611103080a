"""Configuration files: TOML tables mapped onto the typed dataclasses that hold the defaults."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

from bgnn_sim.errors import ConfigError


def read_toml(path: str | Path) -> dict:
    """The tables of a TOML file, or ConfigError naming the file."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the configuration ({exc})") from exc


def typed(cls, values: dict, source: str):
    """`cls(**values)` for a dataclass; unknown keys and bad values are ConfigErrors (a typo
    must not silently fall back to a default)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(
            f"{source}: unknown {cls.__name__} keys {sorted(unknown)}; expected some of "
            f"{sorted(names)}"
        )
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def write_toml(path: str | Path, table: dict) -> None:
    """Write a table of scalars and one level of sub-tables as TOML. None values are left out:
    TOML has no null, and reading the file back gives their default."""
    lines = _assignments({k: v for k, v in table.items() if not isinstance(v, dict)})
    for name, sub in table.items():
        if isinstance(sub, dict):
            lines += ["", f"[{name}]", *_assignments(sub)]
    Path(path).write_text("\n".join(lines) + "\n")


def _assignments(table: dict) -> list[str]:
    return [f"{key} = {_toml(value)}" for key, value in table.items() if value is not None]


def _toml(value) -> str:
    """A scalar as TOML (booleans lower case, strings double-quoted with escapes)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)
