"""The console-script entry shared by ``flowkit`` and ``spotnet``: bad input is one line, exit 2.

Library errors (:class:`flowkit.errors.FlowkitError`, :class:`spotnet.errors.SpotnetError`) and
file-system errors become ``<prog>: error: <one sentence>`` on stderr and exit code 2, and so do
usage errors (an unknown option, a missing argument); warnings are one line each. SIGINT and
SIGTERM stop the command (the extraction driver kills its workers) with one line and exit code
130 or 143. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import signal
import sys
import warnings

import typer

try:  # typer vendors click from 0.2x on; before, it uses click itself
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer
    from click import exceptions as click_errors

from flowkit.errors import FlowkitError
from flowkit.native_logs import VERBOSE_ENV
from spotnet.errors import SpotnetError

__all__ = ["USER_ERRORS", "new_app", "one_sentence", "run_app", "usage_sentence"]

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


#: The signals received, in order (the first one is reported).
_SIGNALS: list[str] = []


def _interrupt(signum, frame) -> None:
    name = signal.Signals(signum).name
    _SIGNALS.append(name)
    raise KeyboardInterrupt(name)


def _stopped(prog: str, name: str) -> None:
    """After SIGINT or SIGTERM: one line, and the shell's code for death by that signal (130, 143)."""
    typer.echo(f"{prog}: stopped by {name}; what was complete is kept, and the same command resumes", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # Every finally block has run (the interrupt unwound the command); the interpreter's own
    # teardown of torch, cv2 and zarr adds about a second, so it is skipped, except for
    # multiprocessing's exit hook, which releases the stopped pools' semaphores (without it the
    # resource tracker warns about them).
    # The pools' forkserver, idle now, is ended too (its own teardown of torch would take as long).
    from multiprocessing import forkserver, util

    util._exit_function()
    server = getattr(getattr(forkserver, "_forkserver", None), "_forkserver_pid", None)
    if server:
        try:
            os.kill(server, signal.SIGKILL)
        except OSError:
            pass
    os._exit(128 + signal.Signals[name].value)


def usage_sentence(exc: click_errors.UsageError) -> str:
    """A usage error as one sentence that points to the command's help.

    >>> usage_sentence(click_errors.UsageError("No such option: --bogus"))
    'No such option: --bogus'
    """
    text = " ".join(exc.format_message().split()).rstrip(".")
    return f"{text}; see '{exc.ctx.command_path} --help'" if exc.ctx is not None else text


def run_app(app: typer.Typer, prog: str, argv: list[str] | None = None) -> None:
    """Run a typer app as the console script ``prog``; user errors exit 2 with one line on stderr."""

    def one_line_warning(message, category, filename, lineno, line=None) -> str:
        return f"{prog}: warning: {' '.join(str(message).split())}\n"

    warnings.formatwarning = one_line_warning
    # SIGTERM (timeout, scancel, docker stop) stops the run like Ctrl-C: queued work is cancelled,
    # workers are killed, what is complete is kept, and the exit code is non-zero.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        # Not standalone: click's usage errors come here, to be one sentence instead of a framed box.
        code = app(args=argv, prog_name=prog, standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:  # the bare command: its help
        typer.echo(exc.ctx.get_help())
        sys.exit(2)
    except click_errors.UsageError as exc:
        typer.echo(f"{prog}: error: {usage_sentence(exc)}", err=True)
        sys.exit(2)
    except click_errors.ClickException as exc:
        typer.echo(f"{prog}: error: {' '.join(exc.format_message().split())}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:  # end of input at a prompt
        sys.exit(1)
    except KeyboardInterrupt:  # raised outside the command (typer turns it into exit code 130 inside)
        _stopped(prog, (_SIGNALS or ["SIGINT"])[0])
    except USER_ERRORS as exc:
        typer.echo(f"{prog}: error: {one_sentence(exc)}", err=True)
        sys.exit(2)
    if _SIGNALS and code == 130:  # typer's code for an interrupt that ended the command (spotnet live ends itself)
        _stopped(prog, _SIGNALS[0])
    sys.exit(code if isinstance(code, int) else 0)  # as click's standalone mode: always a SystemExit
