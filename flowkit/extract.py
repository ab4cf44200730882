"""The extraction pipeline: sources -> reference face -> 128x128 crops -> TV-L1 -> features -> store.

Per video (SPEC 1-4):

1. A first pass decodes the video to find the reference frame (the first with a face) and to
   count the frames (container headers can be wrong). A rerun reuses what the store recorded.
2. The landmarks are found again on the crop of frame 0 (falling back to the reference face's
   points mapped into the crop).
3. A second pass crops every frame with the reference box and keeps a rolling buffer of
   ``max(k) + chunk`` crops, so a long video is never held in memory. Window i pairs crops i and
   i + k. Batches of windows go to worker processes (TV-L1 + features); the main process decodes,
   crops and is the only writer of the store. This pass lives in :mod:`flowkit.second_pass`.

Resume: complete (video, k) pairs are skipped and only chunks whose ``written`` flag is false
are computed again. The computation is deterministic, so a resumed store equals an
uninterrupted one.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import cv2
import numpy as np

from flowkit.errors import FlowkitError
from flowkit.progress import ProgressBars, estimated_pairs
from flowkit.second_pass import ChunkAssembler, plan_tasks, stream_windows
from flowkit.sources import DATA_ERRORS
from flowkit.store import DEFAULT_CHUNK_WINDOWS, FeatureStore

if TYPE_CHECKING:
    import torch

__all__ = ["extract", "resolve_settings", "ExtractionReport", "ExtractionSettings", "VideoResult", "FAST_TVL1",
           "TEST_TVL1"]

#: A reduced TV-L1 preset for demos (``flowkit extract --fast``): 3 scales, 2 warps, 10 inner and
#: 2 outer iterations instead of OpenCV's 5/5/30/10. Not SPEC-exact; roughly 5-7x faster.
FAST_TVL1 = {"nscales": 3, "warps": 2, "inner_iterations": 10, "outer_iterations": 2}
#: Smallest useful preset, for tests only.
TEST_TVL1 = {"nscales": 2, "warps": 1, "inner_iterations": 5, "outer_iterations": 1}

# A video failing with one of these is reported and the others go on; anything else is a bug.
# flowkit.progress keeps the same set for its estimates.
_FAILURE_ERRORS = DATA_ERRORS


#: Headers of healthy files are estimates: the shared no_face.mp4 announces 98 frames and decodes
#: 95 (3 % fewer). A video decoding more than 5 % fewer frames than announced is truncated.
TRUNCATION_TOLERANCE = 0.05

#: The statuses of a video whose every frame went into the store (for the k it is long enough for).
EXTRACTED = ("done", "partial")


@dataclass
class VideoResult:
    """What happened to one video: status "done", "partial" (some k skipped), "skipped" (every k
    skipped: the video is too short), "truncated" (fewer frames decode than its header announces:
    the features cover those that do) or "failed". Only "done" and "partial" count as extracted."""

    video_id: str
    status: str
    message: str = ""
    ks: list[int] = field(default_factory=list)
    pairs: int = 0


@dataclass
class ExtractionReport:
    """Outcome of :func:`extract`: per-video results, pairs computed and wall time."""

    store: Path
    videos: list[VideoResult] = field(default_factory=list)
    pairs: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[VideoResult]:
        """Videos not (fully) extracted: failed, too short for every k, or truncated."""
        return [v for v in self.videos if v.status not in EXTRACTED]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def pairs_per_s(self) -> float:
        return self.pairs / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        done = sum(v.status in EXTRACTED for v in self.videos)
        lines = [f"{done} of {len(self.videos)} video(s) extracted into {self.store}; {self.pairs} pairs in "
                 f"{self.seconds:.1f} s ({self.pairs_per_s:.2f} pairs/s)"]
        lines += [f"  {v.video_id}: {v.message}" for v in self.videos if v.message]
        return "\n".join(lines)


@dataclass(frozen=True)
class ExtractionSettings:
    """A run's settings, resolved once by :func:`extract` and passed whole to every video.

    backend: the resolved TV-L1 backend, "opencv", "torch" or "opencv-cuda".
    device: the torch device of the torch backend, else None.
    backend_name: what the store records per k: ``backend``, or "backend:device".
    params: TV-L1 parameters, ``TVL1Params.to_dict()``.
    save_flow: also store the (n_windows, 2, 128, 128) flow.
    chunk_windows: windows per stored chunk (the resume unit).
    batch_windows: windows per TV-L1 call.
    workers: processes computing tasks, or 1 with ``threaded``.
    threaded: one solver thread in this process beside the decoding (GPU, torch solver).
    landmark_backend: "mediapipe" or "dlib", recorded per video.
    flow_impl: the torch solver's implementation, "auto", "eager" or "triton" (``tvl1(impl=...)``).
    """

    backend: str
    device: torch.device | None
    backend_name: str
    params: dict
    save_flow: bool
    chunk_windows: int
    batch_windows: int
    workers: int
    threaded: bool
    landmark_backend: str
    flow_impl: str = "auto"


# ---------------------------------------------------------------------- workers
def _init_worker(driver_pid: int) -> None:
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    _exit_with_driver(driver_pid)


def _exit_with_driver(driver_pid: int, period_s: float = 0.5) -> None:
    """End this worker soon after the driver process dies, even by SIGKILL.

    A worker's parent is the forkserver, not the driver, so a parent-death signal would not see
    the driver go; a daemon thread polls the driver's pid instead (any POSIX system).
    """
    import threading

    def watch() -> None:
        while True:
            time.sleep(period_s)
            try:
                os.kill(driver_pid, 0)
            except (ProcessLookupError, PermissionError):  # gone (or its pid reused by another user)
                os._exit(1)  # nothing to clean up: the driver was the only writer

    threading.Thread(target=watch, name="flowkit-driver-watch", daemon=True).start()


class _InlineExecutor:
    """The executor interface, running each task at submit time (workers <= 1, GPU backends)."""

    def submit(self, fn, *args):
        fut: cf.Future = cf.Future()
        try:
            fut.set_result(fn(*args))
        except BaseException as exc:  # delivered to the caller through the future, like a pool
            fut.set_exception(exc)
        return fut

    def shutdown(self, wait=True, cancel_futures=False):
        pass


def _make_executor(workers: int, threaded: bool):
    if threaded:
        # One thread runs the batched solver (on the GPU, or with torch's own threads on the CPU)
        # while the main thread decodes and crops the next frames: OpenCV decoding, CUDA waits
        # and torch's CPU kernels release the GIL, so decoding overlaps compute.
        return cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="flowkit-solver")
    if workers <= 1:
        return _InlineExecutor()
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        # Workers fork from a server that already imported these, so each starts in milliseconds
        # instead of importing torch and cv2 again (ignored when the server already runs).
        ctx.set_forkserver_preload(["flowkit.extract", "flowkit.second_pass", "flowkit.features", "flowkit.flow",
                                    "cv2", "torch"])
    else:
        ctx = multiprocessing.get_context("spawn")
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                  initargs=(os.getpid(),))


# ---------------------------------------------------------------------- inputs
def _as_inputs(inputs) -> list:
    from flowkit.sources import VideoInput, discover_videos

    if isinstance(inputs, (str, os.PathLike, VideoInput)):
        inputs = [inputs]
    out = []
    for item in inputs:
        if isinstance(item, VideoInput):
            out.append(item)
        else:
            out.extend(discover_videos(item))
    seen = set()
    for v in out:
        if v.video_id in seen:
            raise FlowkitError(f"video ids should be unique in one store, got {v.video_id!r} twice")
        seen.add(v.video_id)
    return out


class _Frames:
    """One pass over a source that remembers frame 0, the last frame read and the count.

    It is its own iterator, so find_reference can stop at the reference frame and the caller
    counts the rest; ``path`` names the source in find_reference's error message.
    """

    def __init__(self, source):
        self.path = source.path
        self._it = iter(source)
        self.first = None
        self.last = None
        self.count = 0

    def __iter__(self):
        return self

    def __next__(self) -> np.ndarray:
        frame = next(self._it)
        if self.first is None:
            self.first = frame
        self.last = frame
        self.count += 1
        return frame


def _prepare(video, source, landmarker, landmark_backend: str) -> tuple[dict, np.ndarray]:
    """First pass: reference face, crop box, frame count and crop landmarks ((68, 2) float32)."""
    from flowkit.crop import clamp_box, crop_face, crop_landmarks, find_reference

    frames = _Frames(source)
    reference, face = find_reference(frames, landmarker)
    ref_frame = frames.last
    for _ in frames:  # count the rest without detection
        pass
    n_frames = frames.count
    h, w = ref_frame.shape[:2]
    box = clamp_box(face.box, w, h)
    points, _ = crop_landmarks(landmarker, crop_face(frames.first, box), reference=face,
                               frame_shape=ref_frame.shape)
    attrs = {
        "source": str(Path(video.path).resolve()),
        "n_frames": int(n_frames),
        "fps": source.fps,
        "crop_box": [int(v) for v in box],
        "reference_frame": int(reference),
        "landmark_backend": landmark_backend,
        # What the container promised; more than n_frames means a truncated or damaged file.
        "header_frames": int(source.n_frames or n_frames),
    }
    return attrs, points


# ---------------------------------------------------------------------- the pipeline
def _outside(intervals, n_frames: int):
    """The first interval that does not lie within frames 0 .. n_frames - 1, or None."""
    return next((iv for iv in intervals if iv.offset >= n_frames), None)


def _row(iv) -> str:
    return f"{iv.video}, {iv.type}, onset {iv.onset + 1}, offset {iv.offset + 1} (1-based)"


def _check_bounds(videos: list, by_video: dict) -> None:
    """Refuse annotation rows beyond their video's last frame, as counted by the header or listing
    (exact for image folders). A header that over-counts is caught again once the video is decoded."""
    from flowkit.sources import open_source

    for video in videos:
        intervals = by_video.get(video.video_id)
        if not intervals:
            continue
        try:
            n_frames = open_source(video.path).n_frames
        except DATA_ERRORS:  # reported when the video's turn comes
            continue
        bad = _outside(intervals, n_frames) if n_frames else None
        if bad is not None:
            raise FlowkitError(f"annotation rows should lie within their video, got row '{_row(bad)}' beyond "
                               f"the last frame {n_frames} of {video.video_id}")


def _annotation_setup(annotations, videos: list, ks, report: ExtractionReport):
    from flowkit.annotations import Interval, k_by_type, load_annotations, match_videos

    intervals: list[Interval] = []
    if annotations is not None:
        if isinstance(annotations, (str, os.PathLike)):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                intervals = load_annotations(annotations)
            for w in caught:
                report.warnings.append(str(w.message))
                warnings.warn(str(w.message), UserWarning, stacklevel=3)
        else:
            intervals = list(annotations)
    by_video, unknown = match_videos([v.video_id for v in videos], intervals)
    _check_bounds(videos, by_video)  # before k is derived from them
    if unknown:
        msg = (f"annotations name {len(unknown)} video(s) that are not among the inputs, ignored: "
               f"{', '.join(unknown[:20])}{' ...' if len(unknown) > 20 else ''}")
        report.warnings.append(msg)
        warnings.warn(msg, UserWarning, stacklevel=3)
    derived = k_by_type(intervals) if intervals else {}
    if ks is None:
        if not derived:
            raise FlowkitError("k should be given (--k) or derived from annotations (--annotations), got neither")
        ks = derived.values()
    ks = sorted({int(k) for k in ks})
    if not ks or min(ks) < 1:
        raise FlowkitError(f"k values should be positive integers, got {ks}")
    return by_video, ks, {t: k for t, k in derived.items() if k in ks}


def extract(  # noqa: PLR0913 - public keyword-only API: the options of `flowkit extract`
    inputs,
    store_path: str | os.PathLike,
    *,
    ks: Sequence[int] | None = None,
    annotations=None,
    landmark_backend: str = "mediapipe",
    model_path: str | os.PathLike | None = None,
    flow_backend: str = "auto",
    device=None,
    gpu: bool = False,
    flow_impl: str = "auto",
    flow_params: dict | None = None,
    workers: int | None = None,
    save_flow: bool = False,
    chunk_windows: int = DEFAULT_CHUNK_WINDOWS,
    batch_windows: int | None = None,
    progress: bool = True,
) -> ExtractionReport:
    """Extract SOFTNet features of every input video into a Zarr store (docs/STORE.md).

    Args:
        inputs: a list of :class:`flowkit.sources.VideoInput`, or paths (video files, image
            folders, dataset folders) passed to :func:`flowkit.sources.discover_videos`.
        store_path: the ``.zarr`` directory; created, or resumed when it exists.
        ks: window lengths; None derives one per expression type from ``annotations`` (SPEC 2).
        annotations: an annotation file (:func:`flowkit.annotations.load_annotations`) or a list of
            :class:`~flowkit.annotations.Interval`; stored per video (0-based, inclusive) and as
            root attrs ``k_by_type``.
        landmark_backend: "mediapipe" or "dlib"; ``model_path`` the MediaPipe ``.task`` file.
        flow_backend, device, gpu: TV-L1 backend choice (:func:`flowkit.flow.resolve_backend`).
        flow_impl: the torch solver's implementation: "auto" (Triton kernels on CUDA when the
            ``gpu`` extra is installed), "eager" or "triton"; other backends take only "auto".
        flow_params: ``TVL1Params`` fields; OpenCV's defaults (SPEC 2) when None.
        workers: processes computing TV-L1 + features, each with one OpenCV/torch thread.
            Default: the CPU count for OpenCV; for the torch solver and on CUDA, one solver
            thread in this process (torch threads over the cores itself).
        save_flow: also store the (n_windows, 2, 128, 128) flow.
        chunk_windows: windows per stored chunk (the resume unit).
        batch_windows: pairs per TV-L1 call (a task may span chunks). Default: 2 with a pool,
            so that the last tasks of a video keep every worker busy; on CUDA, what half the
            free memory holds (:func:`flowkit.flow.memory.pairs_per_batch`); else a chunk.
        progress: tqdm bars per video and overall (pairs/s).

    Returns:
        :class:`ExtractionReport`. A video that fails (no face, unreadable) is recorded there and
        the others go on; a video shorter than k + 1 frames skips that k with a message.

    Raises:
        FlowkitError: bad arguments, an unusable store, or a store locked by another writer.
    """
    from flowkit.landmarks import make_landmarker

    t_start = time.perf_counter()
    settings = resolve_settings(flow_backend=flow_backend, device=device, gpu=gpu, flow_params=flow_params,
                                flow_impl=flow_impl, workers=workers, chunk_windows=chunk_windows,
                                batch_windows=batch_windows, save_flow=save_flow, landmark_backend=landmark_backend)
    videos = _as_inputs(inputs)
    if not videos:
        raise FlowkitError(f"inputs should contain at least one video, got none in {inputs!r}")
    report = ExtractionReport(store=Path(store_path))
    by_video, ks, kbt = _annotation_setup(annotations, videos, ks, report)

    store = FeatureStore(store_path, mode="a")
    landmarker = None
    executor = None
    try:
        if kbt:
            store.set_root_attrs(k_by_type={**(store.attrs.get("k_by_type") or {}), **kbt})
        landmarker = make_landmarker(landmark_backend, model_path=model_path)
        executor = _make_executor(settings.workers, settings.threaded)
        bars = ProgressBars(progress, len(videos), estimated_pairs(videos, store, ks) if progress else {})
        for video in videos:
            ivs = by_video.get(video.video_id, []) if annotations is not None else None
            result = _run_video(video, ivs, store, landmarker=landmarker, executor=executor, settings=settings,
                                ks=ks, bars=bars)
            report.videos.append(result)
            report.pairs += result.pairs
            bars.video_done(video.video_id)
        bars.close()
    finally:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        if landmarker is not None and hasattr(landmarker, "close"):
            landmarker.close()
        store.close()
    report.seconds = time.perf_counter() - t_start
    return report


def _settings(backend: str, dev, params: dict, *, workers: int | None, chunk_windows: int, batch_windows: int | None,
              save_flow: bool, landmark_backend: str) -> ExtractionSettings:
    """The run's settings: worker layout and batch size filled in and checked."""
    on_gpu = dev is not None and getattr(dev, "type", "cpu") != "cpu" or backend == "opencv-cuda"
    # The torch solver batches pairs and threads internally, so by default it runs in one thread
    # of this process, like on the GPU; OpenCV solves one pair per call, so it gets processes.
    threaded = on_gpu or (backend == "torch" and workers is None)
    if workers is None:
        workers = 1 if threaded else (os.cpu_count() or 1)
    if workers < 1:
        raise FlowkitError(f"workers should be >= 1, got {workers}")
    if batch_windows is None:
        batch_windows = _default_batch(backend, dev, workers, chunk_windows, threaded)
    if batch_windows < 1:
        raise FlowkitError(f"batch_windows should be >= 1, got {batch_windows}")
    return ExtractionSettings(
        backend=backend,
        device=dev,
        backend_name=backend if dev is None else f"{backend}:{dev}",
        params=params,
        save_flow=save_flow,
        chunk_windows=chunk_windows,
        batch_windows=batch_windows,
        workers=workers,
        threaded=threaded,
        landmark_backend=landmark_backend,
    )


