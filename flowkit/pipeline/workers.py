"""The local worker processes of the engines: started from a forkserver with the heavy imports
done, each ending soon after the driver dies (even by SIGKILL), and killed at once when a run is
stopped (SIGINT, SIGTERM, an error)."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import threading
import time

__all__ = ["WORKER_PRELOAD", "kill_pids", "process_pool", "terminate_pool"]


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


# Each engine's ``terminate()`` is what the driver calls instead of ``close()`` when the run is
# interrupted (SIGINT, SIGTERM, an error): queued units are cancelled and running workers are
# killed rather than waited for. A killed worker leaves whole chunks only (each chunk and flag is
# one object, replaced atomically), so the next run resumes from the flags.
def terminate_pool(pool: cf.ProcessPoolExecutor) -> None:
    """Cancel a process pool's queued work and kill its workers now, without waiting for them."""
    # The executor has no public way to reach its processes; ``_processes`` is how shutdown joins them.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    kill_pids([p.pid for p in processes if p.pid])
    for p in processes:
        p.join(timeout=1)
    manager = getattr(pool, "_executor_manager_thread", None)  # it sees the pool broken and closes its queues
    if manager is not None:
        manager.join(timeout=1)


def kill_pids(pids: list[int]) -> None:
    import signal

    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)  # a unit's C code (cv2, torch) would not see a gentler signal soon
        except ProcessLookupError:
            pass
