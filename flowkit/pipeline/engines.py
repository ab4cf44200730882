"""Engines: who runs the work units of an extraction, and where.

Every engine takes :class:`flowkit.pipeline.units.UnitTask` s and yields a
:class:`flowkit.pipeline.units.UnitResult` per task, in any order; the driver (:func:`flowkit.pipeline.extract.extract`)
plans, keeps the store's metadata and decides what a result means. Workers write their chunks
themselves (:class:`flowkit.io.store.ChunkWriter`).

- :class:`InlineEngine`: in this process, one unit after the other (``workers=1``).
- :class:`ProcessEngine`: a local process pool, one unit per process at a time, so decoding is
  parallel too (the CPU default: one process per core).
- :class:`BatchedEngine`: for a solver that wants big batches (torch, on CUDA above all):
  decoder processes read and crop units, and one solver in this process takes the windows of
  every decoded unit, across videos and k values, into batches of at most ``batch_windows``
  (and ``BATCH_TARGET``); ``WRITERS`` threads write the chunks, off the solver's thread.
- :class:`DaskEngine`: the units as Dask tasks on a cluster (``scheduler="tcp://host:port"``)
  or on an embedded LocalCluster (``scheduler="local:N"``). A worker that dies takes its units
  with it and Dask runs them again elsewhere; they rewrite the same bytes.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import threading
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Iterator

import numpy as np

from flowkit.errors import FlowkitError
from flowkit.pipeline.plan import windows_of
from flowkit.pipeline.units import DecodedUnit, UnitResult, UnitTask, decode_unit, run_unit, to_host

if TYPE_CHECKING:
    from flowkit.pipeline.extract import ExtractionSettings

__all__ = ["WORKER_PRELOAD", "BatchedEngine", "DaskEngine", "InlineEngine", "ProcessEngine", "check_scheduler",
           "make_engine", "start_engine"]

#: The batched solver's batch, at most: larger batches keep a GPU busier (pairs/s by batch size in
#: docs/gpu.md), while a batch as large as the GPU's memory would wait for every unit's decoding
#: before solving.
BATCH_TARGET = 2048
WRITERS = 4


def make_engine(settings: ExtractionSettings, scheduler: str | None = None):
    """The engine for ``settings`` (see the module docstring); ``scheduler`` picks Dask."""
    if scheduler:
        return DaskEngine(settings, scheduler)
    return _local_engine(settings)


def start_engine(settings: ExtractionSettings, scheduler: str | None = None) -> cf.Future:
    """:func:`make_engine` in a thread, so that a Dask cluster starts (and its workers import
    torch) while the driver prepares the videos; a bad ``scheduler`` string fails here, at once."""
    if scheduler:
        check_scheduler(scheduler)
    starter = cf.ThreadPoolExecutor(1, thread_name_prefix="flowkit-engine-start")
    try:
        return starter.submit(make_engine, settings, scheduler)
    finally:
        starter.shutdown(wait=False)


def _local_engine(settings: ExtractionSettings):
    if settings.threaded:
        return BatchedEngine(settings)
    if settings.workers <= 1:
        return InlineEngine(settings)
    return ProcessEngine(settings)


class InlineEngine:
    """Runs each unit in this process, one after the other."""

    def __init__(self, settings: ExtractionSettings):
        self.settings = settings
        self.stats: dict = {"engine": "inline"}

    def run(self, tasks: list[UnitTask]) -> Iterator[UnitResult]:
        for task in tasks:
            yield run_unit(task, self.settings)

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------- local processes
def _init_worker(driver_pid: int) -> None:
    import cv2
    import torch

    # One process per core: more OpenCV or torch threads per process only contend.
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    _exit_with_driver(driver_pid)


def _exit_with_driver(driver_pid: int, period_s: float = 0.5) -> None:
    """End this worker soon after the driver process dies, even by SIGKILL.

    A worker's parent is the forkserver, not the driver, so a parent-death signal would not see
    the driver go; a daemon thread polls the driver's pid instead (any POSIX system).
    """

    def watch() -> None:
        while True:
            time.sleep(period_s)
            try:
                os.kill(driver_pid, 0)
            except (ProcessLookupError, PermissionError):  # gone (or its pid reused by another user)
                os._exit(1)  # chunks already written are whole; the next run resumes from their flags

    threading.Thread(target=watch, name="flowkit-driver-watch", daemon=True).start()


#: What a worker imports before its first unit (the forkserver of the local pool, Dask's local:N workers).
WORKER_PRELOAD = ("flowkit.pipeline.units", "flowkit.features.chain", "flowkit.flow", "flowkit.io.store", "cv2",
                  "torch", "zarr")


def process_pool(workers: int) -> cf.ProcessPoolExecutor:
    """``workers`` processes that exit with this one, started from a forkserver that has the
    heavy imports done (each worker starts in milliseconds instead of importing torch again)."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        from multiprocessing import forkserver

        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(list(WORKER_PRELOAD))
        forkserver.ensure_running()  # its imports now, not at the first unit (start_engine runs this early)
    else:
        ctx = multiprocessing.get_context("spawn")
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                  initargs=(os.getpid(),))


