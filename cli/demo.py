"""One-command demo (``make demo``): synthetic benchmark -> features -> LOSO training -> report.

    python -m softnet_cli.demo OUT_DIR [--seed N]    (python -m cli.demo in a checkout)

Steps, all offline on the CPU:

1. ``flowkit.synth`` at its defaults: 3 subjects x 2 videos of 20 s at 30 fps, each with 3
   macro- and 3 micro-like events;
2. ``flowkit.pipeline.extract`` with its ``--fast`` TV-L1 preset (``flowkit.pipeline.extract.FAST_TVL1``: 3 scales,
   2 warps, 10 inner iterations) and 1 outer iteration instead of 2 (OpenCV's defaults are
   5/5/30/10). NOT SPEC-exact: far fewer iterations than the defaults, so the demo runs in minutes; the synthetic
   motion is smooth and a few pixels large, which the coarse solve resolves. Once per k (k
   derived per type from the annotations, SPEC 2);
3. ``spotnet.training.train_loso`` (macro and micro, pooled as overall) with the paper's recipe;
4. prints the Table-2-like summary and the path of ``OUT_DIR/run/report.html``.

Each step reuses what a previous (interrupted) run left in OUT_DIR. The MediaPipe model is taken
from ``../shared/models/face_landmarker.task`` when ``FLOWKIT_MEDIAPIPE_MODEL`` is unset and that
file exists, so no download is needed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

__all__ = ["run_demo", "main"]

#: The demo's change to flowkit's --fast preset: one outer iteration, half the solver's work again.
DEMO_TVL1 = {"outer_iterations": 1}
SHARED_MODEL = Path(__file__).resolve().parents[2] / "shared" / "models" / "face_landmarker.task"


def run_demo(out_dir: str | os.PathLike, *, seed: int = 0) -> Path:
    """Run every step into ``out_dir``; return the report path."""
    from flowkit.synth import make_synthetic_dataset
    from spotnet.training import train_loso

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if "FLOWKIT_MEDIAPIPE_MODEL" not in os.environ and SHARED_MODEL.is_file():
        os.environ["FLOWKIT_MEDIAPIPE_MODEL"] = str(SHARED_MODEL)
    t0 = time.perf_counter()
    synth = out / "synth"
    if not (synth / "annotations.csv").is_file():
        print(f"[1/3] synthetic benchmark -> {synth}", flush=True)
        make_synthetic_dataset(synth, seed=seed)
    store = out / "features.zarr"
    print(f"[2/3] features (fast TV-L1 preset) -> {store}  [{time.perf_counter() - t0:.0f} s]", flush=True)
    _extract(synth, store, synth / "annotations.csv")
    print(f"[3/3] leave-one-subject-out training -> {out / 'run'}  [{time.perf_counter() - t0:.0f} s]", flush=True)
    result = train_loso(store, expression="all", out_dir=out / "run", seed=seed)
    print(result.format_table())
    print(f"done in {time.perf_counter() - t0:.0f} s")
    report = (out / "run" / "report.html").resolve()
    print(report)
    return report


def _extract(videos: Path, store: Path, annotations: Path) -> None:
    """flowkit extraction with its ``--fast`` preset; k per type derived from the annotations."""
    from flowkit.errors import FlowkitError
    from flowkit.pipeline.extract import FAST_TVL1, extract

    report = extract([videos], store, annotations=annotations, flow_params={**FAST_TVL1, **DEMO_TVL1})
    print(report.summary(), flush=True)
    if not report.ok:
        bad = report.failures[0]
        raise FlowkitError(f"every synthetic video should be extracted, got {bad.video_id}: {bad.message}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m softnet_cli.demo", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="output folder (reused on a rerun)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from .entry import USER_ERRORS, one_sentence

    try:
        run_demo(args.out_dir, seed=args.seed)
    except USER_ERRORS as exc:
        print(f"demo: error: {one_sentence(exc)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
