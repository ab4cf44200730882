"""LOSO training throughput: windows/s with every fold's steps counted, sequential against fold-parallel.

Run: ``pytest benchmarks/bench_training.py --benchmark-only --benchmark-json OUT.json``.

The store is written with :class:`flowkit.io.store.FeatureStore`, shaped like a small dataset: 8
subjects, one 600-frame video each, 64-window chunks, k=6, one macro interval every 100 frames.
Each fold trains on its 7 other subjects, about 2,100 windows per epoch after SPEC 6's
down-sampling. Cases, each storing its median windows/s in ``extra_info``:

- ``reader[store|memory]``: one fold's epoch of windows as the model gets them (normalised), no
  model: through ``WindowDataset`` + ``ChunkShuffleSampler`` (the sequential trainer's reader),
  or gathered from :class:`spotnet.window_memory.MemoryWindows` in batches of 12;
- ``sequential``: one epoch of ``train_fold`` for each of 2 folds (SOFTNet, one CPU thread, as
  ``train_loso`` trains it): today's LOSO rate;
- ``parallel[device-folds-threads]``: one epoch of 1, 4 or 8 folds trained together by
  :func:`spotnet.fold_parallel.train_folds` from windows in memory, with 1 thread (as
  ``train_loso``) or every core; ``extra_info["ratio_to_sequential"]`` divides by the
  ``sequential`` case's rate measured earlier in the same run (absent when it was deselected).
  CUDA cases run when a GPU is present.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from flowkit.io.store import FeatureStore
from spotnet.augment import training_windows
from spotnet.dataset import ChunkShuffleSampler, WindowDataset, list_videos, loso_folds, training_index
from spotnet.fold_parallel import fold_batches, train_folds
from spotnet.inference import model_threads
from spotnet.training import Recipe, train_fold
from spotnet.window_memory import MemoryWindows

N_FRAMES = 600
N_SUBJECTS = 8
K = 6
CHUNK = 64
RECIPE = Recipe(epochs=1)
SEQUENTIAL_FOLDS = 2
_RATES: dict[str, float] = {}

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench_training") / "s.zarr"
    rng = np.random.default_rng(0)
    n_windows = N_FRAMES - K
    with FeatureStore(path, mode="a") as fs:
        fs.set_root_attrs(k_by_type={"macro": K})
        for s in range(N_SUBJECTS):
            ann = [{"onset": on, "apex": on + 5, "offset": on + 10, "type": "macro"}
                   for on in range(50, N_FRAMES - 50, 100)]
            video = f"s{s}_v0"
            fs.add_video(video, {"subject": f"s{s}", "source": "bench", "n_frames": N_FRAMES, "fps": 30.0,
                                 "annotations": ann}, np.zeros((68, 2), np.float32))
            fs.create_features(video, K, n_windows, "bench", {}, chunk=CHUNK)
            for c in range(-(-n_windows // CHUNK)):
                n = min(CHUNK, n_windows - c * CHUNK)
                fs.write_chunk(video, K, c, rng.normal(0, 0.3, size=(n, 3, 42, 42)).astype(np.float32))
            fs.mark_complete(video, K)
    return path


@pytest.fixture(scope="module")
def folds(store):
    videos = list_videos(store, K)
    return videos, [train for _, train, _ in loso_folds(videos, "macro")]


def _windows(videos, trains) -> int:
    return sum(len(fold_batches(videos, t, "macro", recipe=RECIPE).index) for t in trains) * RECIPE.epochs


@pytest.mark.parametrize("source", ["store", "memory"])
def test_reader(benchmark, store, folds, source):
    videos, trains = folds
    index, labels, codes = training_index(videos, trains[0], "macro", rng=np.random.default_rng(0))
    memory = MemoryWindows(store, videos) if source == "memory" else None

    def epoch():
        if memory is None:
            data = WindowDataset(store, videos, index, labels, codes)
            return sum(len(y) for _, y in DataLoader(data, batch_size=12, sampler=ChunkShuffleSampler(data)))
        order = np.random.default_rng(0).permutation(len(index))
        for s in range(0, len(order), 12):
            rows = order[s:s + 12]
            training_windows(memory.gather(index[rows]), codes[rows], items=rows)
        return len(order)

    n = benchmark.pedantic(epoch, rounds=3, warmup_rounds=1)
    rate = n / benchmark.stats.stats.median
    benchmark.extra_info.update(windows=n, windows_per_s_median=rate)


def test_sequential(benchmark, store, folds):
    videos, trains = folds
    trains = trains[:SEQUENTIAL_FOLDS]

    def run():
        with model_threads(1):  # train_loso's thread count for SOFTNet
            for train in trains:
                train_fold(store, videos, train, "macro", recipe=RECIPE)

    benchmark.pedantic(run, rounds=2, warmup_rounds=0)
    n = _windows(videos, trains)
    rate = n / benchmark.stats.stats.median
    _RATES["sequential"] = rate
    benchmark.extra_info.update(windows=n, folds=len(trains), windows_per_s_median=rate, threads=1)


CASES = [(device, n, threads) for device in DEVICES for n in (1, 4, 8)
         for threads in ((1, os.cpu_count()) if device == "cpu" else (1,))]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}folds-{c[2]}thr")
def test_parallel(benchmark, store, folds, case):
    device, n_folds, threads = case
    videos, trains = folds
    trains = trains[:n_folds]
    memory = MemoryWindows(store, videos, device=device)

    def run():
        with model_threads(threads):
            train_folds(memory, videos, trains, "macro", recipe=RECIPE, device=device)
        if device == "cuda":
            torch.cuda.synchronize()

    benchmark.pedantic(run, rounds=2, warmup_rounds=1 if device == "cuda" else 0)
    n = _windows(videos, trains)
    rate = n / benchmark.stats.stats.median
    benchmark.extra_info.update(windows=n, folds=n_folds, threads=threads, device=device, windows_per_s_median=rate)
    if "sequential" in _RATES:
        benchmark.extra_info["ratio_to_sequential"] = rate / _RATES["sequential"]
