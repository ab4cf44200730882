"""The extraction driver: inputs -> prepared videos -> work units on an engine -> complete store.

Per run (SPEC 1-4):

1. Prepare each video (here, in the driver): the reference frame is the first with a face
   (frames up to it are decoded; they are decoded once more by their unit); the frame count
   comes from the folder listing or the video's packet index (:mod:`flowkit.io.video_index`), not
   from a decode pass; the crop box and the crop landmarks of frame 0. A rerun reuses what the
   store recorded.
2. Plan (:func:`flowkit.pipeline.plan.plan_units`, pure): the chunks still to compute, cut into units of
   about ``unit_windows`` windows of one video, for every k at once.
3. Run the units on an engine (:mod:`flowkit.pipeline.engines`): inline, a local process pool (CPU), a
   batched solver fed by decoder processes (torch, CUDA), or Dask. Workers decode their own
   frames once (plus max(k) frames of overlap), solve, and write whole chunks.
4. The driver alone writes metadata: a video whose frames could not be found by seeking is
   read sequentially in a second round; a count that differs from the plan resizes its arrays;
   then ``complete`` is set per (video, k).

Resume: complete (video, k) pairs are skipped and only chunks whose ``written`` flag is false
are computed again. The computation is deterministic, so a resumed store equals an
uninterrupted one, whichever engine computed it.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from flowkit.errors import FlowkitError
from flowkit.io.sources import DATA_ERRORS
from flowkit.io.store import DEFAULT_CHUNK_WINDOWS, FeatureStore
from flowkit.pipeline.plan import DEFAULT_UNIT_WINDOWS, VideoWork, min_units_for, plan_units  # noqa: F401 - re-exported
from flowkit.pipeline.prepare import NoLandmarker, PreparedVideo, as_inputs, prepare_video
from flowkit.pipeline.progress import ProgressBars
from flowkit.pipeline.settings import (  # noqa: F401 - re-exported: the run's settings and presets
    FAST_TVL1,
    TEST_TVL1,
    ExtractionSettings,
    _decoders,
    resolve_settings,
)
from flowkit.pipeline.units import one_line

if TYPE_CHECKING:
    pass

__all__ = ["extract", "resolve_settings", "ExtractionReport", "ExtractionSettings", "VideoResult", "FAST_TVL1",
           "TEST_TVL1"]

# A video failing with one of these is reported and the others go on; anything else is a bug.
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
    """Outcome of :func:`extract`: per-video results, pairs computed and wall time.

    stages: where the time went, seconds per key of :data:`flowkit.pipeline.stages.STAGES`.
    """

    store: Path
    videos: list[VideoResult] = field(default_factory=list)
    pairs: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    engine: dict = field(default_factory=dict)
    stages: dict = field(default_factory=dict)

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
        if self.stages:
            from flowkit.pipeline.stages import format_stages

            lines.append(format_stages(self.stages))
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """The report as JSON-ready data (``flowkit extract --json``)."""
        from dataclasses import asdict

        return {**asdict(self), "store": str(self.store), "pairs_per_s": round(self.pairs_per_s, 3)}


# ---------------------------------------------------------------------- inputs
def _check_interval_bounds(video: PreparedVideo) -> None:
    """After decoding found fewer frames: rows past the end are kept (as the released code keeps
    them: those frames get no window), with a warning."""
    bad = _outside(video.intervals or [], video.n_frames)
    if bad is not None:
        warnings.warn(f"annotation row '{_row(bad)}' ends past the last decodable frame {video.n_frames} of "
                      f"{video.vid}; kept (frames past the end get no window)", UserWarning, stacklevel=2)


def _parallel_units(settings: ExtractionSettings, engine) -> int:
    """Units the engine can run at once: workers, decoders, or Dask workers."""
    if settings.threaded:
        return settings.decoders
    return max(settings.workers, int(engine.stats.get("workers") or 1))


def _prepare_all(videos, intervals_of: dict | None, store, landmarker, *, settings, report,
                 bars) -> list[PreparedVideo]:
    """Prepare every video; ``intervals_of`` is None when no annotations were given (a resumed
    video then keeps the annotations and subject stored by an earlier run)."""
    prepared = []
    for video in videos:
        intervals = intervals_of.get(video.video_id, []) if intervals_of is not None else None
        try:
            prepared.append(prepare_video(video, intervals, store, landmarker, settings))
        except _FAILURE_ERRORS as exc:
            report.videos.append(VideoResult(video.video_id, "failed", one_line(exc)))
            bars.video_done()
        bars.prepared()
    return prepared


def _run_rounds(prepared: list[PreparedVideo], store: FeatureStore, engine, *, settings: ExtractionSettings, ks,
                bars: ProgressBars) -> None:
    """Plan and run units until every video is complete or failed.

    A round normally finishes everything; a video found not to be seekable (a gap) gets a
    second, sequential round, and one whose count changes gets its arrays resized.
    """
    for _ in range(4):  # seek -> sequential -> recount -> done, at most
        work = []
        for v in [v for v in prepared if v.failed is None]:
            try:  # a store made with other settings fails this video alone
                todo, v.messages = _chunks_to_compute(v.vid, store, settings, ks=ks, n_frames=v.n_frames)
            except _FAILURE_ERRORS as exc:
                v.failed = one_line(exc)
                continue
            work.append(VideoWork(v.vid, v.n_frames, todo, settings.chunk_windows, sequential=v.sequential))
        active = [v for v in prepared if v.failed is None]
        parallel = _parallel_units(settings, engine)
        units = plan_units(work, unit_windows=settings.unit_windows, min_units=min_units_for(parallel),
                           workers=parallel)
        if not units:
            return
        by_id = {v.vid: v for v in active}
        bars.add_pairs(sum(u.pairs for u in units))
        outcome: dict[str, dict] = {v.vid: {} for v in active}
        for result in engine.run([by_id[u.video_id].task(u, str(store.path)) for u in units]):
            bars.pairs(result.pairs)
            by_id[result.video_id].pairs += result.pairs
            seen = outcome[result.video_id]
            if result.error:
                seen.setdefault("error", result.error)
            seen["gap"] = seen.get("gap", False) or result.gap
            if result.n_frames is not None:
                seen["n_frames"] = result.n_frames
        for v in active:
            _apply_outcome(v, outcome[v.vid], store)
    raise FlowkitError("extraction should finish within 4 rounds of work units; run extract again to resume")


def _apply_outcome(video: PreparedVideo, seen: dict, store: FeatureStore) -> None:
    """The driver's metadata writes after a round: failure, sequential reading, a new count."""
    if seen.get("error"):
        video.failed = seen["error"]
        return
    if seen.get("gap") and not video.sequential:
        # Frames could not be found by seeking: decode the video from the start, every chunk again.
        store.set_video_attrs(video.vid, reader="sequential")
        video.attrs["reader"], video.index = "sequential", None
        for k in store.ks(video.vid):
            store.unflag_chunks(video.vid, k, range(len(store.written(video.vid, k))))
        return
    n = seen.get("n_frames")
    if n is not None and n != video.n_frames:
        for k in store.ks(video.vid):
            if n - k >= 1:
                store.resize_windows(video.vid, k, n - k)
            else:
                store.drop_k(video.vid, k)
        store.set_video_attrs(video.vid, n_frames=int(n))
        video.attrs["n_frames"] = int(n)
        _check_interval_bounds(video)


