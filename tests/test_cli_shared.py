"""What the two CLIs share is declared once: extraction options and the one-line error entry."""

from __future__ import annotations

import pytest
import typer

from cli import flowkit_app, spotnet_app
from cli.entry import new_app, run_app
from flowkit.errors import FlowkitError
from spotnet.errors import SpotnetError

SHARED = ["--flow-backend", "--device", "--gpu", "--landmarks", "--workers", "--batch-windows"]


def _options(app: typer.Typer, command: str) -> dict:
    cmd = typer.main.get_command(app).commands[command]
    return {name: p for p in cmd.params for name in p.opts}


def test_spot_and_extract_share_the_extraction_options():
    extract, spot = _options(flowkit_app.app, "extract"), _options(spotnet_app.app, "spot")
    for flag in SHARED:
        assert extract[flag].help == spot[flag].help and extract[flag].default == spot[flag].default, flag
    # The MediaPipe model is --model for extract, --landmark-model for spot (MODEL is a checkpoint there).
    assert extract["--model"].help == spot["--landmark-model"].help


@pytest.mark.parametrize("error", [FlowkitError("store should exist,\n got none"), SpotnetError("k should be >= 1"),
                                   FileNotFoundError(2, "No such file or directory", "x.csv")])
def test_user_errors_are_one_line_and_exit_2(error, capsys):
    app = new_app("demo", "test app")

    @app.command()
    def fail() -> None:
        raise error

    with pytest.raises(SystemExit) as exit_info:
        run_app(app, "demo", ["fail"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("demo: error: ")


def test_a_bug_keeps_its_traceback():
    app = new_app("demo", "test app")

    @app.command()
    def fail() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        run_app(app, "demo", ["fail"])