class ProcessEngine:
    """A local pool of ``settings.workers`` processes, each running whole units."""

    def __init__(self, settings: ExtractionSettings):
        self.settings = settings
        self.pool = process_pool(settings.workers)
        self.stats: dict = {"engine": "processes", "workers": settings.workers}

    def run(self, tasks: list[UnitTask]) -> Iterator[UnitResult]:
        futures = [self.pool.submit(run_unit, t, self.settings) for t in tasks]
        try:
            for fut in cf.as_completed(futures):
                yield fut.result()
        except cf.BrokenExecutor as exc:
            raise FlowkitError(f"a worker process died during extraction: {exc}") from None
        finally:
            for fut in futures:
                fut.cancel()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------- batched solver
class _UnitState:
    """A decoded unit's chunks being filled by the batched solver."""

    def __init__(self, decoded: DecodedUnit):
        from flowkit.io.store import ChunkWriter

        self.decoded = decoded
        self.task = decoded.task
        self.result = UnitResult(self.task.unit.video_id, self.task.unit.start)
        unit = self.task.unit
        self.parts: dict[tuple[int, int], list] = {}
        spans = {(k, j): windows_of(unit, k, j) for k, js in unit.chunks for j in js}
        self.left = {key: stop - start for key, (start, stop) in spans.items()}
        self.writes: list[cf.Future] = []
        self.chunk_writer = ChunkWriter(self.task.store)  # opens each k group once for the unit's chunks

    def windows(self) -> Iterator[tuple[_UnitState, int, int, int]]:
        for k, js in self.task.unit.chunks:
            for j in js:
                s, e = windows_of(self.task.unit, k, j)
                for i in range(s, e):
                    yield self, k, j, i

    def crop(self, i: int) -> np.ndarray:
        return self.decoded.crops[i - self.decoded.first]


