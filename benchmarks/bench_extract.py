"""End-to-end ``flowkit.pipeline.extract`` rate vs the raw OpenCV TV-L1 rate on the same pairs and cores.

The issue asks for extraction at >= 0.9x the raw rate (pipeline overheads <= 10%): decoding,
face detection, cropping, features, Zarr writes and worker start-up all count against it.

- raw: the same 128x128 crops (box from MediaPipe on frame 0, as extract does), solved with
  SPEC-default TV-L1 (``tvl1_opencv``) in a warm process pool of ``os.cpu_count()`` workers with
  one OpenCV thread each, one pair per task; pool start-up not timed.
- end to end: ``extract()`` of an image folder holding the first N + k frames of
  WolfgangLanger_Pexels.mp4 (N = 48 pairs, k = 6) into a fresh store, same worker count,
  everything timed (landmarker load, pool start-up, decoding, writes).

Run:
    pytest benchmarks/bench_extract.py --benchmark-only -s \
        --benchmark-json=benchmarks/results/extract_cpu_<name>.json
or ``python benchmarks/bench_extract.py [WORKERS [ROUNDS]]`` for a plain printout. Raw and
end-to-end runs alternate (``BENCH_ROUNDS``, default 2) and medians are compared.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
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
PAIRS = 48
K = 6

pytestmark = pytest.mark.skipif(not (VIDEO.is_file() and MODEL.is_file()),
                                reason=f"{VIDEO} or {MODEL} is absent")


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO,
                              check=True).stdout.strip()
    except Exception:  # noqa: BLE001
        return "unknown"


def write_clip(folder: Path, n: int = PAIRS + K) -> Path:
    """The first ``n`` frames of the video as PNGs (lossless, so both paths see the same pixels)."""
    folder.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(VIDEO))
    for i in range(n):
        ok, frame = cap.read()
        if not ok:
            raise RuntimeError(f"{VIDEO} has fewer than {n} frames")
        cv2.imwrite(str(folder / f"img{i + 1}.png"), frame)
    cap.release()
    return folder


def _crops(folder: Path) -> np.ndarray:
    from flowkit.face.crop import clamp_box, crop_face
    from flowkit.face.landmarks.mediapipe_backend import MediaPipeLandmarker

    frames = [cv2.imread(str(folder / f"img{i + 1}.png")) for i in range(PAIRS + K)]
    with MediaPipeLandmarker(MODEL) as lm:
        face = lm.detect(frames[0])
    box = clamp_box(face.box, frames[0].shape[1], frames[0].shape[0])
    return np.stack([crop_face(f, box) for f in frames])


def _init() -> None:
    cv2.setNumThreads(1)


def _solve(pair):
    from flowkit.flow.opencv_tvl1 import tvl1_opencv

    return tvl1_opencv(pair[0], pair[1])


def raw_rate(crops: np.ndarray, workers: int) -> float:
    """Pairs/s of SPEC-default OpenCV TV-L1 alone in a warm pool (one pair per task)."""
    pairs = [(crops[i], crops[i + K]) for i in range(PAIRS)]
    ctx = get_context("spawn")  # leave the forkserver to extract(), which preloads modules into it
    with ctx.Pool(workers, initializer=_init) as pool:
        pool.map(_solve, pairs[:workers], chunksize=1)  # warm: imports, first solve
        t0 = time.perf_counter()
        pool.map(_solve, pairs, chunksize=1)
        return PAIRS / (time.perf_counter() - t0)


def extract_rate(folder: Path, workers: int | None, **options) -> tuple[float, float]:
    """(pairs/s, seconds) of a full extract() into a fresh store."""
    from flowkit.pipeline.extract import extract

    tmp = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    try:
        t0 = time.perf_counter()
        report = extract([folder], tmp / "out.zarr", ks=[K], model_path=MODEL, workers=workers, progress=False,
                         **options)
        seconds = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert report.ok and report.pairs == PAIRS, report.summary()
    return PAIRS / seconds, seconds


def measure(folder: Path, workers: int, rounds: int) -> dict:
    """Alternate raw and end-to-end runs (the machine is shared: interleaving spreads load changes
    over both); medians and the ratio of medians."""
    crops = _crops(folder)
    raws, rates = [], []
    for _ in range(rounds):
        raws.append(raw_rate(crops, workers))
        rates.append(extract_rate(folder, workers)[0])
    raw, rate = float(np.median(raws)), float(np.median(rates))
    return {"raw_opencv_pairs_per_s": raw, "extract_pairs_per_s": rate, "ratio": rate / raw,
            "raw_rounds": raws, "extract_rounds": rates, "workers": workers, "pairs": PAIRS, "k": K,
            "load_avg_1min": os.getloadavg()[0]}


def _line(m: dict) -> str:
    return (f"raw OpenCV TV-L1 {m['raw_opencv_pairs_per_s']:.3f} pairs/s (rounds "
            f"{', '.join(f'{r:.3f}' for r in m['raw_rounds'])}); extract end to end {m['extract_pairs_per_s']:.3f} "
            f"pairs/s (rounds {', '.join(f'{r:.3f}' for r in m['extract_rounds'])}); ratio {m['ratio']:.3f}; "
            f"{m['workers']} workers, {m['pairs']} pairs, k={m['k']}, load {m['load_avg_1min']:.2f}")


def test_extract_vs_raw_opencv(benchmark, tmp_path):
    import torch

    workers = os.cpu_count() or 1
    folder = write_clip(tmp_path / "clip")
    rounds = int(os.environ.get("BENCH_ROUNDS", "2"))
    m = benchmark.pedantic(measure, args=(folder, workers, rounds), rounds=1, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update(
        m, tvl1="SPEC defaults", device="cpu", cpu_count=os.cpu_count(), opencv=cv2.__version__,
        torch=torch.__version__, numpy=np.__version__, python=platform.python_version(), commit=_commit(),
    )
    print("\n" + _line(m))


def main() -> None:
    workers = int(sys.argv[1]) if len(sys.argv) > 1 else (os.cpu_count() or 1)
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    with tempfile.TemporaryDirectory() as tmp:
        print(_line(measure(write_clip(Path(tmp) / "clip"), workers, rounds)))


if __name__ == "__main__":
    main()


def test_extract_torch_cpu_vs_opencv(benchmark, tmp_path):
    """End to end on the CPU, SPEC-default TV-L1, same clip: the torch solver (default layout: one
    solver thread, torch's threads over the cores, batches of a chunk) against OpenCV (one process
    per core). Rounds alternate; medians and their ratio."""
    import torch

    folder = write_clip(tmp_path / "clip")
    rounds = int(os.environ.get("BENCH_ROUNDS", "2"))

    def measure_both():
        cv, th = [], []
        for _ in range(rounds):
            cv.append(extract_rate(folder, None)[0])
            th.append(extract_rate(folder, None, flow_backend="torch")[0])
        return cv, th

    cv, th = benchmark.pedantic(measure_both, rounds=1, iterations=1, warmup_rounds=0)
    m = {"opencv_extract_pairs_per_s": float(np.median(cv)), "torch_extract_pairs_per_s": float(np.median(th)),
         "opencv_rounds": cv, "torch_rounds": th, "pairs": PAIRS, "k": K, "load_avg_1min": os.getloadavg()[0]}
    m["torch_over_opencv"] = m["torch_extract_pairs_per_s"] / m["opencv_extract_pairs_per_s"]
    benchmark.extra_info.update(m, tvl1="SPEC defaults", device="cpu", cpu_count=os.cpu_count(),
                                torch=torch.__version__, opencv=cv2.__version__, commit=_commit())
    print(f"\nextract end to end: OpenCV {m['opencv_extract_pairs_per_s']:.2f} pairs/s, torch "
          f"{m['torch_extract_pairs_per_s']:.2f} pairs/s, ratio {m['torch_over_opencv']:.2f} ({rounds} rounds, "
          f"load {m['load_avg_1min']:.2f})")


def _cuda_rounds(benchmark, inputs, out: Path, rounds: int):
    """``extract(gpu=True)`` at k = 6 and 18 into a fresh store per round, the first round (CUDA
    context, kernel compilation) untimed; returns the last report and the median seconds."""
    from flowkit.pipeline.extract import extract

    def run(i):
        report = extract(inputs, out / f"out{i}.zarr", ks=[6, 18], model_path=MODEL, gpu=True, progress=False)
        assert report.ok, report.summary()
        return report

    run("warm")
    numbers = iter(range(100))
    report = benchmark.pedantic(lambda: run(next(numbers)), rounds=rounds, iterations=1)
    return report, benchmark.stats.stats.median


@pytest.mark.cuda
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_extract_torch_cuda(benchmark, tmp_path):
    """End-to-end ``extract(gpu=True)`` of the whole video file at k = 6 and 18, SPEC-default TV-L1:
    pairs/s including decoding, the landmarker and the Zarr writes. The first round warms
    CUDA (context, kernels) and is not timed."""
    import torch

    report, seconds = _cuda_rounds(benchmark, [VIDEO], tmp_path, rounds=3)
    benchmark.extra_info.update(
        pairs=report.pairs, extract_pairs_per_s=report.pairs / seconds, tvl1="SPEC defaults",
        device=torch.cuda.get_device_name(), torch=torch.__version__, commit=_commit(),
    )
    print(f"\nextract --gpu: {report.pairs} pairs, median {seconds:.2f} s, {report.pairs / seconds:.1f} pairs/s "
          f"on {torch.cuda.get_device_name()}")


@pytest.mark.cuda
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_extract_many_videos_cuda(benchmark, tmp_path):
    """Several videos, two k values, ``extract(gpu=True)``: pairs/s end to end and the solver's idle
    fraction (BatchedEngine: decoder processes feed one solver whose batches span videos and k).
    SPEC-default TV-L1; sizes from BENCH_VIDEOS (default 6) and BENCH_FRAMES (default 200)."""
    import torch

    n_videos = int(os.environ.get("BENCH_VIDEOS", "6"))
    frames = int(os.environ.get("BENCH_FRAMES", "200"))
    write_videos(VIDEO, tmp_path / "videos", n_videos, frames)
    report, seconds = _cuda_rounds(benchmark, [tmp_path / "videos"], tmp_path, rounds=2)
    benchmark.extra_info.update(
        videos=n_videos, frames_per_video=frames, pairs=report.pairs, extract_pairs_per_s=report.pairs / seconds,
        engine=report.engine, tvl1="SPEC defaults", device=torch.cuda.get_device_name(), torch=torch.__version__,
        cpu_count=os.cpu_count(), commit=_commit(),
    )
    print(f"\nextract --gpu, {n_videos} videos x {frames} frames, k 6 and 18: {report.pairs} pairs, median "
          f"{seconds:.2f} s, {report.pairs / seconds:.1f} pairs/s, solver idle "
          f"{report.engine.get('solver_idle_fraction')} on {torch.cuda.get_device_name()}")


def write_videos(video: Path, root: Path, n_videos: int, frames: int) -> list[Path]:
    """``n_videos`` JPEG folders (CAS(ME)^2's layout) of ``frames`` frames each, cut from ``video``
    at different offsets so that each is its own face video."""
    from flowkit.io.sources import open_source

    decoded = list(open_source(video))
    step = max(1, (len(decoded) - frames) // max(1, n_videos - 1))
    folders = []
    for v in range(n_videos):
        folder = root / f"v{v}"
        folder.mkdir(parents=True)
        for i in range(frames):
            cv2.imwrite(str(folder / f"img{i + 1}.jpg"), decoded[min(v * step + i, len(decoded) - 1)])
        folders.append(folder)
    return folders
