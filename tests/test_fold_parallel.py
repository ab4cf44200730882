"""Fold-parallel LOSO against the sequential trainer, fold by fold, on a tiny four-subject store.

Tolerance on weights: the stacked step sums each convolution and matrix product in another
order than a single model's step (a batched kernel), a few float32 ulps per step on weights of
size ~0.1 (ulp ~1e-8), carried through the ~50 SGD steps of these runs; measured at most 1.5e-8.
TOL = 1e-6 leaves room for other CPUs' kernels, and stays far below what a fold trained on
another fold's batch order gives (checked below: >1e-4).
"""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from test_dataset import make_store

from spotnet.checkpoint import load_checkpoint
from spotnet.dataset import list_videos, loso_folds
from spotnet.errors import SpotnetError
from spotnet.fold_parallel import train_folds
from spotnet.inference import model_threads
from spotnet.training import Recipe, train_fold, train_loso
from spotnet.window_memory import MemoryWindows, StoreWindows, load_windows

TOL = 1e-6
EVENTS = (("macro", 20, 40), ("micro", 60, 64))
SUBJECTS = ("a", "b", "c", "d")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("fp") / "s.zarr", subjects=SUBJECTS, n_frames=100, events=EVENTS)


def _max_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def _intervals(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [(r["video"], r["onset"], r["offset"], r["type"]) for r in rows], [float(r["score"]) for r in rows]


@pytest.mark.parametrize("kind", ["macro", "micro"])  # micro: augmented copies, noise included
def test_parallel_run_equals_sequential(store, tmp_path, kind):
    seq, par = tmp_path / "seq", tmp_path / "par"
    train_loso(store, out_dir=seq, expression=kind, epochs=2, progress=False, report=False)
    train_loso(store, out_dir=par, expression=kind, epochs=2, progress=False, report=False, parallel_folds=None)
    m_seq, m_par = (json.loads((d / "metrics.json").read_text()) for d in (seq, par))
    for key in ("tp", "fp", "fn"):
        assert m_seq[kind][key] == m_par[kind][key]
    spans_seq, scores_seq = _intervals(seq / "intervals.csv")
    spans_par, scores_par = _intervals(par / "intervals.csv")
    assert spans_seq == spans_par and spans_seq
    np.testing.assert_allclose(scores_par, scores_seq, rtol=0, atol=TOL)
    for s in SUBJECTS:
        a, meta_a = load_checkpoint(seq / "folds" / kind / f"{s}.pt")
        b, meta_b = load_checkpoint(par / "folds" / kind / f"{s}.pt")
        assert _max_diff(a, b) <= TOL
        assert meta_a["metrics"] == meta_b["metrics"] and meta_a["recipe"] == meta_b["recipe"]


def test_no_fold_order_leaks_into_another(store):
    with model_threads(1):  # as train_loso trains SOFTNet
        _no_leak(store)


def _no_leak(store):
    videos = list_videos(store, 3)
    folds = loso_folds(videos, "micro")
    base = Recipe(epochs=1)
    other = Recipe(epochs=1, seed=7)  # fold 1 alone gets another init, down-sampling, noise and shuffle
    recipes = [base, other, base, base]
    trains = [f[1] for f in folds]
    together = train_folds(MemoryWindows(store, videos), videos, trains, "micro", recipe=recipes)
    for f, train in enumerate(trains):
        alone = train_fold(store, videos, train, "micro", recipe=recipes[f])
        assert _max_diff(together[f], alone) <= TOL
    # The tolerance detects a fold trained on another order: fold 1 with the base seed is far off.
    assert _max_diff(together[1], train_fold(store, videos, trains[1], "micro", recipe=base)) > 100 * TOL


def test_streamed_windows_equal_windows_in_memory(store):
    videos = list_videos(store, 8)
    pairs = np.array([[0, 0], [3, 91], [1, 17], [2, 40], [0, 5]])
    assert torch.equal(MemoryWindows(store, videos).gather(pairs), StoreWindows(store, videos).gather(pairs))
    assert isinstance(load_windows(store, videos, device="cpu", share=1e-9), StoreWindows)
    assert isinstance(load_windows(store, videos, device="cpu", share=1.0), MemoryWindows)


def test_resume_keeps_finished_folds(store, tmp_path):
    out = tmp_path / "run"
    first = train_loso(store, out_dir=out, expression="macro", epochs=1, progress=False, report=False,
                       parallel_folds=2)
    (out / "folds/macro/c.pt").unlink()
    before = (out / "folds/macro/a.pt").stat().st_mtime_ns
    again = train_loso(store, out_dir=out, expression="macro", epochs=1, progress=False, report=False,
                       parallel_folds=2, memory_share=1e-9)  # and the streamed windows give the same run
    assert (out / "folds/macro/a.pt").stat().st_mtime_ns == before and (out / "folds/macro/c.pt").is_file()
    assert again.to_dict() == first.to_dict()
    shutil.rmtree(out)


def test_bad_parallel_settings(store, tmp_path):
    with pytest.raises(SpotnetError, match="parallel folds should be >= 1"):
        train_loso(store, out_dir=tmp_path, parallel_folds=0, progress=False)
    with pytest.raises(SpotnetError, match="--parallel-folds should be 1 for backbone 'resnet18'"):
        train_loso(store, out_dir=tmp_path, parallel_folds=2, backbone="resnet18", progress=False)
    with pytest.raises(SpotnetError, match="window memory share should be in"):
        load_windows(store, list_videos(store, 8), device="cpu", share=0)