class BatchedEngine:
    """Decoder processes feed one batched solver in this thread; writer threads store the chunks.

    Pairs from every decoded unit (any video, any k) go into batches of ``min(settings.batch_windows, BATCH_TARGET)``;
    the solver never waits for one video's decoding while another's frames are ready. CUDA
    out-of-memory errors halve the batch inside the solver (``tvl1_torch``) and never lose a
    written chunk. ``stats`` reports the solver's busy seconds and idle fraction.
    """

    def __init__(self, settings: ExtractionSettings):
        self.settings = settings
        self.decoders = max(1, settings.decoders)
        self.pool = process_pool(self.decoders) if self.decoders > 1 else None
        # Compression and file writes release the GIL: a few writer threads keep up with the solver.
        self.writer = cf.ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="flowkit-writer")
        self.stats: dict = {"engine": "batched", "decoders": self.decoders, "batch_windows": settings.batch_windows,
                            "solver_busy_s": 0.0, "decode_wait_s": 0.0, "write_wait_s": 0.0, "wall_s": 0.0}

    def _decode(self, task: UnitTask) -> cf.Future:
        if self.pool is None:
            fut: cf.Future = cf.Future()
            fut.set_result(decode_unit(task))
            return fut
        return self.pool.submit(decode_unit, task)

    def run(self, tasks: list[UnitTask]) -> Iterator[UnitResult]:
        t0 = time.perf_counter()
        for task in [t for t in tasks if t.unit.sequential]:  # rare: a video that cannot be seeked
            yield run_unit(task, self.settings)
        todo = deque(t for t in tasks if not t.unit.sequential)
        decoding: deque[cf.Future] = deque()
        pairs: deque = deque()
        open_units: list[_UnitState] = []
        batch = min(self.settings.batch_windows, BATCH_TARGET)
        prefetch = 2 * self.decoders + 2
        while todo or decoding or pairs or open_units:
            while todo and len(decoding) < prefetch:
                decoding.append(self._decode(todo.popleft()))
            # Fill a batch from decoded units, waiting for the oldest decode only when it is not full.
            while len(pairs) < batch and decoding:
                t_wait = time.perf_counter()
                decoded = decoding.popleft().result()
                self.stats["decode_wait_s"] += time.perf_counter() - t_wait
                if todo:
                    decoding.append(self._decode(todo.popleft()))
                if decoded.gap or decoded.error:
                    yield UnitResult(decoded.task.unit.video_id, decoded.task.unit.start, gap=decoded.gap,
                                     error=decoded.error)
                    continue
                state = _UnitState(decoded)
                open_units.append(state)
                pairs.extend(state.windows())
            if pairs:
                self._solve([pairs.popleft() for _ in range(min(batch, len(pairs)))])
            elif open_units:  # everything solved: wait for the writer
                t_wait = time.perf_counter()
                cf.wait([f for st in open_units for f in st.writes], return_when=cf.FIRST_COMPLETED)
                self.stats["write_wait_s"] += time.perf_counter() - t_wait
            for state in [st for st in open_units if not st.left and all(f.done() for f in st.writes)]:
                open_units.remove(state)
                for f in state.writes:
                    f.result()  # a failed write is a bug or a full disk: raise it
                yield state.result
        self.stats["wall_s"] += time.perf_counter() - t0
        wall = self.stats["wall_s"]
        self.stats["solver_idle_fraction"] = round(1 - self.stats["solver_busy_s"] / wall, 3) if wall else None

    def _solve(self, items: list) -> None:
        """One batch of (unit, k, chunk, window) items: TV-L1 on the device, features per video."""
        from flowkit.features.chain import features_from_flow

        t0 = time.perf_counter()
        prev = np.stack([st.crop(i) for st, k, j, i in items])
        nxt = np.stack([st.crop(i + k) for st, k, j, i in items])
        flow = self.settings.solve(prev, nxt)
        by_unit: dict[int, list[int]] = {}
        for n, (st, *_rest) in enumerate(items):
            by_unit.setdefault(id(st), []).append(n)
        feats = np.empty((len(items), 3, 42, 42), np.float32)
        for rows in by_unit.values():
            st = items[rows[0]][0]
            idx = rows if len(rows) < len(items) else slice(None)
            f = features_from_flow(flow[idx], np.asarray(st.task.landmarks, np.float32))
            feats[rows] = to_host(f)
        flows = to_host(flow) if self.settings.save_flow else None
        self.stats["solver_busy_s"] += time.perf_counter() - t0
        for n, (st, k, j, i) in enumerate(items):
            st.parts.setdefault((k, j), []).append((i, feats[n], None if flows is None else flows[n]))
            st.left[(k, j)] -= 1
            if st.left[(k, j)] == 0:  # the chunk is whole: its result is counted here, written there
                del st.left[(k, j)]
                parts = st.parts.pop((k, j))
                st.result.pairs += len(parts)
                st.result.written.append((k, j))
                st.writes.append(self.writer.submit(self._write, st, k, j, parts))
                if not st.left and st.task.unit.frames[1] >= st.task.unit.n_frames:
                    st.result.n_frames = st.task.unit.n_frames  # the last indexed frame decoded

    def _write(self, state: _UnitState, k: int, j: int, parts: list) -> None:
        """One chunk, on a writer thread: (window, features (3, 42, 42), flow or None) parts."""
        parts = sorted(parts, key=lambda p: p[0])
        feats = np.stack([p[1] for p in parts])
        flow = np.stack([p[2] for p in parts]) if self.settings.save_flow else None
        state.chunk_writer.write_chunk(state.task.unit.video_id, k, j, feats, flow)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        self.writer.shutdown(wait=True)


