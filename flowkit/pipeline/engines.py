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
  (and the running implementation's batch target); uploads, features and ``WRITERS`` writer
  threads run beside the solver's thread.
- :class:`DaskEngine`: the units as Dask tasks on a cluster (``scheduler="tcp://host:port"``)
  or on an embedded LocalCluster (``scheduler="local:N"``). A worker that dies takes its units
  with it and Dask runs them again elsewhere; they rewrite the same bytes.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

import numpy as np

from flowkit.errors import FlowkitError
from flowkit.pipeline.plan import windows_of
from flowkit.pipeline.stages import STAGES, StageTimes, union_seconds
from flowkit.pipeline.units import DecodedUnit, UnitResult, UnitTask, decode_unit, run_unit, to_host
from flowkit.pipeline.workers import WORKER_PRELOAD, kill_pids, process_pool, terminate_pool

if TYPE_CHECKING:
    from flowkit.pipeline.settings import ExtractionSettings

__all__ = ["WORKER_PRELOAD", "BatchedEngine", "DaskEngine", "InlineEngine", "ProcessEngine", "check_scheduler",
           "make_engine", "solver_impl", "start_engine"]

WRITERS = 4
#: Batches in the batched engine's pipeline at once: one uploading, one solving, one finishing.
PIPELINE_DEPTH = 3


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


def _timed_results(engine, results: Iterator[UnitResult], solvers: int) -> Iterator[UnitResult]:
    """``results`` passed through, their stage seconds summed into ``engine.times`` and the
    engine's wall time and stage timings into ``engine.stats["stages"]``."""
    t0 = time.perf_counter()
    try:
        for result in results:
            engine.times.merge(result.stages)
            yield result
    finally:
        engine.times.add("engine_wall_s", time.perf_counter() - t0)
        engine.stats["stages"] = engine.times.as_dict(solvers=solvers)


class InlineEngine:
    """Runs each unit in this process, one after the other."""

    def __init__(self, settings: ExtractionSettings):
        self.settings = settings
        self.times = StageTimes()
        self.stats: dict = {"engine": "inline"}

    def run(self, tasks: list[UnitTask]) -> Iterator[UnitResult]:
        return _timed_results(self, (run_unit(task, self.settings) for task in tasks), solvers=1)

    def close(self) -> None:
        pass

    def terminate(self) -> None:
        pass  # the unit ran in this thread, which the signal already interrupted


# ---------------------------------------------------------------------- local processes
class ProcessEngine:
    """A local pool of ``settings.workers`` processes, each running whole units."""

    def __init__(self, settings: ExtractionSettings):
        self.settings = settings
        self.pool = process_pool(settings.workers)
        self.times = StageTimes()
        self.stats: dict = {"engine": "processes", "workers": settings.workers}

    def run(self, tasks: list[UnitTask]) -> Iterator[UnitResult]:
        return _timed_results(self, self._results(tasks), solvers=self.settings.workers)

    def _results(self, tasks: list[UnitTask]) -> Iterator[UnitResult]:
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

    def terminate(self) -> None:
        terminate_pool(self.pool)


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


@dataclass
class _Queues:
    """The batched engine's work in one run: units to decode, decoding, pairs waiting for a batch,
    units with chunks still open, and (items, future) of the batches in the pipeline."""

    todo: deque
    decoding: deque = field(default_factory=deque)
    pairs: deque = field(default_factory=deque)
    open_units: list = field(default_factory=list)
    inflight: deque = field(default_factory=deque)

    def busy(self) -> bool:
        return bool(self.todo or self.decoding or self.pairs or self.open_units or self.inflight)


def solver_impl(settings: ExtractionSettings) -> str:
    """The torch solver's implementation that runs with ``settings`` ("eager" for backends
    without implementations): the key of the batch-sizing table (:mod:`flowkit.flow.memory`)."""
    from flowkit.flow.backend import backend_info

    if not backend_info(settings.backend).has_impls:
        return "eager"
    from flowkit.flow.torch_tvl1 import resolve_impl

    return resolve_impl(settings.flow_impl, settings.device if settings.device is not None else "cpu")


class _Streams:
    """One CUDA stream per pipeline stage on a CUDA device, so that a batch's upload, the next
    batch's solve and the last batch's features run at once; elsewhere no streams at all.

    Each stage ends by synchronizing its stream, so a tensor handed to the next stage is complete
    and its memory is never reused while another stream still reads it.
    """

    def __init__(self, settings: ExtractionSettings):
        import torch

        self.cuda = bool(settings.on_gpu and settings.device is not None and torch.device(settings.device).type
                         == "cuda")
        self.streams = {}
        if self.cuda:
            self.streams = {name: torch.cuda.Stream(settings.device) for name in ("upload", "solve", "finish")}

    def run(self, name: str, fn, *args):
        if not self.cuda:
            return fn(*args)
        import torch

        stream = self.streams[name]
        with torch.cuda.stream(stream):
            out = fn(*args)
        stream.synchronize()
        return out


class BatchedEngine:
    """Decoder processes feed one batched solver thread; writer threads store the chunks.

    Pairs from every decoded unit (any video, any k) go into batches of at most
    ``settings.batch_windows`` and the batch target of the implementation that runs
    (:func:`flowkit.flow.memory.batch_target`); the solver never waits for one video's decoding
    while another's frames are ready. Each batch passes three threads in turn, up to ``depth``
    batches at once: an uploader stacks the crop pairs and copies them to the device, the solver
    thread only solves, and a finisher computes the features and copies them back. So a batch is
    solved while the next one is uploaded and the last one finishes; every batch is computed by
    the same calls as one at a time, so the results are bitwise the same. CUDA out-of-memory
    errors halve the batch inside the solver (``tvl1_torch``) and never lose a written chunk.

    ``stats`` reports the stage timings (:mod:`flowkit.pipeline.stages`) and the solver's idle fraction;
    ``trace`` lists (stage, batch number, start, end) in ``time.perf_counter()`` seconds.
    """

    def __init__(self, settings: ExtractionSettings, *, depth: int | None = None):
        from flowkit.flow.memory import batch_target

        self.settings = settings
        self.depth = max(1, PIPELINE_DEPTH if depth is None else depth)
        self.decoders = max(1, settings.decoders)
        self.pool = process_pool(self.decoders) if self.decoders > 1 else None
        # Compression and file writes release the GIL: a few writer threads keep up with the solver.
        self.writer = cf.ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="flowkit-writer")
        self.stages_ = {name: cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"flowkit-{name}")
                        for name in ("upload", "solve", "finish")}
        self.impl = solver_impl(settings)
        self.batch = max(1, min(settings.batch_windows, batch_target(self.impl)))
        self.times = StageTimes()
        self.spans: list[tuple[float, float]] = []
        self.trace: list[tuple[str, int, float, float]] = []
        self._streams = None
        self._batches = 0
        self.stats: dict = {"engine": "batched", "decoders": self.decoders, "batch_windows": settings.batch_windows,
                            "impl": self.impl, "batch": self.batch, "depth": self.depth, "solver_busy_s": 0.0,
                            "wall_s": 0.0}

    def _decode(self, task: UnitTask) -> cf.Future:
        if self.pool is None:
            fut: cf.Future = cf.Future()
            fut.set_result(decode_unit(task))
            return fut
        return self.pool.submit(decode_unit, task)

    def run(self, tasks: list[UnitTask]) -> Iterator[UnitResult]:
        t0 = time.perf_counter()
        if self._streams is None:
            self._streams = _Streams(self.settings)
        for task in [t for t in tasks if t.unit.sequential]:  # rare: a video that cannot be seeked
            result = run_unit(task, self.settings)
            self.times.merge(result.stages)
            yield result
        q = _Queues(deque(t for t in tasks if not t.unit.sequential))
        try:
            while q.busy():
                yield from self._take_decoded(q)
                self._advance(q)
                for state in [st for st in q.open_units if not st.left and all(f.done() for f in st.writes)]:
                    q.open_units.remove(state)
                    for f in state.writes:
                        f.result()  # a failed write is a bug or a full disk: raise it
                    yield state.result
        finally:
            for _, fut in q.inflight:
                fut.cancel()
            self._account(time.perf_counter() - t0)

    def _take_decoded(self, q: _Queues) -> Iterator[UnitResult]:
        """Keep the decoders busy and fill a batch from decoded units, waiting for the oldest decode
        only when the batch is not full; a unit that failed to decode is yielded at once."""
        prefetch = 2 * self.decoders + 2
        while q.todo and len(q.decoding) < prefetch:
            q.decoding.append(self._decode(q.todo.popleft()))
        while len(q.pairs) < self.batch and q.decoding:
            decoded = q.decoding.popleft().result()
            self.spans.append(decoded.span)
            if q.todo:
                q.decoding.append(self._decode(q.todo.popleft()))
            if decoded.gap or decoded.error:
                yield UnitResult(decoded.task.unit.video_id, decoded.task.unit.start, gap=decoded.gap,
                                 error=decoded.error)
                continue
            state = _UnitState(decoded)
            q.open_units.append(state)
            q.pairs.extend(state.windows())

    def _advance(self, q: _Queues) -> None:
        """Deliver finished batches, submit the next one, or wait for the oldest batch or a write."""
        while q.inflight and q.inflight[0][1].done():
            self._deliver(*q.inflight.popleft())
        if q.pairs and len(q.inflight) < self.depth:
            items = [q.pairs.popleft() for _ in range(min(self.batch, len(q.pairs)))]
            q.inflight.append((items, self._submit(items)))
        elif q.inflight:  # the pipeline is full, or nothing is left to submit: take the oldest batch
            self._deliver(*q.inflight.popleft())
        elif q.open_units:  # everything solved: wait for the writer
            cf.wait([f for st in q.open_units for f in st.writes], return_when=cf.FIRST_COMPLETED)

    def _account(self, wall: float) -> None:
        self.times.add("engine_wall_s", wall)
        self.stats["wall_s"] += wall
        self.stats["solver_busy_s"] = self.times.seconds.get("solve_s", 0.0)
        stages = self.times.as_dict()
        if self.spans:
            stages["decode_s"] = round(stages.get("decode_s", 0.0) + sum(b - a for a, b in self.spans), 3)
            stages["decode_wall_s"] = round(union_seconds(self.spans), 3)
        self.stats["stages"] = {k: stages[k] for k in STAGES if k in stages}
        self.stats["solver_idle_fraction"] = stages.get("solver_idle_share")

    def _submit(self, items: list) -> cf.Future:
        """Chain one batch through the uploader, the solver and the finisher threads."""
        n = self._batches
        self._batches += 1
        up = self.stages_["upload"].submit(self._timed, "upload", n, self._upload, items)
        solved = self.stages_["solve"].submit(self._timed, "solve", n, self._solve, up)
        return self.stages_["finish"].submit(self._timed, "finish", n, self._finish, items, solved)

    def _timed(self, stage: str, n: int, fn, *args):
        t0 = time.perf_counter()
        try:
            return self._streams.run(stage, fn, *args)
        finally:
            self.trace.append((stage, n, t0, time.perf_counter()))

    def _upload(self, items: list):
        """Stack the batch's (B, 128, 128) uint8 prev and next crops; on the device for torch."""
        t0 = time.perf_counter()
        prev = np.stack([st.crop(i) for st, k, j, i in items])
        nxt = np.stack([st.crop(i + k) for st, k, j, i in items])
        prev, nxt = self.settings.upload(prev), self.settings.upload(nxt)
        self.times.add("upload_s", time.perf_counter() - t0)
        return prev, nxt

    def _solve(self, uploaded: cf.Future):
        """TV-L1 of one batch: (B, 2, 128, 128) flow, on the device for torch."""
        prev, nxt = uploaded.result()
        t0 = time.perf_counter()
        try:
            return self.settings.solve(prev, nxt)
        finally:
            if self._streams.cuda:
                self._streams.streams["solve"].synchronize()
            self.times.add("solve_s", time.perf_counter() - t0)

    def _finish(self, items: list, solved: cf.Future):
        """Features per unit of one batch ((B, 3, 42, 42) float32), flow when saved, on the host."""
        from flowkit.features import features_from_flow

        flow = solved.result()
        t0 = time.perf_counter()
        by_unit: dict[int, list[int]] = {}
        for n, (st, *_rest) in enumerate(items):
            by_unit.setdefault(id(st), []).append(n)
        feats = []
        for rows in by_unit.values():
            st = items[rows[0]][0]
            idx = rows if len(rows) < len(items) else slice(None)
            feats.append((rows, features_from_flow(flow[idx], np.asarray(st.task.landmarks, np.float32))))
        if self._streams.cuda:
            self._streams.streams["finish"].synchronize()
        t1 = time.perf_counter()
        out = np.empty((len(items), 3, 42, 42), np.float32)
        for rows, f in feats:
            out[rows] = to_host(f)
        flows = to_host(flow) if self.settings.save_flow else None
        self.times.add("features_s", t1 - t0)
        self.times.add("download_s", time.perf_counter() - t1)
        return out, flows

    def _deliver(self, items: list, done: cf.Future) -> None:
        """A finished batch's features into its units' chunks; a whole chunk goes to a writer."""
        feats, flows = done.result()
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
        t0 = time.perf_counter()
        parts = sorted(parts, key=lambda p: p[0])
        feats = np.stack([p[1] for p in parts])
        flow = np.stack([p[2] for p in parts]) if self.settings.save_flow else None
        state.chunk_writer.write_chunk(state.task.unit.video_id, k, j, feats, flow)
        self.times.add("write_s", time.perf_counter() - t0)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        for executor in self.stages_.values():
            executor.shutdown(wait=True, cancel_futures=True)
        self.writer.shutdown(wait=True)

    def terminate(self) -> None:
        if self.pool is not None:
            terminate_pool(self.pool)
        self.writer.shutdown(wait=False, cancel_futures=True)  # a write under way ends whole (one object)


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
        self.times = StageTimes()
        self.stats: dict = {"engine": "dask", "scheduler": scheduler,
                            "workers": len(self.client.scheduler_info().get("workers", {}))}

    def run(self, tasks: list[UnitTask]) -> Iterator[UnitResult]:
        return _timed_results(self, self._results(tasks), solvers=max(1, int(self.stats["workers"] or 1)))

    def _results(self, tasks: list[UnitTask]) -> Iterator[UnitResult]:
        from distributed import as_completed

        on_gpu = self.settings.on_gpu
        futures = [self.client.submit(run_unit, t, self.settings, pure=False, resources={"GPU": 1} if on_gpu else None,
                                      key=f"flowkit-unit-{self.run_id}-{t.unit.video_id}-{t.unit.start}-{n}")
                   for n, t in enumerate(tasks)]
        self._futures = futures  # for terminate(), when the stop comes while this generator is suspended
        try:
            for fut in as_completed(futures):
                yield fut.result()
        finally:
            self.client.cancel(futures)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def terminate(self) -> None:
        """The run's futures cancelled (also done by ``run`` as it unwinds); an embedded cluster's worker
        processes killed, then the cluster closed without its shutdown warnings. A remote cluster's
        workers are not ours: they only lose this run's tasks."""
        import logging

        for name in ("distributed", "tornado"):  # closing under way units logs warnings; the stop is wanted
            logging.getLogger(name).setLevel(logging.CRITICAL)
        try:
            self.client.cancel(getattr(self, "_futures", []))
        except Exception:  # noqa: BLE001 - a scheduler already gone has nothing left to cancel
            pass
        if self.cluster is not None:
            pids = [getattr(getattr(getattr(w, "process", None), "process", None), "pid", None)
                    for w in self.cluster.workers.values()]
            kill_pids([pid for pid in pids if pid])
        try:
            self.client.close(timeout=2)
            if self.cluster is not None:
                self.cluster.close(timeout=2)
        except Exception:  # noqa: BLE001 - a cluster whose workers were just killed may time out closing
            pass
