"""``spotnet`` command line: a thin typer layer over the spotnet library.

Every library error (:class:`spotnet.SpotnetError`) and every file-system error becomes one
sentence on stderr and exit code 2, in :func:`cli.entry.run_app`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from . import extract_options as opt
from .entry import new_app, run_app

__all__ = ["LiveStatusPrinter", "app", "main"]

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
    ap_ranking: str = typer.Option("score", "--ap-ranking", help="AP ranks spotted intervals by score, or "
                                   "'released': not at all, every confidence 0, as the released notebook."),
) -> None:
    """Score spotted intervals against ground truth (MEGC 2020: TP/FP/FN, P/R/F1, AP@[.5:.95])."""
    from spotnet.evaluation import evaluate_csv

    result = evaluate_csv(predictions, ground_truth, ap_ranking=ap_ranking)
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
    backbone: str = typer.Option("softnet", "--backbone", help="Network to train: softnet (the paper's), "
                                 "mobilenet_v2, resnet18, resnet50 or vgg16 (spotnet.models)."),
    parallel_folds: int = typer.Option(None, "--parallel-folds", help="Folds of a type trained side by side, each "
                                       "its own recipe (default: all; 1: one after another; backbones with batch "
                                       "norm or dropout train one at a time)."),
    window_memory: float = typer.Option(0.5, "--window-memory", help="Share of free memory (host, or the GPU's) "
                                        "that a type's windows may take to be held in memory; else they stream."),
    scheduler: str = typer.Option(None, "--scheduler", help="Train the groups of --parallel-folds folds as Dask "
                                  "tasks: tcp://HOST:PORT (workers that see the store and OUT; GPU=1 resource on "
                                  "CUDA) or local:N. Needs the dask extra."),
) -> None:
    """Leave-one-subject-out training and evaluation (resumes the folds in OUT made with the same settings)."""
    from spotnet.training import train_loso

    result = train_loso(store, expression=expression, out_dir=out, epochs=epochs, batch_size=batch_size, lr=lr,
                        p=p, seed=seed, subjects=subjects or None, device=device, progress=not no_progress,
                        control=control, restart=restart, backbone=backbone, parallel_folds=parallel_folds,
                        memory_share=window_memory, scheduler=scheduler)
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
    flow_impl: opt.FlowImpl = "auto",
    device: opt.Device = None,
    gpu: opt.Gpu = False,
    landmarks: opt.LandmarkBackend = "mediapipe",
    landmark_model: opt.landmark_model_option("--landmark-model") = None,
    workers: opt.Workers = None,
    batch_windows: opt.BatchWindows = None,
    as_released: Optional[bool] = typer.Option(
        None, "--as-released/--no-as-released", help="Extract a video with (or without) the released code's JPEG "
        "and cartToPolar round trips; default: as the checkpoints record they were trained."),
    force: bool = typer.Option(False, "--force", help="Spot even when a checkpoint records other TV-L1 parameters "
                               "than the store's or the extraction's (a warning instead of an error)."),
) -> None:
    """Spot macro/micro intervals with trained models (a video is extracted first, as by flowkit extract)."""
    from flowkit.io.atomic import check_writable
    from spotnet.evaluation import write_intervals_csv
    from spotnet.spot import spot_report

    check_writable(out)  # before any extraction, not after
    options = opt.extract_kwargs(flow_backend=flow_backend, device=device, gpu=gpu, landmarks=landmarks,
                                 landmark_model=landmark_model, workers=workers, batch_windows=batch_windows,
                                 flow_impl=flow_impl)
    report = spot_report(model, source, p=p, store_out=store, force=force, **options, as_released=as_released)
    write_intervals_csv(out, report.intervals)
    typer.echo(f"wrote {len(report.intervals)} intervals to {out}")
    if report.failures:
        typer.echo(f"spotnet: {len(report.failures)} video(s) not spotted: "
                   + "; ".join(f"{video} ({why})" for video, why in report.failures), err=True)
        raise typer.Exit(1)


@app.command("live")
def live_cmd(
    model: Path = typer.Argument(..., help="Checkpoint (.pt or released .hdf5), a folder of them, or a run folder."),
    source: str = typer.Argument(..., help="Camera index (0), stream URL (rtsp://, http://) or video file."),
    out: Path = typer.Option(None, "--out", help="Also write the intervals as a CSV at the end (1-based frames)."),
    jsonl: bool = typer.Option(False, "--jsonl", help="One JSON object per interval on stdout, flushed at once."),
    realtime: bool = typer.Option(False, "--realtime", help="Play a video file at its frame rate, as a camera."),
    p: float = typer.Option(0.55, "--p", help="Rule meanmax: threshold position between the history's mean and "
                            "max (SPEC 7)."),
    history: float = typer.Option(60.0, "--history", help="Seconds of smoothed scores the threshold is taken over."),
    warmup: float = typer.Option(2.0, "--warmup", help="Seconds of history before anything is reported."),
    rule: str = typer.Option("quantile", "--rule", help="Threshold rule: quantile (the 0.95 quantile of the "
                             "history) or meanmax (mean + p (max - mean) of the history, the offline rule)."),
    no_face: float = typer.Option(10.0, "--no-face-timeout", help="Stop with an error after this many seconds "
                                  "without a face."),
    flow_backend: opt.FlowBackend = "auto",
    flow_impl: opt.FlowImpl = "auto",
    device: opt.Device = None,
    gpu: opt.Gpu = False,
    landmarks: opt.LandmarkBackend = "mediapipe",
    landmark_model: opt.landmark_model_option("--landmark-model") = None,
    batch_windows: opt.BatchWindows = None,
    quiet: bool = typer.Option(False, "--quiet", help="No status line."),
) -> None:
    """Spot intervals live, printing each as soon as it is confirmed (causal threshold; Ctrl-C ends)."""
    from flowkit.io.atomic import check_writable
    from spotnet.evaluation import EvalInterval, write_intervals_csv
    from spotnet.live import LiveOptions, run_live

    if out is not None:
        check_writable(out)
    found = []
    status = LiveStatusPrinter(enabled=not quiet)

    def report(it) -> None:
        found.append(it)
        status.clear()
        if jsonl:
            typer.echo(json.dumps(it.to_json()))
        else:
            typer.echo(f"{it.type:5} frames {it.onset + 1}-{it.offset + 1} ({it.onset / it.fps:.2f}-"
                       f"{it.offset / it.fps:.2f} s)  score {it.score:.4f}  reported at frame {it.reported_frame + 1}, "
                       f"{it.latency_s:.2f} s after its end")
        sys.stdout.flush()

    options = LiveOptions(p=p, history_s=history, warmup_s=warmup, rule=rule, batch=batch_windows or 8,
                          no_face_s=no_face)
    try:
        run_live(model, source, options=options, realtime=realtime, on_interval=report, on_status=status.show,
                 flow_backend=flow_backend, flow_impl=flow_impl, device=device, gpu=gpu, landmark_backend=landmarks,
                 model_path=landmark_model)
    finally:  # what was found is written, even when the source fails mid-run
        status.clear()
        if out is not None:
            write_intervals_csv(out, [EvalInterval(it.video, it.onset, it.offset, it.type, it.score) for it in found])
    typer.echo(f"spotnet: {len(found)} interval(s) spotted" + (f", written to {out}" if out else ""), err=True)


class LiveStatusPrinter:
    """The one-line status on a terminal, and a one-time warning when the stream outpaces us."""

    def __init__(self, *, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.warned = False
        self.shown = False

    def show(self, status) -> None:
        needed = status.fps * len(status.ks)
        if not self.warned and status.behind_s > 2.0 and status.elapsed_s > 5.0:
            self.clear()
            typer.echo(f"spotnet: warning: cannot keep up: {status.pairs_per_s:.1f} pairs/s computed against "
                       f"{needed:.1f} arriving ({status.realtime_factor:.2f}x real time); reports lag "
                       f"{status.behind_s:.1f} s and the lag grows", err=True)
            self.warned = True
        if self.enabled:
            sys.stderr.write("\r" + status.line())
            sys.stderr.flush()
            self.shown = True

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self.shown = False


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: bad input becomes one line on stderr and exit 2 (cli.entry)."""
    run_app(app, "spotnet", argv)


if __name__ == "__main__":
    main()
