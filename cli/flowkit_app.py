"""``flowkit`` command line: a thin typer layer over :mod:`flowkit`.

Bad input (:class:`flowkit.errors.FlowkitError`, file-system errors) becomes one sentence on
stderr and exit code 2, in :func:`cli.entry.run_app`. Videos that fail during ``extract`` (no face, unreadable)
do not stop the others; the run then ends with a summary and exit code 1.

New commands are added with ``@app.command("name")`` in this module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from . import extract_options as opt
from .entry import new_app, run_app

__all__ = ["app", "main"]

app = new_app("flowkit", "SOFTNet feature extraction: face crops, TV-L1 optical flow and features into a Zarr store.")


@app.command("extract")
def extract_cmd(
    input: Path = typer.Argument(..., help="Video file, image folder, or dataset folder (CAS(ME)^2 rawpic, SAMM-LV)."),
    out: Path = typer.Argument(..., help="Zarr store to create or resume (out.zarr)."),
    k: Optional[List[int]] = typer.Option(None, "--k", help="Window length k (repeatable). Default: derived "
                                          "per expression type from --annotations (SPEC 2)."),
    annotations: Optional[Path] = typer.Option(None, "--annotations", help="CAS(ME)^2 / SAMM-LV workbook (.xlsx) "
                                               "or CSV (video, subject, onset, apex, offset, type; 1-based)."),
    landmarks: opt.LandmarkBackend = "mediapipe",
    model: opt.landmark_model_option("--model") = None,
    flow_backend: opt.FlowBackend = "auto",
    flow_impl: opt.FlowImpl = "auto",
    device: opt.Device = None,
    gpu: opt.Gpu = False,
    workers: opt.Workers = None,
    save_flow: bool = typer.Option(False, "--save-flow", help="Also store the (windows, 2, 128, 128) flow."),
    fast: bool = typer.Option(False, "--fast", help="Reduced TV-L1 for demos: nscales 3, warps 2, inner 10, "
                              "outer 2 iterations. NOT SPEC-exact (SPEC: 5, 5, 30, 10)."),
    chunk_windows: int = typer.Option(64, "--chunk-windows", help="Windows per stored chunk (the unit of resume)."),
    batch_windows: opt.BatchWindows = None,
    scheduler: opt.Scheduler = None,
    unit_windows: opt.UnitWindows = None,
    decoders: opt.Decoders = None,
    as_released: opt.AsReleased = False,
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    as_json: bool = typer.Option(False, "--json", help="Print the report (videos, pairs, stage timings) as JSON."),
    no_face_check: bool = typer.Option(False, "--no-face-check", help="Skip looking for the face in up to 200 "
                                       "frames of each new video after the run (one more decode of it), which names "
                                       "videos whose face is lost for more than 10% of their frames."),
) -> None:
    """Extract SOFTNet features of every video under INPUT into OUT (resumes an interrupted run)."""
    from flowkit.pipeline.extract import FAST_TVL1, extract

    options = opt.extract_kwargs(flow_backend=flow_backend, device=device, gpu=gpu, landmarks=landmarks,
                                 landmark_model=model, workers=workers, batch_windows=batch_windows,
                                 flow_impl=flow_impl)
    report = extract([input], out, ks=k or None, annotations=annotations, **options, save_flow=save_flow,
                     flow_params=dict(FAST_TVL1) if fast else None, chunk_windows=chunk_windows, scheduler=scheduler,
                     unit_windows=unit_windows, decoders=decoders, progress=not quiet, as_released=as_released,
                     face_check=not no_face_check)
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.summary())
    if report.failures:
        typer.echo(f"flowkit: {len(report.failures)} video(s) not extracted: "
                   + "; ".join(f"{v.video_id} ({v.message})" for v in report.failures), err=True)
        raise typer.Exit(1)


@app.command("info")
def info_cmd(
    store: Path = typer.Argument(..., help="Zarr store written by 'flowkit extract'."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the videos of a store: subject, frames, k values, windows, completeness, backend."""
    from flowkit.io.store import FeatureStore

    fs = FeatureStore(store, mode="r")
    summary = fs.summary()
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    typer.echo(f"{summary['path']}: schema {summary['schema_version']}, flowkit {summary['flowkit_version']}, "
               f"{len(summary['videos'])} video(s), k_by_type {summary.get('k_by_type') or '-'}")
    if summary["unchecksummed_arrays"]:
        typer.echo(f"{summary['unchecksummed_arrays']} array(s) lack checksums (written by an older flowkit), so "
                   "damage inside their chunks can go unnoticed; 'flowkit verify --repair' adds them")
    typer.echo(f"{'video':30} {'subject':10} {'frames':>7} {'ann':>4} {'k':>4} {'windows':>8} {'state':>10}  backend")
    for v in summary["videos"]:
        rows = v["ks"] or [None]
        for entry in rows:
            if entry is None:
                tail = f"{'-':>4} {'-':>8} {'no k':>10}"
            else:
                state = "complete" if entry["complete"] else f"{entry['chunks_written']}/{entry['n_chunks']}"
                if entry["missing_chunks"]:
                    state = f"{len(entry['missing_chunks'])} lost"
                tail = f"{entry['k']:>4} {entry['n_windows']:>8} {state:>10}  {entry['flow_backend']}"
            typer.echo(f"{v['video'][:30]:30} {str(v['subject'])[:10]:10} {v['n_frames']!s:>7} "
                       f"{v['n_annotations']:>4} {tail}")