def _finish(video: PreparedVideo, store: FeatureStore, ks) -> VideoResult:
    """Set ``complete`` per k and say what happened to the video."""
    vid, n_frames = video.vid, video.n_frames
    if video.failed is not None:
        return VideoResult(vid, "failed", video.failed, pairs=video.pairs)
    done_ks = [k for k in ks if n_frames >= k + 1]
    for k in done_ks:
        if not store.mark_complete(vid, k):
            raise FlowkitError(f"video {vid} k={k}: some chunks were not written; run extract again")
    messages = [f"k={k} skipped: the video has {n_frames} frames, fewer than k + 1 = {k + 1}"
                for k in ks if k not in done_ks]
    status = "done" if not messages else ("partial" if done_ks else "skipped")
    header = int(video.attrs.get("header_frames") or n_frames)
    if header - n_frames > TRUNCATION_TOLERANCE * header and done_ks:
        status = "truncated"
        messages.insert(0, f"truncated: the header announces {header} frames but only {n_frames} decode; "
                           f"the features cover those {n_frames}")
    return VideoResult(vid, status, "; ".join(messages), done_ks, video.pairs)


# ---------------------------------------------------------------------- the pipeline
def _outside(intervals, n_frames: int):
    """The first interval that does not lie within frames 0 .. n_frames - 1, or None."""
    return next((iv for iv in intervals if iv.offset >= n_frames), None)


