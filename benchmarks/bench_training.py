"""Training throughput through the store reader: windows/s of one LOSO fold's data and training.

Run: ``pytest benchmarks/bench_training.py --benchmark-only``. The store is written with
:class:`flowkit.io.store.FeatureStore` (3 subjects, one 2,000-frame video each, 64-window chunks,
k=6, one macro interval every 100 frames), so that a fold trains on about 2,000 windows after
SPEC 6's down-sampling. Two cases, each storing its median windows/s in ``extra_info``:

- ``data``: one epoch of the fold's shuffled training windows through ``WindowDataset`` and
  ``ChunkShuffleSampler`` (read, min-max normalise), no model: the reader's own cost;
- ``train``: one epoch of ``train_fold`` (SGD, batch 12, one CPU thread as in ``train_loso``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from flowkit.io.store import FeatureStore
from spotnet.dataset import ChunkShuffleSampler, WindowDataset, list_videos, loso_folds, training_index
from spotnet.training import Recipe, train_fold

N_FRAMES = 2000
K = 6
CHUNK = 64


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench_training") / "s.zarr"
    rng = np.random.default_rng(0)
    n_windows = N_FRAMES - K
    with FeatureStore(path, mode="a") as fs:
        fs.set_root_attrs(k_by_type={"macro": K})
        for subject in ("a", "b", "c"):
            ann = [{"onset": on, "apex": on + 5, "offset": on + 10, "type": "macro"}
                   for on in range(50, N_FRAMES - 50, 100)]
            video = f"{subject}_v0"
            fs.add_video(video, {"subject": subject, "source": "bench", "n_frames": N_FRAMES, "fps": 30.0,
                                 "annotations": ann}, np.zeros((68, 2), np.float32))
            fs.create_features(video, K, n_windows, "bench", {}, chunk=CHUNK)
            for c in range(-(-n_windows // CHUNK)):
                n = min(CHUNK, n_windows - c * CHUNK)
                fs.write_chunk(video, K, c, rng.normal(0, 0.3, size=(n, 3, 42, 42)).astype(np.float32))
            fs.mark_complete(video, K)
    return path


@pytest.fixture(scope="module")
def fold(store):
    videos = list_videos(store, K)
    _, train, _ = loso_folds(videos, "macro")[0]
    return videos, train


def test_data_windows_per_second(benchmark, store, fold):
    videos, train = fold
    index, labels, codes = training_index(videos, train, "macro", rng=np.random.default_rng(0))

    def epoch():
        data = WindowDataset(store, videos, index, labels, codes)
        loader = DataLoader(data, batch_size=12, sampler=ChunkShuffleSampler(data), num_workers=0)
        return sum(len(y) for _, y in loader)

    n = benchmark.pedantic(epoch, rounds=5, warmup_rounds=1)
    assert n == len(index)
    rate = n / benchmark.stats.stats.median
    benchmark.extra_info.update(windows=n, windows_per_s_median=rate)
    print(f"\nreader, one epoch of {n} windows: median {rate:,.0f} windows/s")


def test_train_windows_per_second(benchmark, store, fold):
    videos, train = fold
    n = len(training_index(videos, train, "macro", rng=np.random.default_rng(0))[0])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # train_loso's default for this small model
    try:
        benchmark.pedantic(lambda: train_fold(store, videos, train, "macro", recipe=Recipe(epochs=1)), rounds=3,
                           warmup_rounds=1)
    finally:
        torch.set_num_threads(threads)
    rate = n / benchmark.stats.stats.median
    benchmark.extra_info.update(windows=n, windows_per_s_median=rate)
    print(f"\ntrain_fold, one epoch of {n} windows: median {rate:,.0f} windows/s")
