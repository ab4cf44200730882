"""Decoder-bound inputs and engine scaling of ``flowkit extract`` with the ``--fast`` TV-L1 preset.

Inputs, made once per session in a temporary folder from the first N frames of the shared
WolfgangLanger_Pexels.mp4 (640x360, a real face, so MediaPipe finds it):

- ``jpeg-640x480``: the frames letterboxed to 640x480, JPEG quality 95 (cv2.imwrite);
- ``jpeg-2040x1088``: the frames scaled and letterboxed to 2040x1088, JPEG quality 95;
- ``mp4-640x360``: the first N frames re-encoded with cv2.VideoWriter (mp4v), so that every input
  has the same N frames and the run stays bounded; ``FLOWKIT_BENCH_MP4=shared`` uses the shared
  file itself instead (all its 472 frames, its own codec: 920 pairs per run).

Every run: k = 6 and 18 (SPEC's micro/macro k for CAS(ME)^2 at 30 fps), TV-L1 ``FAST_TVL1``
(``flowkit extract --fast``), so each input has (N - 6) + (N - 18) frame pairs.

Cases (pairs/s = pairs / median seconds of the rounds):

- ``test_decoder_bound[<input>-reference]``: the same work by hand: the face box found once on
  frame 0 as flowkit finds it (MediaPipe, ``find_reference`` + ``clamp_box``) and a spawn Pool of
  2 processes (one OpenCV thread each) started and warmed, neither timed; then, timed: each frame
  decoded once (JPEGs: ``cv2.imread`` in the pool; MP4: ``cv2.VideoCapture`` in this process) and
  cropped with ``crop_face``, and raw ``cv2.optflow.DualTVL1OpticalFlow`` on every pair (i, i + k)
  in the pool. No strain, features, landmarks or store: flowkit does all of those on top.
- ``test_decoder_bound[<input>-flowkit]``: ``extract()`` end to end with ``workers=2`` into a
  fresh store: landmarker load, face detection (frame 0 and its crop), pool work units (decode,
  crop, TV-L1, strain, features, ROI), Zarr writes. ``ratio`` = flowkit / reference pairs/s
  (target: >= 0.9 for jpeg-2040x1088).
- ``test_scaling[workers1|workers2|dask-local2|dask-cluster2]``: ``extract()`` of jpeg-640x480
  with ``workers=1`` (inline, in this process), ``workers=2`` (local process pool),
  ``scheduler="local:2"`` (a Dask LocalCluster of 2 workers, started and stopped by extract, so
  its start-up counts) and ``scheduler="tcp://..."`` (a running ``dask scheduler`` with two
  ``dask worker --nthreads 1`` with ``DASK_CONFIG=docs/dask``, started and warmed before timing,
  as a cluster a user already has; before each of its timed rounds an untimed ``workers=2`` run
  of the same input, so that the two are compared round by round on the same machine state).
  ``dask_overhead`` = 1 - dask / workers2 pairs/s, against those paired runs for the running
  cluster (target: <= 0.10); for ``local:2``, ``dask_fixed_s`` times, untimed by the benchmark,
  what of it does not depend on the video (cluster start, the workers' first imports, close).
- ``test_cli_local_cluster``: the commands ``flowkit extract --scheduler local:2`` and ``--workers
  2`` on jpeg-640x480, each a fresh process as a user runs it, paired round by round.

One-time costs of this process are paid by untimed warm-up extracts (imports, the forkserver
that preloads torch for the local pool); a CLI run pays them once per invocation. extra_info also
records the work units flowkit plans (``units_pairs``): a unit runs on one worker, so fewer units
than workers caps the speed-up (the planner cuts a short run's units down to a chunk so that there
are twice as many units as workers where the video allows).

Environment: FLOWKIT_BENCH_FRAMES (N, default 120, at least 19), FLOWKIT_BENCH_ROUNDS (default 1),
FLOWKIT_BENCH_MP4 ("cut", default, or "shared"), FLOWKIT_BENCH_UNIT_WINDOWS (chunk_windows and
unit_windows of every extract; default: flowkit's, as the CLI runs), FLOWKIT_MEDIAPIPE_MODEL
(default ../shared/models/face_landmarker.task).

Full run (on a quiet machine; writes benchmarks/results/pipeline_cpu_2core.json):
    FLOWKIT_MEDIAPIPE_MODEL=../shared/models/face_landmarker.task \
        .venv/bin/python benchmarks/bench_pipeline.py
which is
    .venv/bin/python -m pytest benchmarks/bench_pipeline.py --benchmark-only -p no:cacheprovider -s \
        --benchmark-json=benchmarks/results/pipeline_cpu_2core.json
Smoke run: FLOWKIT_BENCH_FRAMES=24 and no --benchmark-json.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
VIDEO = SHARED / "data" / "WolfgangLanger_Pexels.mp4"
MODEL = Path(os.environ.get("FLOWKIT_MEDIAPIPE_MODEL") or SHARED / "models" / "face_landmarker.task")
RESULTS = REPO / "benchmarks" / "results" / "pipeline_cpu_2core.json"

FRAMES = int(os.environ.get("FLOWKIT_BENCH_FRAMES", "120"))
ROUNDS = int(os.environ.get("FLOWKIT_BENCH_ROUNDS", "1"))
MP4_MODE = os.environ.get("FLOWKIT_BENCH_MP4", "cut")
#: Windows per chunk and per work unit, both (None: flowkit's defaults, 64 and 256, as the CLI runs).
UNIT_WINDOWS = int(os.environ["FLOWKIT_BENCH_UNIT_WINDOWS"]) if os.environ.get("FLOWKIT_BENCH_UNIT_WINDOWS") else None
KS = (6, 18)
WORKERS = 2
JPEG_SIZES = ((640, 480), (2040, 1088))

pytestmark = [
    pytest.mark.skipif(not (VIDEO.is_file() and MODEL.is_file()), reason=f"{VIDEO} or {MODEL} is absent"),
    pytest.mark.skipif(not hasattr(cv2, "optflow"), reason="cv2.optflow (opencv-contrib-python) is missing"),
]
HAS_DASK = importlib.util.find_spec("distributed") is not None

# pairs/s measured in this pytest run, so that a later case can form its ratio without measuring again.
_RATES: dict[str, float] = {}


@dataclass(frozen=True)
class Input:
    name: str
    path: Path
    kind: str  # "images" or "video"
    n_frames: int
    size: tuple[int, int]  # (width, height)

    @property
    def pairs(self) -> int:
        return sum(self.n_frames - k for k in KS if self.n_frames > k)

    def files(self) -> list[Path]:
        return [self.path / f"img{i + 1}.jpg" for i in range(self.n_frames)]


# ---------------------------------------------------------------------- inputs
def _letterbox(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """``frame`` scaled to fit ``width`` x ``height`` and padded with black, face proportions kept."""
    h, w = frame.shape[:2]
    scale = min(width / w, height / h)
    nw, nh = round(w * scale), round(h * scale)
    scaled = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA)
    top, left = (height - nh) // 2, (width - nw) // 2
    return cv2.copyMakeBorder(scaled, top, height - nh - top, left, width - nw - left, cv2.BORDER_CONSTANT, value=0)


def _read_frames(n: int) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(VIDEO))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    frames = []
    for _ in range(n):
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if len(frames) < n:
        raise pytest.UsageError(f"FLOWKIT_BENCH_FRAMES={n} is more than the {len(frames)} frames of {VIDEO}")
    return frames, fps


def _write_mp4(frames: list[np.ndarray], fps: float, path: Path) -> Input:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        pytest.skip("cv2.VideoWriter cannot write mp4v here")
    for frame in frames:
        writer.write(frame)
    writer.release()
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    assert n == len(frames), f"{path}: wrote {len(frames)} frames, {n} decode"
    return Input(f"mp4-{w}x{h}", path, "video", n, (w, h))


@pytest.fixture(scope="session")
def inputs(tmp_path_factory) -> dict[str, Input]:
    if FRAMES < max(KS) + 1:
        raise pytest.UsageError(f"FLOWKIT_BENCH_FRAMES should be >= {max(KS) + 1}, got {FRAMES}")
    root = tmp_path_factory.mktemp("pipeline-inputs")
    frames, fps = _read_frames(FRAMES)
    out = {}
    for w, h in JPEG_SIZES:
        inp = Input(f"jpeg-{w}x{h}", root / f"jpeg_{w}x{h}", "images", FRAMES, (w, h))
        inp.path.mkdir()
        for f, frame in zip(inp.files(), frames):
            cv2.imwrite(str(f), _letterbox(frame, w, h), [cv2.IMWRITE_JPEG_QUALITY, 95])
        out[inp.name] = inp
    if MP4_MODE == "shared":
        cap = cv2.VideoCapture(str(VIDEO))
        n, size = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), (int(cap.get(3)), int(cap.get(4)))
        cap.release()
        out[f"mp4-{size[0]}x{size[1]}"] = Input(f"mp4-{size[0]}x{size[1]}", VIDEO, "video", n, size)
    else:
        mp4 = _write_mp4(frames, fps, root / "wolfgang_cut.mp4")
        out[mp4.name] = mp4
    return out


INPUT_NAMES = [f"jpeg-{w}x{h}" for w, h in JPEG_SIZES] + ["mp4-640x360"]


# ---------------------------------------------------------------------- the reference, by hand
def _cv_tvl1_kwargs(params: dict) -> dict:
    """``cv2.optflow.DualTVL1OpticalFlow_create`` keywords of ``TVL1Params`` fields, as
    flowkit.flow.opencv_tvl1.create_solver maps them (OpenCV spells innnerIterations so)."""
    from flowkit.flow.params import check_params

    p = check_params(params)
    return {"tau": p.tau, "lambda_": p.lambda_, "theta": p.theta, "nscales": p.nscales, "warps": p.warps,
            "epsilon": p.epsilon, "innnerIterations": p.inner_iterations, "outerIterations": p.outer_iterations,
            "scaleStep": p.scale_step, "gamma": p.gamma, "medianFiltering": p.median_filtering,
            "useInitialFlow": False}


_SOLVER = None


def _ref_init(tvl1_kwargs: dict) -> None:
    global _SOLVER
    cv2.setNumThreads(1)
    _SOLVER = cv2.optflow.DualTVL1OpticalFlow_create(**tvl1_kwargs)


def _ref_load_crop(args) -> np.ndarray:
    from flowkit.face.crop import crop_face

    path, box = args
    return crop_face(cv2.imread(path), box)


def _ref_solve(pair) -> float:
    flow = _SOLVER.calc(pair[0], pair[1], None)
    return float(flow[0, 0, 0])  # the flow stays in the worker, as it does in flowkit's


def _video_crops(path: Path, box) -> list[np.ndarray]:
    from flowkit.face.crop import crop_face

    cap = cv2.VideoCapture(str(path))
    crops = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        crops.append(crop_face(frame, box))
    cap.release()
    return crops


def reference_box(inp: Input) -> tuple[int, int, int, int]:
    """The crop box flowkit takes: the first frame with a face, its box clamped to the frame."""
    from flowkit.face.crop import clamp_box, find_reference
    from flowkit.face.landmarks import make_landmarker

    def video_frames():
        cap = cv2.VideoCapture(str(inp.path))
        try:
            while (frame := cap.read()[1]) is not None:
                yield frame
        finally:
            cap.release()

    frames = video_frames() if inp.kind == "video" else (cv2.imread(str(f)) for f in inp.files())
    landmarker = make_landmarker("mediapipe", model_path=MODEL)
    try:
        _, face = find_reference(frames, landmarker)
    finally:
        frames.close()
        if hasattr(landmarker, "close"):
            landmarker.close()
    w, h = inp.size
    return clamp_box(face.box, w, h)


def _ref_warm(_) -> int:
    import flowkit.face.crop  # noqa: F401 - the one flowkit module the reference uses

    return os.getpid()


def reference_pool(tvl1_kwargs: dict, workers: int = WORKERS):
    """A started and warm spawn Pool (imports done, one OpenCV thread, one TV-L1 solver per process).
    Its start-up is not timed: extract's warm forkserver starts workers in milliseconds."""
    ctx = get_context("spawn")  # leave the forkserver to extract(), which preloads modules into it
    pool = ctx.Pool(workers, initializer=_ref_init, initargs=(tvl1_kwargs,))
    pool.map(_ref_warm, range(4 * workers), chunksize=1)
    return pool


