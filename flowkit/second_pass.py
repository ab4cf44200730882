"""The second pass of :func:`flowkit.extract.extract`: crop frames, solve windows, write chunks.

Internal to the pipeline, but a documented seam that tests drive with fake sources, executors
and stores. Window i of length k pairs crop i with crop i + k; the store keeps the windows of
each k in chunks of ``chunk`` windows, the resume unit. Three parts:

1. :func:`plan_tasks`, pure: per k, the (start, stop) window tasks covering the chunks still to
   compute, at most ``batch`` windows each, and how many tasks overlap each chunk. A task may
   span several consecutive chunks (a GPU batch larger than a chunk) or cover part of one.
2. :class:`ChunkAssembler`: takes each task's features (B, 3, 42, 42) and flow (B, 2, H, W)
   and writes a chunk to the store once every task overlapping it is back.
3. :func:`stream_windows`: decodes and crops the frames into a rolling buffer of about
   ``max(k) + batch`` crops, submits each task (:func:`compute_windows`) to an executor as soon
   as its last frame is cropped, and hands the results to the assembler.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

import numpy as np

from flowkit.errors import FlowkitError

if TYPE_CHECKING:
    from flowkit.extract import ExtractionSettings

__all__ = ["TaskPlan", "plan_tasks", "chunk_runs", "ChunkAssembler", "stream_windows", "compute_windows"]


def chunk_runs(indices: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted ints as (first, last) runs of consecutive values.

    >>> chunk_runs([0, 1, 2, 5, 7, 8])
    [(0, 2), (5, 5), (7, 8)]
    """
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and i == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


@dataclass(frozen=True)
class TaskPlan:
    """The window tasks of one video's second pass (:func:`plan_tasks`).

    n_frames: frames of the video; k has n_frames - k windows.
    chunk: windows per stored chunk; chunk j holds windows j * chunk .. (j + 1) * chunk - 1.
    tasks: {k: ((start, stop), ...)} in window order, stop exclusive. Task (s, e) can run once
        crop e - 1 + k exists.
    parts: {(k, j): number of tasks that overlap chunk j}, for each chunk to compute.
    """

    n_frames: int
    chunk: int
    tasks: dict[int, tuple[tuple[int, int], ...]]
    parts: dict[tuple[int, int], int]

    @property
    def pairs(self) -> int:
        """Windows (frame pairs) that the tasks compute, all k together."""
        return sum(e - s for ts in self.tasks.values() for s, e in ts)