def _row(iv) -> str:
    return f"{iv.video}, {iv.type}, onset {iv.onset + 1}, offset {iv.offset + 1} (1-based)"


def _check_bounds(videos: list, by_video: dict) -> list[str]:
    """Annotation rows past their video's last frame, as counted by the header or listing (exact
    for image folders): kept, as the released code keeps them, and named in a warning each."""
    from flowkit.io.sources import open_source

    out = []
    for video in videos:
        intervals = by_video.get(video.video_id)
        if not intervals:
            continue
        try:
            n_frames = open_source(video.path).n_frames
        except DATA_ERRORS:  # reported when the video's turn comes
            continue
        out += [f"annotation row '{_row(iv)}' ends past the last frame {n_frames} of {video.video_id}; kept "
                "(frames past the end get no window)" for iv in intervals if n_frames and iv.offset >= n_frames]
    return out


def _annotation_setup(annotations, videos: list, ks, report: ExtractionReport):
    from flowkit.io.annotations import Interval, k_by_type, load_annotations, match_videos

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
    if intervals and not by_video:
        raise FlowkitError(f"annotations should name some of the input videos, got none in common: annotation "
                           f"videos {', '.join(unknown[:4])}{' ...' if len(unknown) > 4 else ''}; input videos "
                           f"{', '.join(v.video_id for v in videos[:4])}{' ...' if len(videos) > 4 else ''}")
    if unknown:
        rows = sum(iv.video in unknown for iv in intervals)
        msg = (f"{rows} annotation row(s) of {len(unknown)} video(s) not among the inputs, ignored: "
               f"{', '.join(unknown[:20])}{' ...' if len(unknown) > 20 else ''}")
        report.warnings.append(msg)
        warnings.warn(msg, UserWarning, stacklevel=3)
    for msg in _check_bounds(videos, by_video):
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
    unit_windows: int | None = None,
    decoders: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    as_released: bool = False,
    face_check: bool = True,
) -> ExtractionReport:
    """Extract SOFTNet features of every input video into a Zarr store (docs/store.md).

    Args:
        inputs: a list of :class:`flowkit.io.sources.VideoInput`, or paths (video files, image
            folders, dataset folders) passed to :func:`flowkit.io.sources.discover_videos`.
        store_path: the ``.zarr`` directory; created, or resumed when it exists.
        ks: window lengths; None derives one per expression type from ``annotations`` (SPEC 2).
        annotations: an annotation file (:func:`flowkit.io.annotations.load_annotations`) or a list of
            :class:`~flowkit.io.annotations.Interval`; stored per video (0-based, inclusive) and as
            root attrs ``k_by_type``.
        landmark_backend: "mediapipe" or "dlib"; ``model_path`` the MediaPipe ``.task`` file.
        flow_backend, device, gpu: TV-L1 backend choice (:func:`flowkit.flow.resolve_backend`).
        flow_impl: the torch solver's implementation, one of ``torch_tvl1.IMPLS``: "auto" (Triton
            kernels on CUDA when the ``gpu`` extra is installed) or one named; other backends
            take only "auto".
        flow_params: ``TVL1Params`` fields; OpenCV's defaults (SPEC 2) when None.
        workers: processes computing TV-L1 + features, each with one OpenCV/torch thread.
            Default: the CPU count for OpenCV; for the torch solver and on CUDA, one solver
            thread in this process (torch threads over the cores itself).
        save_flow: also store the (n_windows, 2, 128, 128) flow.
        chunk_windows: windows per stored chunk (the resume unit).
        batch_windows: pairs per TV-L1 call (a task may span chunks). Default: 2 with a pool,
            so that the last tasks of a video keep every worker busy; on CUDA, what half the
            free memory holds (:func:`flowkit.flow.memory.pairs_per_batch`); else a chunk.
        unit_windows: windows per work unit (rounded up to whole chunks): the unit of
            parallel work and of retries. Default: ``DEFAULT_UNIT_WINDOWS``, or max(k) / 0.15
            when that is more (:func:`flowkit.pipeline.plan.unit_chunks`).
        decoders: processes decoding and cropping for the batched (torch) solver; default:
            the CPU count minus one, at least 1.
        scheduler: run the units on Dask: "tcp://HOST:PORT" (an existing cluster, workers
            that see ``store_path``) or "local:N" (an embedded LocalCluster of N workers).
            Needs the ``dask`` extra. Default: the local engine (:mod:`flowkit.pipeline.engines`).
        progress: tqdm bars: videos prepared, then pairs (pairs/s).
        as_released: the released code's JPEG and cartToPolar round trips (``ExtractionSettings``);
            recorded per video, and a store made otherwise is not resumed with it.
        face_check: after the run, look for the face in up to 200 frames of each new video (one
            more sequential decode in this process) and name a video whose face is lost for more
            than 10 % of its frames in the summary (:mod:`flowkit.face.presence`).

    Returns:
        :class:`ExtractionReport`. A video that fails (no face, unreadable) is recorded there and
        the others go on; a video shorter than k + 1 frames skips that k with a message.

    Raises:
        FlowkitError: bad arguments, an unusable store, or a store locked by another writer.
    """
    from flowkit.face.landmarks import make_landmarker
    from flowkit.pipeline.engines import start_engine

    t_start = time.perf_counter()
    settings = resolve_settings(flow_backend=flow_backend, device=device, gpu=gpu, flow_params=flow_params,
                                flow_impl=flow_impl, workers=workers, chunk_windows=chunk_windows,
                                batch_windows=batch_windows, save_flow=save_flow, landmark_backend=landmark_backend,
                                as_released=as_released)
    if unit_windows is not None and unit_windows < 1:
        raise FlowkitError(f"unit_windows should be >= 1, got {unit_windows}")
    pooled = scheduler is not None or (not settings.threaded and settings.workers > 1)
    settings = replace(settings, unit_windows=None if unit_windows is None else int(unit_windows),
                       unit_threads=1 if pooled else None, decoders=_decoders(decoders))
    videos = as_inputs(inputs)
    if not videos:
        raise FlowkitError(f"inputs should contain at least one video, got none in {inputs!r}")
    report = ExtractionReport(store=Path(store_path))
    by_video, ks, kbt = _annotation_setup(annotations, videos, ks, report)

    early = _check_before_store(store_path, scheduler, landmark_backend, model_path)
    try:
        store = FeatureStore(store_path, mode="a")  # the driver's lock: one driver per store
    except BaseException:
        early.close()
        raise
    bars = ProgressBars(progress, len(videos))
    engine = starting = None
    stopped = False  # by a signal (KeyboardInterrupt) or an error: workers are killed, not waited for
    try:
        store.claim_flow_params(settings.params)  # one TV-L1 setting per store, before any video is touched
        starting = start_engine(settings, scheduler)  # while the videos are prepared
        if kbt:
            store.set_root_attrs(k_by_type={**(store.attrs.get("k_by_type") or {}), **kbt})
        # Loaded only when a video still needs its face (a resumed run needs no model), and then
        # before any video, so that a missing model or bad backend is one error, not a failure per video.
        landmarker = NoLandmarker()
        if any(store.video_attrs(v.video_id).get("crop_box") is None if store.has_video(v.video_id) else True
               for v in videos):
            landmarker = early if not isinstance(early, NoLandmarker) else make_landmarker(
                landmark_backend, model_path=model_path)
        try:
            prepared = _prepare_all(videos, by_video if annotations is not None else None, store, landmarker,
                                    settings=settings, report=report, bars=bars)
            engine = starting.result()
            _run_rounds(prepared, store, engine, settings=settings, ks=ks, bars=bars)
            report.stages = _stages(engine.stats.get("stages") or {}, time.perf_counter() - t_start)
            lost = _faces_lost(prepared, store, landmarker,
                               lambda: make_landmarker(landmark_backend, model_path=model_path)) if face_check else {}
        finally:
            if hasattr(landmarker, "close"):
                landmarker.close()
        for video in prepared:
            report.videos.append(_finish(video, store, ks))
            if lost.get(video.vid) and report.videos[-1].status != "failed":
                report.videos[-1].message = "; ".join(filter(None, [report.videos[-1].message, lost[video.vid]]))
                report.warnings.append(f"{video.vid}: {lost[video.vid]}")
            bars.video_done()
        report.engine = dict(engine.stats)
    except BaseException:
        stopped = True
        raise
    finally:
        bars.close()
        early.close()  # idempotent: normally closed once its videos are prepared
        if engine is None and starting is not None:
            engine = _started(starting)  # no cluster or pool may outlive the run
        if engine is not None:
            engine.terminate() if stopped else engine.close()
        store.close()
    order = {v.video_id: n for n, v in enumerate(videos)}
    report.videos.sort(key=lambda r: order[r.video_id])
    report.pairs = sum(r.pairs for r in report.videos)
    report.seconds = time.perf_counter() - t_start
    return report


