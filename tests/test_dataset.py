"""Zarr window streaming, LOSO folds, down-sampling and augmentation on tiny hand-built stores."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import zarr

from spotnet.augment import BLUR, FLIP, NOISE, NONE, augment_window
from spotnet.dataset import (
    ChunkShuffleSampler,
    WindowDataset,
    k_for_type,
    list_videos,
    loso_folds,
    training_index,
    video_windows,
)
from spotnet.errors import SpotnetError


def make_store(path, *, subjects=("a", "b", "c"), videos_per_subject=1, n_frames=120, ks=None,
               events=(("macro", 30, 50), ("micro", 80, 84)), chunk=16, complete=True, annotate=True,
               signal=3.0, seed=0):
    """A schema-1 store (docs/store.md) with random features and a bump on event windows.

    ks: {type: k}; windows overlapping an event get ``signal`` added in the mouth rows of u and
    v (macro) or the brow rows (micro), so a model can learn them.
    """
    ks = ks or {"macro": 8, "micro": 3}
    rng = np.random.default_rng(seed)
    root = zarr.open_group(str(path), mode="w")
    root.attrs.update({"schema_version": 1, "flowkit_version": "test", "k_by_type": ks})
    videos = root.create_group("videos")
    for s in subjects:
        for v in range(videos_per_subject):
            g = videos.create_group(f"{s}_v{v}")
            ann = [{"onset": on, "apex": (on + off) // 2, "offset": off, "type": t} for t, on, off in events]
            g.attrs.update({"subject": s, "source": "x", "n_frames": n_frames, "fps": 30.0,
                            "annotations": ann if annotate else []})
            for k in sorted(set(ks.values())):
                n = n_frames - k
                feats = rng.normal(0, 0.3, size=(n, 3, 42, 42)).astype(np.float32)
                for t, on, off in events:
                    rows = slice(21, 42) if t == "macro" else slice(0, 21)
                    lo, hi = max(on + 1 - k + 1, 0), min(off + 1, n)
                    feats[lo:hi, :2, rows] += signal
                kg = g.create_group(f"k{k}")
                kg.attrs.update({"k": k, "flow_backend": "test", "flow_params": {}, "complete": complete,
                                 "n_windows": n})
                arr = kg.create_array("features", shape=feats.shape, chunks=(chunk, 3, 42, 42), dtype="float32",
                                      dimension_names=("window", "channel", "y", "x"))
                arr[:] = feats
                n_chunks = -(-n // chunk)
                w = kg.create_array("written", shape=(n_chunks,), dtype="bool")
                w[:] = complete
    return path


@pytest.fixture
def store(tmp_path):
    return make_store(tmp_path / "s.zarr")


def test_list_videos_and_k(store):
    assert k_for_type(store, "macro") == 8 and k_for_type(store, "micro") == 3
    vids = list_videos(store, 8)
    assert [v.video for v in vids] == ["a_v0", "b_v0", "c_v0"]
    assert vids[0].n_windows == 112 and vids[0].chunk == 16
    assert vids[0].spans("micro") == [(80, 84)]


def test_single_k_store_serves_every_type(tmp_path):
    path = make_store(tmp_path / "one.zarr", ks={"macro": 5, "micro": 5})
    root = zarr.open_group(str(path), mode="r+")
    root.attrs["k_by_type"] = {}
    assert k_for_type(path, "micro") == 5


def test_incomplete_store_is_refused(tmp_path):
    path = make_store(tmp_path / "i.zarr", complete=False)
    with pytest.raises(SpotnetError, match="interrupted"):
        list_videos(path, 8)


def test_other_schema_version_is_refused(store):
    """The reader owns the schema check: a store of schema 2 is refused, not misread."""
    zarr.open_group(str(store), mode="r+").attrs["schema_version"] = 2
    with pytest.raises(SpotnetError, match=r"should be a flowkit store of schema version 1, got schema_version 2"):
        list_videos(store, 8)


def test_cli_refuses_other_schema_in_one_line(store, tmp_path):
    zarr.open_group(str(store), mode="r+").attrs["schema_version"] = 2
    result = subprocess.run([sys.executable, "-c", "from cli.spotnet_app import main; main()", "train", str(store),
                             "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"spotnet: error: feature store '{store}' should be a flowkit store of schema version 1, got schema_version 2"
    ]
    assert not (tmp_path / "run" / "folds").exists()


def test_reading_while_a_writer_holds_the_lock(store):
    """The reader takes no lock: spotnet can read a store that flowkit is still writing."""
    from flowkit.io.store import FeatureStore

    with FeatureStore(store, mode="a"):
        assert [v.video for v in list_videos(store, 8)] == ["a_v0", "b_v0", "c_v0"]


def test_missing_store(tmp_path):
    with pytest.raises(SpotnetError, match="no such folder"):
        list_videos(tmp_path / "nope.zarr", 8)


def test_folds(store):
    vids = list_videos(store, 8)
    folds = loso_folds(vids, "macro")
    assert [f[0] for f in folds] == ["a", "b", "c"]
    assert folds[0][1] == [1, 2] and folds[0][2] == [0]


def test_folds_errors(tmp_path):
    no_ann = make_store(tmp_path / "n.zarr", annotate=False)
    with pytest.raises(SpotnetError, match="annotations"):
        loso_folds(list_videos(no_ann, 8), "macro")
    one = make_store(tmp_path / "o.zarr", subjects=("a",), videos_per_subject=2)
    with pytest.raises(SpotnetError, match="two subjects"):
        loso_folds(list_videos(one, 8), "macro")
    macro_only = make_store(tmp_path / "m.zarr", events=(("macro", 30, 50),))
    with pytest.raises(SpotnetError, match="micro intervals"):
        loso_folds(list_videos(macro_only, 3), "micro")


def test_training_index_downsampling_and_augmentation(store):
    vids = list_videos(store, 3)
    idx, lab, codes = training_index(vids, [0, 1], "micro", rng=np.random.default_rng(0))
    # k=3, micro (80, 84): windows 79..84 positive (frames [i, i+2] meet [81, 84]) -> 6 per video
    n_pos, n_neg = 12, 2 * 117 - 12
    n_neg_kept = n_neg - int(n_neg / 2)
    assert (lab == 1).sum() == n_pos * 4 and (lab == 0).sum() == n_neg_kept
    assert sorted(np.unique(codes[lab == 1], return_counts=True)[1].tolist()) == [12, 12, 12, 12]
    assert (codes[lab == 0] == NONE).all()
    idx_m, lab_m, codes_m = training_index(vids, [0, 1], "macro", rng=np.random.default_rng(0))
    assert (codes_m == NONE).all()


def test_dataset_items_and_chunk_cache(store):
    vids = list_videos(store, 8)
    index = np.array([[0, 0], [0, 17], [1, 111]])
    ds = WindowDataset(store, vids, index, labels=[0, 1, 0])
    x, y = ds[1]
    assert x.shape == (3, 42, 42) and x.dtype == torch.float32 and float(y) == 1.0
    assert float(x.amin()) == 0.0 and float(x.amax()) == 1.0
    raw = zarr.open_group(str(store), mode="r")["videos/a_v0/k8/features"][17]
    np.testing.assert_array_equal(ds.window(1), raw)
    assert list(ds._cache) == [(0, 1)]  # window 17 lives in chunk 1; both reads used one chunk
    for i in range(3):
        ds[i]
    assert len(ds._cache) == 3 <= ds.cache_chunks


def test_sampler_is_a_permutation_grouped_by_chunk(store):
    vids = list_videos(store, 8)
    idx, lab, codes = training_index(vids, [0, 1, 2], "macro", rng=np.random.default_rng(0))
    ds = WindowDataset(store, vids, idx, lab, codes)
    sampler = ChunkShuffleSampler(ds, seed=0, mix=1)
    order = list(sampler)
    assert sorted(order) == list(range(len(ds)))
    keys = [ds.chunk_of(i) for i in order]
    changes = sum(a != b for a, b in zip(keys, keys[1:]))
    assert changes == len(set(keys)) - 1  # with mix=1 each chunk is visited once per epoch
    sampler.set_epoch(1)
    assert list(sampler) != order


def test_video_windows_in_order(store):
    vid = list_videos(store, 8)[0]
    batches = list(video_windows(store, vid, batch_size=40))
    assert sum(b.shape[0] for b in batches) == vid.n_windows
    assert all(b.shape[1:] == (3, 42, 42) for b in batches)


def test_augment_window():
    x = np.random.default_rng(0).random((3, 42, 42)).astype(np.float32)
    np.testing.assert_array_equal(augment_window(x, FLIP)[:, :, 0], x[:, :, -1])
    blurred = augment_window(x, BLUR)
    assert blurred.shape == x.shape and blurred.std() < x.std()
    noisy = augment_window(x, NOISE, rng=np.random.default_rng(1))
    assert abs(float((noisy - x).var()) - 0.01) < 0.002  # 5292 samples: std error of var ~2e-4
    np.testing.assert_array_equal(noisy, augment_window(x, NOISE, rng=np.random.default_rng(1)))