# ---------------------------------------------------------------------- Dask
def check_scheduler(scheduler: str) -> int:
    """N for "local:N", 0 for a cluster address; a FlowkitError for anything else.

    >>> check_scheduler("local:4"), check_scheduler("tcp://10.0.0.1:8786")
    (4, 0)
    """
    if scheduler.startswith("local:"):
        n = scheduler.split(":", 1)[1]
        if not n.isdigit() or int(n) < 1:
            raise FlowkitError(f"scheduler 'local:N' should name N >= 1 workers, got {scheduler!r}")
        return int(n)
    if scheduler.startswith(("tcp://", "tls://", "ucx://", "inproc://")):
        return 0
    raise FlowkitError(f"scheduler should be 'tcp://HOST:PORT' or 'local:N', got {scheduler!r}")


class DaskEngine:
    """Units as Dask tasks: ``scheduler`` is "tcp://host:port" (an existing cluster) or "local:N"
    (a LocalCluster of N single-threaded worker processes, started and stopped here).

    On GPU settings every unit asks for the worker resource ``GPU=1``: start one worker per GPU
    with ``dask worker ... --resources GPU=1`` (or dask-cuda's LocalCUDACluster).
    """

    def __init__(self, settings: ExtractionSettings, scheduler: str):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise FlowkitError("scheduler needs Dask: pip install 'flowkit[dask]' (dask and distributed), "
                               "got no distributed package") from None
        self.settings = settings
        self.cluster = None
        n = check_scheduler(scheduler)
        if n:
            import dask

            # Dask's nannies set MALLOC_TRIM_THRESHOLD_=65536 in their workers; set at all, it turns off
            # glibc's adaptive mmap threshold, so a unit's large temporaries are mapped and faulted in
            # anew, which slows every unit; None leaves glibc's default.
            # The workers import what a unit needs as they start (preload), not at their first unit.
            with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
                self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                            dashboard_address=":0", preload=list(WORKER_PRELOAD))
            self.client = Client(self.cluster)
        else:
            try:
                self.client = Client(scheduler, timeout="30s")
            except OSError as exc:
                raise FlowkitError(f"scheduler {scheduler} should be reachable, got {exc}") from None
        self.run_id = uuid.uuid4().hex[:8]
        self.stats: dict = {"engine": "dask", "scheduler": scheduler,
                            "workers": len(self.client.scheduler_info().get("workers", {}))}

    def run(self, tasks: list[UnitTask]) -> Iterator[UnitResult]:
        from distributed import as_completed

        on_gpu = self.settings.on_gpu
        futures = [self.client.submit(run_unit, t, self.settings, pure=False, resources={"GPU": 1} if on_gpu else None,
                                      key=f"flowkit-unit-{self.run_id}-{t.unit.video_id}-{t.unit.start}-{n}")
                   for n, t in enumerate(tasks)]
        try:
            for fut in as_completed(futures):
                yield fut.result()
        finally:
            self.client.cancel(futures)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
