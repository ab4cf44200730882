"""One-command demo (``make demo``): synthetic benchmark -> features -> LOSO training -> report.

    python -m cli.demo OUT_DIR [--quick]

Steps, all offline on the CPU:

1. ``flowkit.synth``: 3 subjects x 2 videos of 16 s at 30 fps with macro- and micro-like events;
2. ``flowkit.extract`` with a fast TV-L1 preset (3 scales, 2 warps, 10 inner and 1 outer
   iterations instead of OpenCV's 5/5/30/10: about 7x faster on 128x128 crops; the synthetic
   motion is smooth and a few pixels large, which the coarse solve resolves), once per k;
3. ``spotnet.training.train_loso`` (macro and micro, pooled as overall) with the paper's recipe;
4. prints the Table-2-like summary and the path of ``OUT_DIR/run/report.html``.

Each step reuses what a previous (interrupted) run left in OUT_DIR. The MediaPipe model is taken
from ``../shared/models/face_landmarker.task`` when ``FLOWKIT_MEDIAPIPE_MODEL`` is unset and that
file exists, so no download is needed.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

#: Fast TV-L1 preset for the demo (TVL1Params field names).
FAST_TVL1 = {"nscales": 3, "warps": 2, "inner_iterations": 10, "outer_iterations": 1}
SHARED_MODEL = Path(__file__).resolve().parents[2] / "shared" / "models" / "face_landmarker.task"
SYNTH = {"subjects": 3, "videos_per_subject": 2, "seconds": 16.0, "fps": 30.0, "seed": 0,
         "macro_per_video": 2, "micro_per_video": 3}


def _k_by_type(annotations: Path) -> dict[str, int]:
    """SPEC 2: k = int((N + 1) / 2), N the mean of offset - onset of the type."""
    spans: dict[str, list[int]] = {}
    with open(annotations, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            spans.setdefault(row["type"], []).append(int(row["offset"]) - int(row["onset"]))
    return {kind: int((sum(v) / len(v) + 1) / 2) for kind, v in spans.items()}


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
        make_synthetic_dataset(synth, **{**SYNTH, "seed": seed})
    ks = _k_by_type(synth / "annotations.csv")
    store = out / "features.zarr"
    print(f"[2/3] features (k {ks}, fast TV-L1 {FAST_TVL1}) -> {store}  [{time.perf_counter() - t0:.0f} s]", flush=True)
    _extract(synth, store, ks, synth / "annotations.csv")
    print(f"[3/3] leave-one-subject-out training -> {out / 'run'}  [{time.perf_counter() - t0:.0f} s]", flush=True)
    result = train_loso(store, expression="all", out_dir=out / "run", seed=seed)
    print(result.format_table())
    print(f"done in {time.perf_counter() - t0:.0f} s")
    report = (out / "run" / "report.html").resolve()
    print(report)
    return report


def _extract(videos: Path, store: Path, ks: dict[str, int], annotations: Path) -> None:
    from flowkit.extract import extract
    from flowkit.sources import discover_videos

    extract(discover_videos(videos), store, ks=sorted(set(ks.values())), annotations=annotations,
            flow_params=FAST_TVL1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cli.demo", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="output folder (reused on a rerun)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from flowkit.errors import FlowkitError
    from spotnet.errors import SpotnetError

    try:
        run_demo(args.out_dir, seed=args.seed)
    except (FlowkitError, SpotnetError, OSError) as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
