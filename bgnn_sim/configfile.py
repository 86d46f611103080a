"""Configuration files: TOML tables mapped onto the typed dataclasses that hold the defaults.

Every configuration dataclass derives from `Checked`: on construction (from a file, a checkpoint,
the command line or code) each field's value is checked against its annotation (int, float, bool,
str, Path, tuples and lists of them, `X | None`) and against the rules declared with its default
by `setting` (bounds, allowed values). A bad value is one ConfigError naming the key, read by the
CLI as one `error:` line, before any work.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import operator
import os
import tomllib
import types
import typing
from pathlib import Path

from bgnn_sim.errors import ConfigError

# The bounds `setting` takes: how each reads in an error message, and its test.
BOUNDS = {
    "at_least": (">=", operator.ge),
    "above": (">", operator.gt),
    "at_most": ("<=", operator.le),
    "below": ("<", operator.lt),
}


def setting(default, *, at_least=None, above=None, at_most=None, below=None, one_of=None):
    """A dataclass field with the values it accepts: bounds (`at_least`, `above`, `at_most`,
    `below`) and/or a tuple of allowed values (`one_of`); None (where the type allows it) always
    passes."""
    bounds = {"at_least": at_least, "above": above, "at_most": at_most, "below": below}
    rules = {name: bound for name, bound in bounds.items() if bound is not None}
    if one_of is not None:
        rules["one_of"] = tuple(one_of)
    return dataclasses.field(default=default, metadata=rules)


class Checked:
    """Base of the configuration dataclasses: fields checked (and an int for a float, a list for
    a tuple, a string for a path converted) when an instance is made."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            kind = _annotations(type(self))[field.name]
            converted = _check(field.name, value, kind, field.metadata)
            if converted is not value:
                object.__setattr__(self, field.name, converted)  # frozen dataclasses too


def read_toml(path: str | Path) -> dict:
    """The tables of a TOML file, or ConfigError naming the file."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the configuration ({exc})") from exc


def subtable(data: dict, name: str, source: str) -> dict:
    """The sub-table `name` of `data` (empty when absent); ConfigError when it is not a table."""
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {name} must be a table ([{name}]), got {value!r}")
    return value


def typed(cls, values: dict, source: str):
    """`cls(**values)` for a dataclass; unknown keys, a missing required key, a wrong type or a
    value out of range are one ConfigError starting with `source` (a typo must not silently fall
    back to a default)."""
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: expected a table of {cls.__name__} settings, got {values!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(
            f"{source}: unknown {cls.__name__} keys {sorted(unknown)}; expected some of "
            f"{sorted(names)}"
        )
    try:
        return cls(**values)
    except (ConfigError, TypeError, ValueError) as exc:
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


@functools.cache
def _annotations(cls) -> dict:
    """The fields' annotations of `cls` as types (the modules use postponed annotations)."""
    return typing.get_type_hints(cls)


class _Mismatch(Exception):
    """A value that is not of the annotated type."""


def _check(name: str, value, kind, rules: typing.Mapping):
    """`value` converted to `kind`, or ConfigError naming `name`, the expected type or rule, and
    the value."""
    try:
        converted = _conform(value, kind)
    except _Mismatch:
        raise ConfigError(f"{name} must be {_describe(kind)}, got {value!r}") from None
    if converted is None:
        return converted
    if "one_of" in rules and converted not in rules["one_of"]:
        allowed = ", ".join(repr(v) for v in rules["one_of"])
        raise ConfigError(f"{name} must be one of {allowed}, got {value!r}")
    for rule, (sign, holds) in BOUNDS.items():
        if rule in rules and not holds(converted, rules[rule]):
            raise ConfigError(f"{name} must be {sign} {rules[rule]:g}, got {value!r}")
    return converted


def _conform(value, kind):
    """`value` as an instance of the annotation `kind` (an int is a fine float, a list a fine
    tuple, a string a fine path); _Mismatch when it is not one. Annotations without a rule here
    (other classes) pass when the value is an instance."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _conform(value, option)
            except _Mismatch:
                pass
        raise _Mismatch
    if origin in (tuple, list):
        if not isinstance(value, tuple | list):
            raise _Mismatch
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):
            items = [_conform(v, args[0]) for v in value] if args else list(value)
        elif len(args) != len(value):
            raise _Mismatch
        else:
            items = [_conform(v, a) for v, a in zip(value, args, strict=True)]
        return origin(items)
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return value if type(value) is int else int(value)
    elif kind is float:
        number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if number and math.isfinite(value):
            return value if type(value) is float else float(value)
    elif kind is Path:
        if isinstance(value, str | os.PathLike):
            return value if isinstance(value, Path) else Path(value)
    elif isinstance(kind, type):
        if isinstance(value, kind):
            return value
    else:
        return value  # an annotation this module has no rule for
    raise _Mismatch


def _describe(kind) -> str:
    """What a value of the annotation `kind` is, for an error message."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args if a is not type(None))
    if origin in (tuple, list):
        if args and (origin is list or args[-1] is Ellipsis):
            return f"a list of {_plural(args[0])}"
        return f"a list of {len(args)} values" if args else "a list"
    names = {bool: "true or false", int: "an integer", float: "a finite number",
             str: "a string", Path: "a path (a string)"}  # fmt: skip
    return names.get(kind, f"a {getattr(kind, '__name__', kind)}")


def _plural(kind) -> str:
    names = {bool: "true/false values", int: "integers", float: "numbers", str: "strings",
             Path: "paths"}  # fmt: skip
    return names.get(kind, "values")