def resolve_settings(  # noqa: PLR0913 - the keyword-only solving knobs of extract(), resolved in one place
    *,
    flow_backend: str = "auto",
    device=None,
    gpu: bool = False,
    flow_params: dict | None = None,
    flow_impl: str = "auto",
    workers: int | None = None,
    chunk_windows: int = DEFAULT_CHUNK_WINDOWS,
    batch_windows: int | None = None,
    save_flow: bool = False,
    landmark_backend: str = "mediapipe",
) -> ExtractionSettings:
    """The checked :class:`ExtractionSettings` of :func:`extract`'s options (see its docstring), for
    extract itself and for anything else that solves windows the same way (``spotnet live``).

    Raises:
        FlowkitError: a bad TV-L1 parameter, backend, device, implementation or count.
    """
    from flowkit.flow import resolve_backend
    from flowkit.flow.params import check_params

    params = check_params(dict(flow_params or {})).to_dict()
    backend, dev = resolve_backend(flow_backend, device, gpu)
    if chunk_windows < 1:
        raise FlowkitError(f"chunk_windows should be >= 1, got {chunk_windows}")
    settings = _settings(backend, dev, params, workers=workers, chunk_windows=chunk_windows,
                         batch_windows=batch_windows, save_flow=save_flow, landmark_backend=landmark_backend)
    return replace(settings, flow_impl=_check_flow_impl(flow_impl, backend, dev))


