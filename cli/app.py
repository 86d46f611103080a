"""The `bgnn` Typer app: every failure a user can cause ends in one `error:` line.

Exit codes (README, "Exit codes"):
    0  success
    1  an error in the input or the environment (a file, a folder, a value bgnn checked)
    2  a usage error: the command line itself (unknown option, missing argument, a value of
       the wrong type, out of its range, or not one of its choices)
    3  `bgnn compare --fail-above`: the comparison ran and a metric broke its limit
"""

from __future__ import annotations

import errno

import typer

from bgnn_sim.errors import BgnnError

EXIT_ERROR = 1
# Failures of the machine rather than of bgnn: a read-only folder, a full disk.
_ENVIRONMENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}
# click's base error, wherever this Typer takes click from (its own copy since 0.26).
ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class App(typer.Typer):
    """A Typer app that turns user errors into one line on stderr and their exit code."""

    def __call__(self, *args, **kwargs):
        try:
            result = super().__call__(*args, standalone_mode=False, **kwargs)
        except ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # `bgnn` alone: the help, as asked
                typer.echo(exc.format_message(), err=True)
                raise SystemExit(exc.exit_code) from None
            fail(exc.format_message() + _help_hint(exc), exc.exit_code)
        except typer.Abort:
            fail("aborted", EXIT_ERROR)
        except BgnnError as exc:
            fail(str(exc), exc.exit_code)
        except OSError as exc:
            if exc.errno not in _ENVIRONMENT_ERRNOS:
                raise
            fail(f"{exc.filename or 'an output'}: {exc.strerror}", EXIT_ERROR)
        raise SystemExit(result if isinstance(result, int) else 0)


def fail(message: str, code: int) -> None:
    """Print `error: message` as one line on stderr and exit with `code`."""
    typer.echo("error: " + " ".join(str(message).split()), err=True)
    raise SystemExit(code) from None


def _help_hint(exc: Exception) -> str:
    context = getattr(exc, "ctx", None)
    return f" (see '{context.command_path} --help')" if context is not None else ""
