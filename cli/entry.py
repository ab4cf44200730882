"""The console-script entry shared by ``flowkit`` and ``spotnet``: bad input is one line, exit 2.

Library errors (:class:`flowkit.errors.FlowkitError`, :class:`spotnet.errors.SpotnetError`) and
file-system errors become ``<prog>: error: <one sentence>`` on stderr and exit code 2; warnings
are one line each. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import signal
import sys
import warnings

import typer

from flowkit.errors import FlowkitError
from flowkit.native_logs import VERBOSE_ENV
from spotnet.errors import SpotnetError

__all__ = ["USER_ERRORS", "new_app", "one_sentence", "run_app"]

#: Errors that describe the user's input or environment, not a bug.
USER_ERRORS = (FlowkitError, SpotnetError, OSError)


def one_sentence(exc: BaseException) -> str:
    """The first line of an error's message, white space folded; OSErrors as "reason: file".

    >>> one_sentence(FileNotFoundError(2, "No such file or directory", "x.csv"))
    'No such file or directory: x.csv'
    >>> one_sentence(FlowkitError("k should be >= 1,\\n  got 0"))
    'k should be >= 1,'
    """
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or type(exc).__name__}: {exc.filename}"
    text = str(exc).strip()
    return " ".join(text.splitlines()[0].split()) if text else type(exc).__name__


def new_app(name: str, help: str) -> typer.Typer:
    """A typer app with the settings both CLIs share: help when called bare, no shell completion,
    plain tracebacks for bugs (user errors never reach them, see :func:`run_app`) and ``--verbose``
    before the command (``flowkit --verbose extract ...``)."""
    app = typer.Typer(name=name, help=help, no_args_is_help=True, add_completion=False,
                      pretty_exceptions_enable=False)

    @app.callback()
    def common(verbose: bool = typer.Option(False, "--verbose", help="Also show the log lines of native "
                                            "libraries (MediaPipe, TFLite, FFmpeg), hidden by default.")) -> None:
        if verbose:
            os.environ[VERBOSE_ENV] = "1"  # worker processes inherit it

    return app


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_app(app: typer.Typer, prog: str, argv: list[str] | None = None) -> None:
    """Run a typer app as the console script ``prog``; user errors exit 2 with one line on stderr."""

    def one_line_warning(message, category, filename, lineno, line=None) -> str:
        return f"{prog}: warning: {' '.join(str(message).split())}\n"

    warnings.formatwarning = one_line_warning
    # SIGTERM (timeout, scancel, docker stop) stops the run like Ctrl-C: what is complete is kept,
    # worker pools shut down, and the exit code is non-zero.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        app(args=argv, prog_name=prog)
    except USER_ERRORS as exc:
        typer.echo(f"{prog}: error: {one_sentence(exc)}", err=True)
        sys.exit(2)