def _check_flow_impl(flow_impl: str, backend: str, dev) -> str:
    """``flow_impl`` checked against the backend and device once, before any video is read."""
    if flow_impl != "auto" and backend != "torch":
        raise FlowkitError(f"flow_impl should be 'auto' with the {backend} backend (it is the torch solver's), "
                           f"got {flow_impl!r}")
    if backend == "torch":
        from flowkit.flow.torch_tvl1 import resolve_impl

        resolve_impl(flow_impl, dev if dev is not None else "cpu")
    return flow_impl


def _default_batch(backend: str, dev, workers: int, chunk_windows: int, threaded: bool) -> int:
    if backend == "torch" and dev is not None and dev.type == "cuda":
        from flowkit.flow.memory import pairs_per_batch

        return pairs_per_batch(dev)
    return 2 if workers > 1 and not threaded else chunk_windows


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if isinstance(exc, (FlowkitError, cv2.error)) else f"{type(exc).__name__}: {text}"


def _run_video(video, intervals, store: FeatureStore, *, landmarker, executor, settings: ExtractionSettings, ks,
               bars: ProgressBars) -> VideoResult:
    """One video; a failure of that video is recorded in its result, and the run goes on."""
    try:
        return _extract_video(video, intervals, store, landmarker=landmarker, executor=executor,
                              settings=settings, ks=ks, bars=bars)
    except _FAILURE_ERRORS as exc:
        return VideoResult(video.video_id, "failed", _one_line(exc))
    except cf.BrokenExecutor as exc:
        raise FlowkitError(f"a worker process died while extracting {video.video_id}: {exc}") from None


