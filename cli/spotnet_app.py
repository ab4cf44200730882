"""``spotnet`` command line: a thin typer layer over the spotnet library.

Every library error (:class:`spotnet.SpotnetError`) and every file-system error becomes one
sentence on stderr and exit code 2, in :func:`cli.entry.run_app`.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cli import extract_options as opt
from cli.entry import new_app, run_app

__all__ = ["app", "main"]

app = new_app("spotnet", "SOFTNet spotting: train with LOSO, spot intervals, evaluate them, import released weights.")


@app.command("import-keras")
def import_keras_cmd(
    weights: Path = typer.Argument(..., help="Keras SOFTNet weights (.hdf5) from the released code."),
    out: Path = typer.Argument(..., help="Checkpoint to write (.pt)."),
    kind: str = typer.Option(None, "--type", help="macro or micro; overrides what the file name says "
                             "(released files are named <dataset>_<type>_<fold>)."),
    k: int = typer.Option(None, "--k", help="The model's window length k; overrides the published k that the "
                          "file name implies (CAS(ME)^2: micro 6, macro 18; SAMM-LV: micro 37, macro 174)."),
) -> None:
    """Convert released Keras SOFTNet weights into a spotnet checkpoint."""
    from spotnet.checkpoint import save_model
    from spotnet.keras_import import import_keras, keras_metadata

    save_model(import_keras(weights), out, metadata=keras_metadata(weights, kind=kind, k=k))
    typer.echo(f"wrote {out}")


@app.command("evaluate")
def evaluate_cmd(
    predictions: Path = typer.Argument(..., help="Spotted intervals CSV: video, onset, offset, type[, score]; "
                                       "1-based frames."),
    ground_truth: Path = typer.Argument(..., help="Ground-truth intervals CSV with the same columns."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Score spotted intervals against ground truth (MEGC 2020: TP/FP/FN, P/R/F1, AP@[.5:.95])."""
    from spotnet.evaluation import evaluate_csv

    result = evaluate_csv(predictions, ground_truth)
    typer.echo(json.dumps(result.to_dict(), indent=2) if as_json else result.format_table())


@app.command("train")
def train_cmd(
    store: Path = typer.Argument(..., help="Feature store from 'flowkit extract --annotations ...'."),
    out: Path = typer.Option(Path("run"), "--out", help="Run folder: folds/, scores/, metrics.json, report.html."),
    expression: str = typer.Option("all", "--expression", help="macro, micro or all (both, pooled as overall)."),
    epochs: int = typer.Option(10, "--epochs"),
    batch_size: int = typer.Option(12, "--batch-size"),
    lr: float = typer.Option(5e-4, "--lr"),
    p: float = typer.Option(0.55, "--p", help="Spotting threshold position (SPEC 7)."),
    seed: int = typer.Option(0, "--seed"),
    subjects: list[str] = typer.Option(None, "--subject", "--subjects", help="Only these held-out subjects "
                                          "(repeatable)."),
    device: str = typer.Option(None, "--device", help="torch device (default: cuda when available, else cpu)."),
    control: str = typer.Option(None, "--control", help="'random': random scores instead of a model "
                                "(sanity baseline)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bars."),
    restart: bool = typer.Option(False, "--restart", help="Train every fold again; without it, folds in OUT made "
                                 "with other settings are refused."),
) -> None:
    """Leave-one-subject-out training and evaluation (resumes the folds in OUT made with the same settings)."""
    from spotnet.training import train_loso

    result = train_loso(store, expression=expression, out_dir=out, epochs=epochs, batch_size=batch_size, lr=lr,
                        p=p, seed=seed, subjects=subjects or None, device=device, progress=not no_progress,
                        control=control, restart=restart)
    typer.echo(result.format_table())
    typer.echo(f"report: {out / 'report.html'}")


@app.command("spot")
def spot_cmd(
    model: Path = typer.Argument(..., help="Checkpoint (.pt), a folder of them, or a 'spotnet train' run folder "
                                 "(fold scores averaged)."),
    source: Path = typer.Argument(..., help="Feature store, or a video / image folder / dataset folder to "
                                  "extract first."),
    out: Path = typer.Option(Path("intervals.csv"), "--out", help="Spotted intervals CSV (1-based frames)."),
    p: float = typer.Option(0.55, "--p", help="Spotting threshold position (SPEC 7)."),
    store: Path = typer.Option(None, "--store", help="Keep the features extracted from a video here (.zarr; "
                               "default: a temporary store)."),
    flow_backend: opt.FlowBackend = "auto",
    device: opt.Device = None,
    gpu: opt.Gpu = False,
    landmarks: opt.LandmarkBackend = "mediapipe",
    landmark_model: opt.landmark_model_option("--landmark-model") = None,
    workers: opt.Workers = None,
    batch_windows: opt.BatchWindows = None,
) -> None:
    """Spot macro/micro intervals with trained models (a video is extracted first, as by flowkit extract)."""
    from flowkit.atomic import check_writable
    from spotnet.evaluation import write_intervals_csv
    from spotnet.spot import spot_report

    check_writable(out)  # before any extraction, not after
    options = opt.extract_kwargs(flow_backend=flow_backend, device=device, gpu=gpu, landmarks=landmarks,
                                 landmark_model=landmark_model, workers=workers, batch_windows=batch_windows)
    report = spot_report(model, source, p=p, store_out=store, **options)
    write_intervals_csv(out, report.intervals)
    typer.echo(f"wrote {len(report.intervals)} intervals to {out}")
    if report.failures:
        typer.echo(f"spotnet: {len(report.failures)} video(s) not spotted: "
                   + "; ".join(f"{video} ({why})" for video, why in report.failures), err=True)
        raise typer.Exit(1)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: bad input becomes one line on stderr and exit 2 (cli.entry)."""
    run_app(app, "spotnet", argv)


if __name__ == "__main__":
    main()
