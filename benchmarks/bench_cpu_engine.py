"""``flowkit extract`` as a command against a hand-written reference on decoder-bound input.

Input: 900 grayscale JPEG frames of 2040x1088 (SAMM-LV's size), the shared face video scaled up
and played back and forth. Both sides use 2 processes, ``--fast`` TV-L1 (``FAST_TVL1``), k = 6:

- ``flowkit``: ``flowkit extract IN OUT --k 6 --fast --workers 2 --quiet --json`` in a fresh
  process into a fresh store, timed from start to exit: start-up, face detection, decoding,
  cropping, TV-L1, features, Zarr writes. Its stage timings come from ``--json``.
- ``reference``: this file's ``--reference`` in a fresh process: a pool of 2 forked processes,
  each decoding its half of the frames once (plus k frames of overlap), cropping flowkit's box and
  running OpenCV's DualTVL1 with the same parameters on every pair; no features, no store.

The ratio is the reference's wall time over flowkit's (1.0: flowkit as fast as the reference).

Run:
    pytest benchmarks/bench_cpu_engine.py --benchmark-only -s \
        --benchmark-json=benchmarks/results/cpu_engine_<machine>.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = (REPO / ".." / "shared").resolve()
VIDEO = SHARED / "data" / "WolfgangLanger_Pexels.mp4"
MODEL = SHARED / "models" / "face_landmarker.task"
FRAMES, SIZE, K, WORKERS = 900, (2040, 1088), 6, 2
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))

pytestmark = pytest.mark.skipif(not (VIDEO.is_file() and MODEL.is_file()), reason=f"{VIDEO} or {MODEL} is absent")


def write_frames(folder: Path, n: int = FRAMES, size: tuple[int, int] = SIZE) -> Path:
    """``n`` grayscale JPEGs (quality 90) img1.jpg ... of the video scaled to ``size``, played
    forwards then backwards as often as needed."""
    folder.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(VIDEO))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(cv2.resize(frame, size, interpolation=cv2.INTER_CUBIC), cv2.COLOR_BGR2GRAY))
    cap.release()
    order = list(range(len(frames))) + list(range(len(frames) - 2, 0, -1))
    for i in range(n):
        cv2.imwrite(str(folder / f"img{i + 1}.jpg"), frames[order[i % len(order)]], [cv2.IMWRITE_JPEG_QUALITY, 90])
    return folder


# ---------------------------------------------------------------------- the reference
_PARAMS: dict = {}


def _reference_part(job) -> int:
    files, box, k, start, stop = job
    cv2.setNumThreads(1)
    p = _PARAMS
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create(
        tau=p["tau"], lambda_=p["lambda_"], theta=p["theta"], nscales=p["nscales"], warps=p["warps"],
        epsilon=p["epsilon"], innnerIterations=p["inner_iterations"], outerIterations=p["outer_iterations"],
        scaleStep=p["scale_step"], gamma=p["gamma"], medianFiltering=p["median_filtering"], useInitialFlow=False)
    x0, y0, x1, y1 = box
    crops = [cv2.resize(cv2.imread(f, cv2.IMREAD_UNCHANGED)[y0:y1, x0:x1], (128, 128),
                        interpolation=cv2.INTER_LINEAR) for f in files[start:stop + k]]
    for i in range(stop - start):
        tvl1.calc(crops[i], crops[i + k], None)
    return stop - start


def reference(folder: Path, box, *, k: int = K, workers: int = WORKERS) -> int:
    """Pairs (i, i + k) of the folder's frames, decoded once, cropped and solved on ``workers``
    forked processes; returns the pairs solved."""
    from flowkit.flow.params import check_params
    from flowkit.pipeline.extract import FAST_TVL1

    _PARAMS.update(check_params(dict(FAST_TVL1)).to_dict())
    files = sorted((str(p) for p in folder.glob("*.jpg")), key=lambda f: int(Path(f).stem[3:]))
    n = len(files) - k
    cuts = [round(n * w / workers) for w in range(workers + 1)]
    jobs = [(files, tuple(box), k, cuts[w], cuts[w + 1]) for w in range(workers)]
    with get_context("fork").Pool(workers) as pool:
        return sum(pool.map(_reference_part, jobs))


# ---------------------------------------------------------------------- the two commands
def flowkit_command(folder: Path, store: Path) -> tuple[float, dict]:
    """Wall seconds of ``flowkit extract`` in a fresh process, and its --json report."""
    code = "import sys; from cli.flowkit_app import main; main(sys.argv[1:])"
    cmd = [sys.executable, "-c", code, "extract", str(folder), str(store), "--k", str(K), "--fast", "--workers",
           str(WORKERS), "--quiet", "--json", "--model", str(MODEL)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return seconds, json.loads(done.stdout)


def reference_command(folder: Path, box) -> tuple[float, int]:
    cmd = [sys.executable, __file__, "--reference", str(folder), "--box", *map(str, box)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return seconds, int(done.stdout.split()[-1])


def measure(folder: Path, work: Path, rounds: int = ROUNDS) -> dict:
    """Alternating rounds of both commands; medians and their ratio."""
    from flowkit.io.store import FeatureReader

    runs = {"flowkit": [], "reference": []}
    reports = []
    box = None
    for r in range(rounds):
        seconds, report = flowkit_command(folder, work / f"r{r}.zarr")
        runs["flowkit"].append(round(seconds, 3))
        reports.append(report)
        if box is None:
            reader = FeatureReader(work / f"r{r}.zarr")
            box = reader.video_attrs(reader.videos()[0])["crop_box"]
        seconds, pairs = reference_command(folder, box)
        assert pairs == report["pairs"] == FRAMES - K
        runs["reference"].append(round(seconds, 3))
    med = {name: float(np.median(v)) for name, v in runs.items()}
    return {"rounds": runs, "median_s": med, "ratio": round(med["reference"] / med["flowkit"], 3),
            "pairs": FRAMES - K, "box": box, "stages": [r["stages"] for r in reports],
            "flowkit_seconds_reported": [r["seconds"] for r in reports]}


def test_cpu_engine_vs_reference(benchmark, tmp_path):
    cached = os.environ.get("BENCH_FRAMES_DIR")  # a folder of this file's frames, kept between runs
    if cached and len(list(Path(cached).glob("*.jpg"))) == FRAMES:
        folder = Path(cached)
    else:
        folder = write_frames(Path(cached) if cached else tmp_path / "frames" / "samm_like")
    out = {}

    def run():
        out.update(measure(folder, tmp_path))

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(out, frames=FRAMES, size=list(SIZE), k=K, workers=WORKERS, tvl1="FAST_TVL1",
                                jpeg="grayscale, quality 90", cpu_count=os.cpu_count(),
                                load_average=list(os.getloadavg()))
    print(f"\nflowkit extract {out['median_s']['flowkit']:.2f} s, reference {out['median_s']['reference']:.2f} s: "
          f"ratio {out['ratio']:.3f}; stages {out['stages'][-1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, help="run the reference on this folder and print its pairs")
    parser.add_argument("--box", type=int, nargs=4)
    args = parser.parse_args()
    print(reference(args.reference, args.box))


if __name__ == "__main__":
    main()
