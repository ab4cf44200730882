"""Running one work unit (:mod:`flowkit.pipeline.plan`): read its frames, crop, solve its windows, write its chunks.

The same function, :func:`run_unit`, runs in the local process pool, inline, and on Dask
workers; the batched GPU engine uses :func:`decode_unit` in its decoder processes and solves
the windows itself. A :class:`UnitTask` carries everything a unit needs and nothing that needs
the driver: the crop box and landmarks, the image files or the part of the video index it
reads, and the store's path (chunks are written through :class:`flowkit.io.store.ChunkWriter`).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

import numpy as np

from flowkit.errors import FlowkitError
from flowkit.io.sources import DATA_ERRORS
from flowkit.pipeline.plan import WorkUnit, windows_of

if TYPE_CHECKING:
    from flowkit.pipeline.settings import ExtractionSettings

__all__ = ["UnitTask", "UnitResult", "DecodedUnit", "run_unit", "decode_unit", "compute_windows", "one_line", "to_host"]


@dataclass(frozen=True)
class UnitTask:
    """A :class:`WorkUnit` with what it needs to run anywhere (picklable, small).

    box: crop box (x0, y0, x1, y1) in source pixels; landmarks: (68, 2) float32 crop landmarks.
    files: image folders: the files of frames ``unit.frames[0]`` on; None for video files.
    index: video files read by seeking: :meth:`flowkit.io.video_index.VideoIndex.window` of the
        unit's frames; None for image folders and videos read sequentially.
    frame_shape: (H, W, 3) every frame must have (image folders; None: not checked).
    jpeg: crops go through the released code's JPEG round trip (``crop_face(jpeg=True)``).
    """

    unit: WorkUnit
    path: str
    store: str
    box: tuple[int, int, int, int]
    landmarks: np.ndarray
    files: tuple[str, ...] | None = None
    index: object | None = None
    frame_shape: tuple[int, ...] | None = None
    jpeg: bool = False


@dataclass
class UnitResult:
    """What a unit did. ``n_frames``: the video's true frame count when the unit read up to its
    end (a sequential unit, or one whose frames reach the last frame); ``gap``: the frames could
    not be found by seeking (the driver reads the video sequentially instead); ``error``: one
    line when the video's data is unusable."""

    video_id: str
    start: int
    pairs: int = 0
    n_frames: int | None = None
    gap: bool = False
    error: str | None = None
    seconds: float = 0.0
    written: list[tuple[int, int]] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)


def one_line(exc: BaseException) -> str:
    """An exception as one line, for a video's failure message."""
    import cv2

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if isinstance(exc, (FlowkitError, cv2.error)) else f"{type(exc).__name__}: {text}"


def compute_windows(prev: np.ndarray, nxt: np.ndarray, landmarks: np.ndarray, settings: ExtractionSettings, *,
                    stages: dict | None = None):
    """TV-L1 on (B, 128, 128) uint8 crop pairs, then the features.

    With the torch backend the crops move to ``settings.device`` once and the flow, strain,
    head-motion correction, eye mask and ROI all stay there; only the features come back.
    ``stages``, when given, gains the seconds of "solve_s", "features_s" and "download_s".

    Returns:
        (features (B, 3, 42, 42) float32, flow (B, 2, 128, 128) float32 when
        ``settings.save_flow``, else None), numpy on the host.
    """
    from flowkit.features.chain import features_from_flow

    stages = {} if stages is None else stages
    t0 = time.perf_counter()
    flow = settings.solve(prev, nxt)
    t1 = time.perf_counter()
    feats = features_from_flow(flow, landmarks)
    t2 = time.perf_counter()
    feats = to_host(feats)
    flow = to_host(flow) if settings.save_flow else None
    t3 = time.perf_counter()
    for key, seconds in (("solve_s", t1 - t0), ("features_s", t2 - t1), ("download_s", t3 - t2)):
        stages[key] = stages.get(key, 0.0) + seconds
    return feats, flow


def to_host(flow) -> np.ndarray:
    """A flow (B, 2, H, W) or features (B, 3, 42, 42) as float32 numpy on the host, from a torch
    tensor or numpy."""
    import torch

    flow = flow.detach().cpu().numpy() if isinstance(flow, torch.Tensor) else np.asarray(flow)
    return flow.astype(np.float32, copy=False)


def unit_frames(task: UnitTask) -> Iterator[tuple[int, np.ndarray]]:
    """(i, (H, W, 3) uint8 BGR, or (H, W) gray for one-channel images) for the frames the unit
    reads, in order; a sequential unit reads to the end of the video, whatever it planned."""
    first, stop = task.unit.frames
    if task.files is not None:
        from flowkit.io.sources import read_image_files

        yield from read_image_files(task.files, first, shape=task.frame_shape, keep_gray=True)
        return
    from flowkit.io.video_index import read_range, read_sequential

    if task.unit.sequential or task.index is None:
        yield from read_sequential(task.path, first)
    else:
        yield from read_range(task.path, task.index, first, stop)


class _Chunks:
    """The unit's chunks, per k in window order, each computed as soon as its last frame is in.

    Per frame this looks at the first waiting chunk of each k only: a sequential unit covers a
    whole video, thousands of chunks.
    """

    def __init__(self, unit: WorkUnit):
        self.unit = unit
        self.queues = {k: deque(js) for k, js in unit.chunks}

    def ready(self, last_frame: int) -> list[tuple[int, int]]:
        out = []
        for k, queue in self.queues.items():
            while queue and windows_of(self.unit, k, queue[0])[1] - 1 + k <= last_frame:
                out.append((k, queue.popleft()))
        return out

    @property
    def pending(self) -> bool:
        return any(self.queues.values())

    def oldest_frame(self) -> int | None:
        return min((windows_of(self.unit, k, q[0])[0] for k, q in self.queues.items() if q), default=None)


