"""``spotnet`` command line: a thin typer layer over the spotnet library.

Every library error (:class:`spotnet.SpotnetError`) and every file-system error becomes one
sentence on stderr and exit code 2, in :func:`main`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from spotnet.errors import SpotnetError

app = typer.Typer(
    name="spotnet",
    help="SOFTNet spotting: import released weights, evaluate spotted intervals.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command("import-keras")
def import_keras_cmd(
    weights: Path = typer.Argument(..., help="Keras SOFTNet weights (.hdf5) from the released code."),
    out: Path = typer.Argument(..., help="Checkpoint to write (.pt)."),
) -> None:
    """Convert released Keras SOFTNet weights into a spotnet checkpoint."""
    from spotnet.checkpoint import save_model
    from spotnet.keras_import import import_keras, keras_metadata

    save_model(import_keras(weights), out, metadata=keras_metadata(weights))
    typer.echo(f"wrote {out}")


@app.command("evaluate")
def evaluate_cmd(
    predictions: Path = typer.Argument(..., help="Spotted intervals CSV: video, onset, offset, type[, score]; 1-based frames."),
    ground_truth: Path = typer.Argument(..., help="Ground-truth intervals CSV with the same columns."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Score spotted intervals against ground truth (MEGC 2020: TP/FP/FN, P/R/F1, AP@[.5:.95])."""
    from spotnet.evaluation import evaluate_csv

    result = evaluate_csv(predictions, ground_truth)
    typer.echo(json.dumps(result.to_dict(), indent=2) if as_json else result.format_table())


def _sentence(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        reason = exc.strerror or type(exc).__name__
        return f"{reason}: {exc.filename}"
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: run the app, turning bad input into one line on stderr and exit 2."""
    try:
        app(args=argv, prog_name="spotnet")
    except (SpotnetError, OSError) as exc:
        typer.echo(f"spotnet: error: {_sentence(exc)}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