def reference_run(pool, inp: Input, box, workers: int = WORKERS) -> int:
    """Each frame decoded once and cropped, raw OpenCV TV-L1 on every (i, i + k) pair, in ``pool``;
    returns the pairs solved."""
    if inp.kind == "images":
        jobs = [(str(f), box) for f in inp.files()]
        crops = pool.map(_ref_load_crop, jobs, chunksize=max(1, len(jobs) // (4 * workers)))
    else:
        crops = _video_crops(inp.path, box)  # a video decodes in order, once: in this process
    n = len(crops)
    pairs = [(crops[i], crops[i + k]) for k in KS for i in range(n - k)]
    pool.map(_ref_solve, pairs, chunksize=2)
    return len(pairs)


# ---------------------------------------------------------------------- flowkit
def run_extract(inp: Input, store: Path, **options):
    from flowkit.pipeline.extract import FAST_TVL1, extract

    if UNIT_WINDOWS is not None:
        options = {"chunk_windows": UNIT_WINDOWS, "unit_windows": UNIT_WINDOWS, **options}
    report = extract([inp.path], store, ks=list(KS), flow_params=dict(FAST_TVL1), model_path=MODEL, progress=False,
                     **options)
    assert report.ok and report.pairs == inp.pairs, report.summary()
    return report


def planned_units(n_frames: int) -> list[int]:
    """Pairs of each work unit extract plans for one video of ``n_frames`` (one unit runs on one worker)."""
    from flowkit.io.store import DEFAULT_CHUNK_WINDOWS
    from flowkit.pipeline.extract import DEFAULT_UNIT_WINDOWS
    from flowkit.pipeline.plan import VideoWork, min_units_for, plan_units

    chunk = UNIT_WINDOWS or DEFAULT_CHUNK_WINDOWS
    todo = {k: range(-(-(n_frames - k) // chunk)) for k in KS if n_frames > k}
    # as extract plans a local pool of WORKERS processes
    units = plan_units([VideoWork("v", n_frames, todo, chunk)], unit_windows=UNIT_WINDOWS or DEFAULT_UNIT_WINDOWS,
                       min_units=min_units_for(WORKERS))
    return [u.pairs for u in units]


@pytest.fixture(scope="session")
def warm(inputs, tmp_path_factory) -> float:
    """Two untimed tiny extracts (two pairs each, 2 workers then 1): imports, the landmarker, the
    forkserver that starts the local pool's workers with torch already imported, and the inline
    engine's imports in this process. Returns their seconds."""
    root = tmp_path_factory.mktemp("pipeline-warm")
    src = inputs["jpeg-640x480"]
    folder = root / "warm"
    folder.mkdir()
    for f in src.files()[: KS[0] + 2]:
        shutil.copy(f, folder / f.name)
    from flowkit.pipeline.extract import FAST_TVL1, extract

    t0 = time.perf_counter()
    for workers in (WORKERS, 1):  # the pool's forkserver, then the inline engine's imports (torch) here
        report = extract([folder], root / f"warm{workers}.zarr", ks=[KS[0]], flow_params=dict(FAST_TVL1),
                         model_path=MODEL, workers=workers, progress=False)
        assert report.ok, report.summary()
    return time.perf_counter() - t0


def _timed(benchmark, fn, setup=None):
    """Run ``fn`` ROUNDS times under pytest-benchmark; (last result, median seconds, seconds per round)."""
    seconds = []

    def timed():
        t0 = time.perf_counter()
        out = fn()
        seconds.append(time.perf_counter() - t0)
        return out

    result = benchmark.pedantic(timed, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    return result, statistics.median(seconds), seconds


def _common_info(inp: Input) -> dict:
    from flowkit.pipeline.extract import FAST_TVL1

    if inp.kind == "images":
        source = "JPEG q95 folder"
    else:
        source = f"{VIDEO.name} ({'as is' if MP4_MODE == 'shared' else 'first frames, mp4v'})"
    return {"input": inp.name, "source": source,
            "frame_size": list(inp.size), "frames": inp.n_frames, "ks": list(KS), "pairs": inp.pairs,
            "tvl1": "FAST_TVL1", "tvl1_params": dict(FAST_TVL1), "cpu_count": os.cpu_count(),
            "opencv": cv2.__version__, "rounds": ROUNDS, "unit_windows": UNIT_WINDOWS or "default"}


def _measure_reference(benchmark, inp: Input):
    from flowkit.pipeline.extract import FAST_TVL1

    box = reference_box(inp)
    t0 = time.perf_counter()
    pool = reference_pool(_cv_tvl1_kwargs(dict(FAST_TVL1)))
    pool_start = time.perf_counter() - t0
    try:
        if benchmark is None:
            t0 = time.perf_counter()
            pairs = reference_run(pool, inp, box)
            median, rounds = time.perf_counter() - t0, None
        else:
            pairs, median, rounds = _timed(benchmark, lambda: reference_run(pool, inp, box))
    finally:
        pool.close()
        pool.join()
    assert pairs == inp.pairs, (pairs, inp.pairs)
    _RATES[f"reference:{inp.name}"] = pairs / median
    return box, median, rounds, pool_start


# ---------------------------------------------------------------------- cases
CASES = [(name, impl) for name in INPUT_NAMES for impl in ("reference", "flowkit")]


@pytest.mark.parametrize("case", CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_decoder_bound(benchmark, inputs, warm, tmp_path, case):
    """End-to-end extract (2 workers) against the same pairs solved by hand on 2 processes."""
    name, impl = case
    if name not in inputs:
        pytest.skip(f"no {name} input with FLOWKIT_BENCH_MP4={MP4_MODE}")
    inp = inputs[name]
    benchmark.group = f"pipeline {name}"
    info = _common_info(inp)
    if impl == "reference":
        box, median, rounds, pool_start = _measure_reference(benchmark, inp)
        rate = inp.pairs / median
        info.update(impl="reference: decode once, crop_face, raw OpenCV TV-L1, warm spawn Pool(2)", workers=WORKERS,
                    crop_box=list(box), seconds=median, round_seconds=rounds, pairs_per_s=rate,
                    pool_start_untimed_s=pool_start,
                    load_avg_1min=os.getloadavg()[0])
        benchmark.extra_info.update(info)
        print(f"\n{name} reference: {inp.pairs} pairs in {median:.2f} s, {rate:.2f} pairs/s")
        return

    store = tmp_path / "out.zarr"
    report, median, rounds = _timed(benchmark, lambda: run_extract(inp, store, workers=WORKERS),
                                    setup=lambda: shutil.rmtree(store, ignore_errors=True))
    rate = inp.pairs / median
    _RATES[f"flowkit:{name}"] = rate
    from flowkit.io.store import FeatureReader

    with FeatureReader(store) as reader:
        crop_box = reader.video_attrs(reader.videos()[0])["crop_box"]
    if f"reference:{name}" not in _RATES:  # run alone (-k): measure the reference once, outside the benchmark
        _measure_reference(None, inp)
    ref = _RATES[f"reference:{name}"]
    units = planned_units(inp.n_frames)
    info.update(impl="flowkit extract()", workers=WORKERS, crop_box=list(crop_box), seconds=median,
                round_seconds=rounds, pairs_per_s=rate, reference_pairs_per_s=ref, ratio=rate / ref,
                units_pairs=units, unit_parallelism=min(WORKERS, inp.pairs / max(units)), engine=report.engine,
                warmup_s=warm, load_avg_1min=os.getloadavg()[0])
    benchmark.extra_info.update(info)
    print(f"\n{name} flowkit: {inp.pairs} pairs in {median:.2f} s, {rate:.2f} pairs/s; reference {ref:.2f} "
          f"pairs/s; ratio {rate / ref:.3f}; units {units}")


ENGINES = {"workers1": {"workers": 1}, "workers2": {"workers": 2}, "dask-local2": {"scheduler": "local:2"},
           "dask-cluster2": {"scheduler": "cluster"}}


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory, inputs) -> Iterator[str]:
    """The address of a running cluster: ``dask scheduler`` and two ``dask worker --nthreads 1``
    processes on 127.0.0.1, as a user starts them before ``--scheduler tcp://...``; warmed by one
    untimed extract, so that the workers' imports are paid before the timed runs (as the local
    pool's forkserver is by ``warm``). Stopped when the module ends."""
    folder = tmp_path_factory.mktemp("dask")
    dask = Path(sys.executable).parent / "dask"
    sched_file = folder / "sched.json"
    procs = [subprocess.Popen([str(dask), "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--dashboard-address", ":0", "--scheduler-file", str(sched_file)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    try:
        deadline = time.monotonic() + 60
        while not sched_file.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        # the worker settings docs/distributed.md gives
        env = {**os.environ, "DASK_CONFIG": str(REPO / "docs" / "dask")}
        procs += [subprocess.Popen([str(dask), "worker", address, "--nthreads", "1", "--no-dashboard"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
                  for _ in range(WORKERS)]
        from distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(WORKERS, timeout=120)
        run_extract(inputs["jpeg-640x480"], folder / "warm.zarr", scheduler=address)
        yield address
    finally:
        for proc in reversed(procs):
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.parametrize("engine", list(ENGINES))
def test_scaling(benchmark, inputs, tmp_path, engine, request):
    """Pairs/s of extract on jpeg-640x480 with 1 and 2 local workers, a LocalCluster of 2 (started
    and stopped by extract) and a running cluster of 2 workers (``tcp://``)."""
    if engine.startswith("dask") and not HAS_DASK:
        pytest.skip("distributed is not installed (pip install 'flowkit[dask]')")
    warm = request.getfixturevalue("warm")
    inp = inputs["jpeg-640x480"]
    benchmark.group = f"scaling {inp.name}"
    store = tmp_path / "out.zarr"
    options = dict(ENGINES[engine])
    if options.get("scheduler") == "cluster":
        options["scheduler"] = request.getfixturevalue("dask_cluster")

    def run(options):
        return run_extract(inp, store, **options)

    paired: list[float] = []  # local 2-worker runs, one before each timed round (dask-cluster2)

    def setup():
        shutil.rmtree(store, ignore_errors=True)
        if engine == "dask-cluster2":
            t0 = time.perf_counter()
            run(ENGINES["workers2"])
            paired.append(time.perf_counter() - t0)
            shutil.rmtree(store, ignore_errors=True)

    report, median, rounds = _timed(benchmark, lambda: run(options), setup=setup)
    rate = inp.pairs / median
    _RATES[f"scaling:{engine}"] = rate
    info = _common_info(inp)
    info.update(engine_options=ENGINES[engine], engine=report.engine, seconds=median, round_seconds=rounds,
                pairs_per_s=rate, units_pairs=planned_units(inp.n_frames), warmup_s=warm)
    line = f"\n{inp.name} {engine}: {inp.pairs} pairs in {median:.2f} s, {rate:.2f} pairs/s"
    if engine != "workers1" and "scaling:workers1" in _RATES:
        info["speedup_vs_workers1"] = rate / _RATES["scaling:workers1"]
        line += f"; x{info['speedup_vs_workers1']:.2f} vs 1 worker"
    if engine.startswith("dask"):
        if "scaling:workers2" not in _RATES:  # run alone (-k): measure the local engine once, outside the benchmark
            shutil.rmtree(store, ignore_errors=True)
            t0 = time.perf_counter()
            run(ENGINES["workers2"])
            _RATES["scaling:workers2"] = inp.pairs / (time.perf_counter() - t0)
        local = _RATES["scaling:workers2"]
        if paired:  # the same machine state as the Dask rounds, minutes apart from the workers2 case
            local = inp.pairs / statistics.median(paired)
            info.update(paired_local_seconds=paired, paired_ratios=[d / lo for d, lo in zip(rounds, paired)])
        info.update(local_workers2_pairs_per_s=local, dask_overhead=1 - rate / local)
        line += f"; local 2 workers {local:.2f} pairs/s; Dask overhead {info['dask_overhead']:.1%}"
        if engine == "dask-local2":
            info["dask_fixed_s"] = dask_fixed_costs()
            line += " (" + ", ".join(f"{k} {v:.1f} s" for k, v in info["dask_fixed_s"].items()) + ")"
    info["load_avg_1min"] = os.getloadavg()[0]
    benchmark.extra_info.update(info)
    print(line)


def _cli_extract(inp: Input, store: Path, engine_args: list[str]) -> float:
    """Seconds of one ``flowkit extract`` command, a fresh process as a user runs it."""
    shutil.rmtree(store, ignore_errors=True)
    cmd = [sys.executable, "-m", "cli.flowkit_app", "extract", str(inp.path), str(store), *[a for k in KS
           for a in ("--k", str(k))], "--fast", "--quiet", "--model", str(MODEL), *engine_args]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def test_cli_local_cluster(benchmark, inputs, tmp_path):
    """``flowkit extract --scheduler local:2`` against ``--workers 2``, each a fresh command (both pay
    their start-up: the local pool's forkserver importing torch, the LocalCluster's start, its workers'
    imports and its close); each timed Dask round right after an untimed local one."""
    if not HAS_DASK:
        pytest.skip("distributed is not installed (pip install 'flowkit[dask]')")
    inp = inputs["jpeg-640x480"]
    benchmark.group = f"cli {inp.name}"
    store = tmp_path / "out.zarr"
    paired: list[float] = []
    _, median, rounds = _timed(benchmark, lambda: _cli_extract(inp, store, ["--scheduler", "local:2"]),
                               setup=lambda: paired.append(_cli_extract(inp, store, ["--workers", str(WORKERS)])))
    local = statistics.median(paired)
    info = _common_info(inp)
    info.update(seconds=median, round_seconds=rounds, paired_local_seconds=paired,
                paired_ratios=[d / lo for d, lo in zip(rounds, paired)], pairs_per_s=inp.pairs / median,
                local_workers2_pairs_per_s=inp.pairs / local, dask_overhead=1 - local / median,
                load_avg_1min=os.getloadavg()[0])
    benchmark.extra_info.update(info)
    print(f"\n{inp.name} CLI: --scheduler local:2 {median:.2f} s vs --workers 2 {local:.2f} s (medians of "
          f"{len(rounds)}); Dask overhead {info['dask_overhead']:.1%}")


def dask_fixed_costs() -> dict:
    """Seconds of the per-run costs of ``scheduler="local:2"`` that do not depend on the video
    (untimed, after the benchmark): LocalCluster start, the workers' first imports, close."""
    from flowkit.pipeline.engines import make_engine
    from flowkit.pipeline.extract import FAST_TVL1, resolve_settings

    settings = resolve_settings(flow_params=dict(FAST_TVL1), workers=WORKERS)
    t0 = time.perf_counter()
    engine = make_engine(settings, "local:2")
    t1 = time.perf_counter()
    try:
        # a first unit's imports
        engine.client.run(exec, "import flowkit.pipeline.units, flowkit.features.chain, flowkit.io.store")
    finally:
        t2 = time.perf_counter()
        engine.close()
    return {"cluster_start": t1 - t0, "worker_imports": t2 - t1, "close": time.perf_counter() - t2}


def main(argv: list[str] | None = None) -> int:
    """The whole suite, into benchmarks/results/pipeline_cpu_2core.json unless a --benchmark-json is given."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not any(a.startswith("--benchmark-json") for a in args):
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        args.append(f"--benchmark-json={RESULTS}")
    return int(pytest.main([str(Path(__file__).resolve()), "--benchmark-only", "-p", "no:cacheprovider", "-s",
                            *args]))


if __name__ == "__main__":  # the local pool starts its workers from a forkserver: keep this guard
    sys.exit(main())