def _extract_video(video, intervals, store: FeatureStore, *, landmarker, executor, settings: ExtractionSettings, ks,
                   bars: ProgressBars) -> VideoResult:
    """One video; ``intervals`` is None when no annotations were given (a resumed video keeps the
    annotations and subject stored by an earlier run)."""
    from flowkit.sources import open_source

    vid = video.video_id
    source = open_source(video.path)
    subject = intervals[0].subject if intervals else video.subject
    ann = [iv.to_attr() for iv in sorted(intervals or [], key=lambda iv: (iv.onset, iv.offset))]
    attrs = store.video_attrs(vid) if store.has_video(vid) else {}
    if attrs.get("crop_box") is not None:  # prepared by an earlier run
        if attrs.get("source") != str(Path(video.path).resolve()):
            raise FlowkitError(f"video id {vid!r} is already in the store from {attrs.get('source')}, "
                               f"got another source {video.path}")
        if intervals is not None:
            store.set_video_attrs(vid, subject=subject, annotations=ann)
        landmarks = store.landmarks(vid)
    else:
        attrs, landmarks = _prepare(video, source, landmarker, settings.landmark_backend)
        attrs.update(subject=subject, annotations=ann)
        store.add_video(vid, attrs, landmarks)
    n_frames = int(attrs["n_frames"])
    bad = _outside(intervals or [], n_frames)
    if bad is not None:
        raise FlowkitError(f"annotation row '{_row(bad)}' should lie within the video, got beyond its last "
                           f"decodable frame {n_frames}")

    todo, messages = _chunks_to_compute(vid, store, settings, ks=ks, n_frames=n_frames)
    done_ks = [k for k in ks if n_frames >= k + 1]
    pairs = 0
    if todo:
        plan = plan_tasks(todo, n_frames, chunk=settings.chunk_windows, batch=settings.batch_windows)
        bars.start_video(vid, plan.pairs)
        assembler = ChunkAssembler(store, vid, plan, save_flow=settings.save_flow)
        pairs = stream_windows(source, plan, assembler, box=attrs["crop_box"], landmarks=landmarks,
                               executor=executor, settings=settings, bars=bars)
        for k in todo:
            if not store.mark_complete(vid, k):
                raise FlowkitError(f"video {vid} k={k}: some chunks were not written; run extract again")
    status = "done" if not messages else ("partial" if done_ks else "skipped")
    header = int(attrs.get("header_frames") or n_frames)
    if header - n_frames > TRUNCATION_TOLERANCE * header and done_ks:
        status = "truncated"
        messages.insert(0, f"truncated: the header announces {header} frames but only {n_frames} decode; "
                           f"the features cover those {n_frames}")
    return VideoResult(vid, status, "; ".join(messages), done_ks, pairs)


def _chunks_to_compute(vid: str, store: FeatureStore, settings: ExtractionSettings, *, ks,
                       n_frames: int) -> tuple[dict[int, set[int]], list[str]]:
    """({k: chunk indices still to compute}, a message per k the video is too short for).

    Creates each k's arrays and marks a k whose chunks are all written complete.
    """
    todo: dict[int, set[int]] = {}
    messages: list[str] = []
    for k in ks:
        if n_frames < k + 1:
            messages.append(f"k={k} skipped: the video has {n_frames} frames, fewer than k + 1 = {k + 1}")
            continue
        n_windows = n_frames - k
        store.create_features(vid, k, n_windows, settings.backend_name, settings.params,
                              chunk=settings.chunk_windows, save_flow=settings.save_flow)
        if store.is_complete(vid, k):
            continue
        missing = set(np.flatnonzero(~store.written(vid, k)).tolist())
        if missing:
            todo[k] = missing
        else:
            store.mark_complete(vid, k)
    return todo, messages
