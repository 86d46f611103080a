"""Errors a user can cause (bad file, wrong units, missing binary).

The CLI turns every `BgnnError` into one line on stderr and its `exit_code`; anything else is a
bug and keeps its traceback. Exit codes: 1 an error in the input or the environment, 2 a usage
error (the command line itself; click's own, see bgnn_cli.app), 3 a check that ran and failed
(`bgnn compare --fail-above`).
"""


class BgnnError(Exception):
    """Base class for errors caused by the user's input or environment."""

    exit_code = 1


class MeshError(BgnnError):
    """A geometry file that cannot be used as walls (unreadable, empty, NaN, degenerate, units)."""


class DumpError(BgnnError):
    """A LIGGGHTS dump that is truncated, empty or inconsistent."""


class TrajectoryError(BgnnError):
    """An HDF5 trajectory that is missing, of a wrong format or version, or corrupt."""


class OutputExistsError(BgnnError):
    """An output path exists and overwriting it was not asked for (`--force`)."""


class DemError(BgnnError):
    """LIGGGHTS is missing, or a LIGGGHTS run failed (with the relevant lines of its log)."""


class DatasetError(BgnnError):
    """A dataset folder without a readable manifest of this format."""


class ConfigError(BgnnError):
    """A configuration file that cannot be read or names unknown settings."""


class OutputError(BgnnError):
    """An output folder or file that cannot be written (missing, read-only, not a folder)."""


class LimitExceededError(BgnnError):
    """`bgnn compare --fail-above`: the comparison ran, and a metric broke its limit."""

    exit_code = 3
