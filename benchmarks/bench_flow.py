"""TV-L1 throughput at 128x128 (pairs/s): OpenCV on the CPU vs the batched torch solver.

Run:
    pytest benchmarks/bench_flow.py --benchmark-only \
        --benchmark-json=benchmarks/results/flow_cpu_<name>.json

Each case stores its pairs/s, device, versions and the git commit in ``extra_info``. Quote
medians, and ratios only between cases of one run on one machine.

On a shared, busy machine wall time says little; compare work per pair instead, one thread
each, with the process-time clock:
    FLOW_BENCH_THREADS=1 pytest benchmarks/bench_flow.py --benchmark-only \
        --benchmark-timer=time.process_time -k "own_threads or torch_cpu" \
        --benchmark-json=benchmarks/results/flow_cpu_1thread_cputime.json
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fixtures.faces import FACE_VIDEO, face_pairs  # noqa: E402
from flowkit.flow.opencv_tvl1 import tvl1_opencv  # noqa: E402
from flowkit.flow.torch_tvl1 import tvl1_torch  # noqa: E402

pytestmark = pytest.mark.skipif(not FACE_VIDEO.is_file(), reason=f"{FACE_VIDEO} is absent")

K = 6
CPU_PAIRS = 16
# Threads for OpenCV's own pool and for torch on the CPU; unset: the libraries' defaults.
THREADS = int(os.environ.get("FLOW_BENCH_THREADS", "0")) or None


def _pairs(n: int):
    """``n`` pairs for every case: the same CPU_PAIRS windows (i, i + k) of the face video,
    tiled when ``n`` is larger, so that every case does the same work per pair (the number of
    iterations before OpenCV's stopping rule fires depends on the pair)."""
    starts = tuple(int(s) for s in np.arange(CPU_PAIRS) * 3)
    a, b = face_pairs(K, starts)
    reps = -(-n // CPU_PAIRS)
    return np.tile(a, (reps, 1, 1))[:n], np.tile(b, (reps, 1, 1))[:n]


def _commit() -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True)
        return done.stdout.strip()
    except Exception:  # noqa: BLE001
        return "unknown"


def _info(benchmark, device: str, pairs: int, **extra) -> None:
    benchmark.extra_info.update(
        pairs=pairs,
        device=device,
        cpu=platform.processor() or platform.machine(),
        cpu_count=os.cpu_count(),
        torch=torch.__version__,
        opencv=cv2.__version__,
        numpy=np.__version__,
        python=platform.python_version(),
        commit=_commit(),
        load_avg_1min=os.getloadavg()[0],
        **extra,
    )


def _record_rate(benchmark, pairs: int) -> None:
    median = benchmark.stats.stats.median
    benchmark.extra_info["pairs_per_s_median"] = pairs / median


def test_opencv_cpu_own_threads(benchmark):
    a, b = _pairs(CPU_PAIRS)
    cv2.setNumThreads(THREADS or -1)  # -1: OpenCV's default pool over all cores
    parallel = f"cv2 threads {cv2.getNumThreads()}"
    _info(benchmark, "cpu", CPU_PAIRS, backend="opencv", parallel=parallel)
    benchmark.pedantic(tvl1_opencv, args=(a, b), rounds=3, iterations=1, warmup_rounds=0)
    _record_rate(benchmark, CPU_PAIRS)


def _worker_init():
    cv2.setNumThreads(1)


def _solve_chunk(args):
    return tvl1_opencv(*args)


def test_opencv_cpu_process_pool(benchmark):
    a, b = _pairs(CPU_PAIRS)
    n = os.cpu_count() or 1
    chunks = [(a[i::n], b[i::n]) for i in range(n)]
    with get_context("spawn").Pool(n, initializer=_worker_init) as pool:
        pool.map(_solve_chunk, chunks)  # start-up and imports outside the timed region
        _info(benchmark, "cpu", CPU_PAIRS, backend="opencv", parallel=f"{n} processes x 1 thread")
        benchmark.pedantic(pool.map, args=(_solve_chunk, chunks), rounds=3, iterations=1)
    _record_rate(benchmark, CPU_PAIRS)


@pytest.mark.parametrize("batch", [8, 32])
def test_torch_cpu(benchmark, batch):
    # Batch 8 solves the 16 pairs in two calls; batch 32 solves them twice over in one.
    n = max(batch, CPU_PAIRS)
    a, b = _pairs(n)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    if THREADS:
        torch.set_num_threads(THREADS)
    threads = torch.get_num_threads()

    def run():
        for i in range(0, n, batch):
            tvl1_torch(ta[i : i + batch], tb[i : i + batch])

    _info(benchmark, "cpu", n, backend="torch", batch=batch, torch_threads=threads)
    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)
    _record_rate(benchmark, n)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("batch", [32, 128, 512])
def test_torch_cuda(benchmark, batch):
    a, b = _pairs(batch)
    ta, tb = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()

    def run():
        out = tvl1_torch(ta, tb)
        torch.cuda.synchronize()
        return out

    _info(benchmark, torch.cuda.get_device_name(), batch, backend="torch", batch=batch)
    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    _record_rate(benchmark, batch)