def run_unit(task: UnitTask, settings: ExtractionSettings) -> UnitResult:
    """Decode, crop, solve and write every chunk of ``task``; data errors end in the result.

    A sequential unit reads to the end of the video and reports the frame count; when it finds
    fewer frames than planned, its last chunks are computed shorter. Errors that are not about
    the video's data (bugs) propagate.
    """
    from flowkit.io.store import ChunkWriter
    from flowkit.io.video_index import FrameGap

    t0 = time.perf_counter()
    unit = task.unit
    result = UnitResult(unit.video_id, unit.start)
    solver = _ChunkSolver(task, settings, ChunkWriter(task.store), result)
    try:
        settings.limit_threads()
        count = solver.feed(unit_frames(task))
        if unit.sequential:
            result.n_frames = count
            solver.finish(count)  # the video ended early: its last chunks are shorter
        elif solver.chunks.pending:
            raise FrameGap(f"{task.path}: frames should reach {unit.frames[1]}, got {count}")
        elif unit.frames[1] >= unit.n_frames:
            result.n_frames = unit.n_frames  # the last indexed frame decoded
    except FrameGap:
        result.gap = True
    except DATA_ERRORS as exc:
        result.error = one_line(exc)
    result.seconds = time.perf_counter() - t0
    return result


class _ChunkSolver:
    """Crops frames into a rolling buffer and solves each chunk of the unit once its frames are in."""

    def __init__(self, task: UnitTask, settings: ExtractionSettings, writer, result: UnitResult):
        self.task, self.settings, self.writer, self.result = task, settings, writer, result
        self.unit = task.unit
        self.chunks = _Chunks(task.unit)
        self.landmarks = np.asarray(task.landmarks, dtype=np.float32)
        self.buffer: dict[int, np.ndarray] = {}
        self.stages = result.stages

    def _frames(self, frames) -> Iterator[tuple[int, np.ndarray]]:
        """``frames`` with the seconds spent decoding them counted as "decode_s"."""
        it = iter(frames)
        while True:
            t0 = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                return
            finally:
                self._count("decode_s", time.perf_counter() - t0)
            yield item

    def _count(self, key: str, seconds: float) -> None:
        self.stages[key] = self.stages.get(key, 0.0) + seconds

    def feed(self, frames) -> int:
        """Take (i, frame) in order; returns the count of frames seen (i + 1 of the last)."""
        from flowkit.face.crop import crop_face

        stop = self.unit.frames[1]
        count = self.unit.frames[0]
        for i, frame in self._frames(frames):
            count = i + 1
            if i >= stop:
                continue  # a sequential unit counting the frames past its plan
            t0 = time.perf_counter()
            self.buffer[i] = crop_face(frame, self.task.box, jpeg=self.task.jpeg)
            self._count("decode_s", time.perf_counter() - t0)
            for k, j in self.chunks.ready(i):
                self._solve(k, j, self.unit.n_frames)
            oldest = self.chunks.oldest_frame()
            if oldest is None and not self.unit.sequential:
                break
            for old in [old for old in self.buffer if oldest is None or old < oldest]:
                del self.buffer[old]
        return count

    def finish(self, n_frames: int) -> None:
        """Solve the chunks still pending, for a video of ``n_frames`` frames."""
        for k, j in self.chunks.ready(self.unit.frames[1]):
            s, e = windows_of(self.unit, k, j, n_frames)
            if e > s:
                self._solve(k, j, n_frames)

    def _solve(self, k: int, j: int, n_frames: int) -> None:
        s, e = windows_of(self.unit, k, j, n_frames)
        batch = self.settings.batch_windows
        feats, flows = [], []
        for b in range(s, e, batch):
            stop = min(b + batch, e)
            prev = np.stack([self.buffer[i] for i in range(b, stop)])
            nxt = np.stack([self.buffer[i + k] for i in range(b, stop)])
            f, fl = compute_windows(prev, nxt, self.landmarks, self.settings, stages=self.stages)
            feats.append(f)
            flows.append(fl)
        flow = np.concatenate(flows) if self.settings.save_flow else None
        t0 = time.perf_counter()
        self.writer.write_chunk(self.unit.video_id, k, j, np.concatenate(feats), flow, n_windows=n_frames - k)
        self._count("write_s", time.perf_counter() - t0)
        self.result.pairs += e - s
        self.result.written.append((k, j))


@dataclass
class DecodedUnit:
    """A unit's crops for the batched engine: crops[i - first] is frame i's (128, 128) uint8 crop.

    span: (start, end) of the decoding in ``time.monotonic()`` seconds, one clock for every
    process of the machine.
    """

    task: UnitTask
    first: int = 0
    crops: np.ndarray | None = None
    gap: bool = False
    error: str | None = None
    span: tuple[float, float] = (0.0, 0.0)


def decode_unit(task: UnitTask) -> DecodedUnit:
    """Read and crop a (non-sequential) unit's frames; data errors and gaps end in the result."""
    from flowkit.io.video_index import FrameGap

    first, stop = task.unit.frames
    out = DecodedUnit(task, first)
    start = time.monotonic()
    try:
        from flowkit.face.crop import crop_face

        crops = [crop_face(frame, task.box, jpeg=task.jpeg) for _, frame in unit_frames(task)]
        if len(crops) < stop - first:
            raise FrameGap(f"{task.path}: frames should reach {stop}, got {first + len(crops)}")
        out.crops = np.stack(crops)
    except FrameGap:
        out.gap = True
    except DATA_ERRORS as exc:
        out.error = one_line(exc)
    out.span = (start, time.monotonic())
    return out