@app.command("verify")
def verify_cmd(
    store: Path = typer.Argument(..., help="Zarr store written by 'flowkit extract'."),
    repair: bool = typer.Option(False, "--repair", help="Clear the written flag of every bad chunk, so that "
                                "rerunning 'flowkit extract' recomputes exactly those, and add checksums to arrays "
                                "written without them (takes the writer's lock)."),
) -> None:
    """Read every chunk of a store and report missing, damaged (checksum mismatch) or undecodable ones
    (changes nothing without --repair).

    Exit code 0 when the store is sound, 1 when problems were found.
    """
    from flowkit.io.store import FeatureStore

    with FeatureStore(store, mode="a" if repair else "r") as fs:
        problems = fs.verify()
        for problem in problems:
            typer.echo(str(problem))
        unchecksummed = fs.unchecksummed()
        if repair:
            for vid, k in sorted({(p.video, p.k) for p in problems}):
                fs.unflag_chunks(vid, k, [p.chunk for p in problems if (p.video, p.k) == (vid, k)])
            if unchecksummed:
                problems += fs.upgrade()
                typer.echo(f"added checksums to {len(unchecksummed)} array(s)")
        elif unchecksummed:
            typer.echo(f"flowkit: warning: {len(unchecksummed)} array(s) lack checksums, so damage inside their "
                       "chunks can go unnoticed; run with --repair to add them", err=True)
    if problems:
        what = "cleared; rerun flowkit extract to recompute them" if repair else "run with --repair, then extract"
        typer.echo(f"flowkit: {len(problems)} bad chunk(s) in {store} ({what})", err=True)
        raise typer.Exit(1)
    typer.echo(f"{store}: every chunk of {len(fs.videos())} video(s) reads back")


@app.command("annotations")
def annotations_cmd(
    workbook: Path = typer.Argument(..., help="CAS(ME)^2 / SAMM-LV workbook (.xlsx) or CSV."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
    videos: Optional[Path] = typer.Option(None, "--videos", help="Input root (as for extract): say which annotation "
                                          "videos match its videos."),
) -> None:
    """Show what an annotation file gives: format, intervals, N and k per type, dropped and truncated rows, videos."""
    from flowkit.io.annotations import annotation_summary, format_summary

    summary = annotation_summary(workbook, videos=videos)
    typer.echo(json.dumps(summary, indent=2) if as_json else format_summary(summary))


@app.command("synth")
def synth_cmd(
    out_dir: Path = typer.Argument(..., help="Folder to write: <subject>_<video>/ frame folders and annotations.csv."),
    subjects: int = typer.Option(3, "--subjects", help="Number of subjects (>= 2 for leave-one-subject-out)."),
    videos_per_subject: int = typer.Option(2, "--videos-per-subject"),
    seconds: float = typer.Option(20.0, "--seconds", help="Length of each video."),
    fps: float = typer.Option(30.0, "--fps"),
    seed: int = typer.Option(0, "--seed"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder with the base face videos "
                                            "(default ../shared/data; scikit-image's astronaut when absent)."),
) -> None:
    """Write a synthetic benchmark: long face videos with known macro/micro intervals."""
    from flowkit.synth import make_synthetic_dataset

    intervals = make_synthetic_dataset(out_dir, subjects=subjects, videos_per_subject=videos_per_subject,
                                       seconds=seconds, fps=fps, seed=seed, data_dir=data_dir)
    typer.echo(f"wrote {subjects * videos_per_subject} video(s) with {len(intervals)} intervals; "
               f"annotations: {out_dir / 'annotations.csv'}")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: bad input becomes one line on stderr and exit 2 (cli.entry)."""
    run_app(app, "flowkit", argv)


if __name__ == "__main__":
    main()