def _stages(engine_stages: dict, seconds: float) -> dict:
    """The engine's stage timings with "prepare_s": the driver's time outside the engine so far
    (settings, landmarker, faces, frame counts, store entries, plans)."""
    from flowkit.pipeline.stages import STAGES

    stages = {**engine_stages, "prepare_s": round(seconds - engine_stages.get("engine_wall_s", 0.0), 3)}
    return {k: stages[k] for k in STAGES if k in stages}


def _faces_lost(prepared: list[PreparedVideo], store: FeatureStore, landmarker, load) -> dict[str, str]:
    """{video id: summary line} of the videos whose face is lost for more than a share of their
    frames (:mod:`flowkit.face.presence`); the spans are stored once per video (attr ``face_lost``)."""
    from flowkit.face.presence import describe_lost, lost_spans

    out, loaded = {}, None
    try:
        for video in [v for v in prepared if v.failed is None]:
            spans = video.attrs.get("face_lost")
            if spans is None:
                if isinstance(landmarker, NoLandmarker):
                    landmarker = loaded = load()  # prepared by an interrupted run: looked at now
                try:
                    spans = lost_spans(video.input.path, landmarker, n_frames=video.n_frames)
                except _FAILURE_ERRORS:  # its reading problems are reported by the extraction itself
                    continue
                store.set_video_attrs(video.vid, face_lost=spans)
            message = describe_lost(spans, video.n_frames)
            if message:
                out[video.vid] = message
    finally:
        if loaded is not None:
            loaded.close()
    return out


def _check_before_store(store_path, scheduler: str | None, landmark_backend: str, model_path):
    """The options the run needs later, checked before the store is created: the scheduler string,
    and for a new store (every video needs its face) the landmarker itself, which is returned."""
    from flowkit.face.landmarks import make_landmarker
    from flowkit.pipeline.engines import check_scheduler

    if scheduler:
        check_scheduler(scheduler)
    if (Path(store_path) / "zarr.json").is_file():
        return NoLandmarker()
    return make_landmarker(landmark_backend, model_path=model_path)


def _started(starting):
    """The engine a failed run had started, or None when its start failed too."""
    try:
        return starting.result()
    except Exception:  # noqa: BLE001 - the run's own error is the one to report
        return None


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