def plan_tasks(todo: dict[int, Iterable[int]], n_frames: int, *, chunk: int, batch: int) -> TaskPlan:
    """Tasks of at most ``batch`` windows covering the chunks ``todo`` ({k: chunk indices}).

    Each run of consecutive chunks is cut into tasks from its first window on, so a task may
    span chunks but never a gap between chunks that are already written.

    >>> plan = plan_tasks({2: {0, 1, 3}}, 30, chunk=8, batch=5)  # 28 windows, chunk 3 is short
    >>> plan.tasks[2]
    ((0, 5), (5, 10), (10, 15), (15, 16), (24, 28))
    >>> plan.parts
    {(2, 0): 2, (2, 1): 3, (2, 3): 1}
    """
    tasks: dict[int, tuple[tuple[int, int], ...]] = {}
    parts: dict[tuple[int, int], int] = {}
    for k, js in todo.items():
        n_windows = n_frames - k
        queue = []
        for first, last in chunk_runs(sorted(js)):
            c0, c1 = first * chunk, min((last + 1) * chunk, n_windows)
            for s in range(c0, c1, batch):
                e = min(s + batch, c1)
                queue.append((s, e))
                for j in range(s // chunk, (e - 1) // chunk + 1):
                    parts[(k, j)] = parts.get((k, j), 0) + 1
        tasks[k] = tuple(queue)
    return TaskPlan(n_frames, chunk, tasks, parts)


class ChunkAssembler:
    """Collects task results and writes each chunk once all the tasks overlapping it are back.

    ``store`` needs ``write_chunk(vid, k, j, feats, flow)``; a chunk of n windows is written as
    features (n, 3, 42, 42) float32 and, with ``save_flow``, flow (n, 2, H, W) float32 (else
    None). Results may arrive in any order.
    """

    def __init__(self, store, vid: str, plan: TaskPlan, *, save_flow: bool):
        self.store = store
        self.vid = vid
        self.chunk = plan.chunk
        self.save_flow = save_flow
        self._left = dict(plan.parts)
        self._parts: dict[tuple[int, int], list] = {}

    def add(self, k: int, task: tuple[int, int], feats: np.ndarray, flow: np.ndarray | None = None) -> None:
        """Take the result of task (start, stop) of k: feats (B, 3, 42, 42), flow (B, 2, H, W)
        or None, B = stop - start."""
        s, e = task
        chunk = self.chunk
        for j in range(s // chunk, (e - 1) // chunk + 1):
            lo, hi = max(s, j * chunk) - s, min(e, (j + 1) * chunk) - s
            self._parts.setdefault((k, j), []).append((lo + s, feats[lo:hi], flow[lo:hi] if self.save_flow else None))
            self._left[(k, j)] -= 1
            if self._left[(k, j)] == 0:
                self._write(k, j)

    def _write(self, k: int, j: int) -> None:
        parts = sorted(self._parts.pop((k, j)), key=lambda p: p[0])
        f = np.concatenate([p[1] for p in parts])
        fl = np.concatenate([p[2] for p in parts]) if self.save_flow else None
        self.store.write_chunk(self.vid, k, j, f, fl)


def compute_windows(prev: np.ndarray, nxt: np.ndarray, landmarks: np.ndarray, settings: ExtractionSettings):
    """TV-L1 on (B, 128, 128) uint8 crop pairs, then the features; the task run by the executor.

    With the torch backend the crops move to ``settings.device`` once and the flow, strain,
    head-motion correction, eye mask and ROI all stay there; only the features come back.

    Returns:
        (features (B, 3, 42, 42) float32, flow (B, 2, 128, 128) float32 when
        ``settings.save_flow``, else None), numpy on the host.
    """
    from flowkit.features import features_from_flow
    from flowkit.flow import tvl1

    backend, device = settings.backend, settings.device
    if backend == "torch":
        import torch

        dev = torch.device(device) if device is not None else torch.device("cpu")
        prev, nxt = torch.from_numpy(prev).to(dev), torch.from_numpy(nxt).to(dev)
    impl = {"impl": settings.flow_impl} if backend == "torch" else {}  # OpenCV has one implementation
    flow = tvl1(prev, nxt, backend=backend, device=device, **impl, **settings.params)
    feats = features_from_flow(flow, landmarks)
    feats = feats.detach().cpu().numpy().astype(np.float32, copy=False)
    if settings.save_flow:
        import torch

        flow = flow.detach().cpu().numpy() if isinstance(flow, torch.Tensor) else np.asarray(flow)
        return feats, flow.astype(np.float32, copy=False)
    return feats, None


class _InFlight:
    """Submitted tasks, collected in submission order into the assembler."""

    def __init__(self, assembler: ChunkAssembler, bars, limit: int):
        self.assembler = assembler
        self.bars = bars
        self.limit = limit
        self.pending: deque = deque()
        self.pairs = 0

    def add(self, fut, k: int, task: tuple[int, int]) -> None:
        self.pending.append((fut, k, task))
        self.drain(self.limit)

    def drain(self, limit: int) -> None:
        """Wait while more than ``limit`` tasks are pending, then take every finished one."""
        while len(self.pending) > limit:
            self._collect(*self.pending.popleft())
        while self.pending and self.pending[0][0].done():
            self._collect(*self.pending.popleft())

    def _collect(self, fut, k: int, task: tuple[int, int]) -> None:
        feats, flow = fut.result()
        s, e = task
        self.bars.pairs(e - s)
        self.pairs += e - s
        self.assembler.add(k, task, feats, flow)


def stream_windows(source, plan: TaskPlan, assembler: ChunkAssembler, *, box, landmarks: np.ndarray, executor,
                   settings: ExtractionSettings, bars) -> int:
    """Crop ``plan.n_frames`` frames of ``source`` and run every task of ``plan`` on ``executor``.

    Args:
        source: frames (H, W, 3) uint8 BGR in order, with a ``path`` for the error message.
        plan: from :func:`plan_tasks`.
        assembler: receives each task's result, in submission order.
        box: crop box (x0, y0, x1, y1) of :func:`flowkit.crop.crop_face`.
        landmarks: crop landmarks (68, 2) float32.
        executor: ``submit(fn, *args)`` returning a future, like ``concurrent.futures``; it
            gets :func:`compute_windows` with prev, nxt (B, 128, 128) uint8, the landmarks and
            ``settings``. At most ``max(2, 3 * settings.workers)`` tasks wait at a time.
        settings: the run's :class:`flowkit.extract.ExtractionSettings`.
        bars: ``pairs(n)`` is called with each task's window count once it is back.

    Returns:
        The number of windows computed.

    Raises:
        FlowkitError: ``source`` ends before ``plan.n_frames`` frames.
    """
    from flowkit.crop import crop_face

    tasks = {k: deque(ts) for k, ts in plan.tasks.items()}
    inflight = _InFlight(assembler, bars, max(2, 3 * settings.workers))
    lm = np.asarray(landmarks, dtype=np.float32)
    buffer: dict[int, np.ndarray] = {}
    index = -1
    for index, frame in enumerate(source):
        if index >= plan.n_frames:
            break
        buffer[index] = crop_face(frame, box)
        for k, queue in tasks.items():
            while queue and queue[0][1] - 1 + k <= index:
                s, e = queue.popleft()
                prev = np.stack([buffer[i] for i in range(s, e)])
                nxt = np.stack([buffer[i + k] for i in range(s, e)])
                inflight.add(executor.submit(compute_windows, prev, nxt, lm, settings), k, (s, e))
        tasks = {k: q for k, q in tasks.items() if q}
        if not tasks:
            break
        oldest = min(q[0][0] for q in tasks.values())
        for i in [i for i in buffer if i < oldest]:
            del buffer[i]
    if tasks:
        raise FlowkitError(f"{source.path} should yield {plan.n_frames} frames as in the first pass, got {index + 1}")
    inflight.drain(0)
    return inflight.pairs
