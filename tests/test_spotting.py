"""Smoothing and peak spotting (SPEC 7) on hand-built score series."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import find_peaks

from spotnet import SpotnetError, SpottedInterval, smooth_scores, spot_intervals


def scores_with_smoothed(a, k):
    """Window scores s whose 2k moving average is exactly ``a`` (first 2k scores equal a[0]).

    a[t+1] - a[t] = (s[t+2k] - s[t]) / 2k, so s[t+2k] = s[t] + 2k (a[t+1] - a[t]). The last
    score s[L-1] never enters a (t stops at L - 2k - 1, as in the released code); it is 0 here.
    """
    s = [float(a[0])] * (2 * k)
    for t in range(len(a) - 1):
        s.append(s[t] + 2 * k * (a[t + 1] - a[t]))
    return np.array(s + [0.0])


def test_smooth_is_2k_mean():
    assert smooth_scores([0, 2, 4, 6], 1).tolist() == [1.0, 3.0]
    # k = 2: mean of 4 consecutive scores, t = 0 .. L - 2k - 1 = 0 .. 1.
    assert smooth_scores(np.arange(6), 2).tolist() == [1.5, 2.5]


def test_helper_builds_the_wanted_smoothing():
    a = [0, 1, 0.5, 0.9, 0, 0, 0]
    # 1e-12: a handful of float64 additions of values <= 6.
    np.testing.assert_allclose(smooth_scores(scores_with_smoothed(a, 3), 3), a, atol=1e-12)


@pytest.mark.parametrize("length", [0, 1, 3, 4])
def test_too_short_to_smooth(length):
    # L <= 2k = 4 leaves no full smoothing window: nothing spotted, no crash.
    assert smooth_scores(np.ones(length), 2).shape == (0,)
    assert spot_intervals(np.ones(length), 2) == []


def test_single_peak_interval_and_score():
    # k = 1: a = [0, 0, .5, 1, .5, 0]; T = 1/3 + .55 * (1 - 1/3) = .7; peak t = 3 -> frames [3, 5].
    assert spot_intervals([0, 0, 0, 1, 1, 0, 0, 0], 1) == [SpottedInterval(3, 5, 1.0)]


def test_peaks_closer_than_k_keep_the_higher():
    # a has peaks at t = 1 (1.0) and t = 3 (0.9), both above T = 2.4/7 + .55 (1 - 2.4/7) = .704,
    # 2 apart < k = 3: find_peaks keeps only the higher one.
    s = scores_with_smoothed([0, 1, 0.5, 0.9, 0, 0, 0], 3)
    (got,) = spot_intervals(s, 3)
    assert (got.start, got.end) == (1, 7)
    assert got.score == pytest.approx(1.0, abs=1e-12)  # float64 rounding in the helper


def test_peaks_k_apart_are_both_kept():
    # Peaks at t = 1 and t = 4 are k = 3 apart: both kept, in frame order.
    s = scores_with_smoothed([0, 1, 0.5, 0.5, 0.9, 0, 0, 0], 3)
    got = spot_intervals(s, 3)
    assert [(g.start, g.end) for g in got] == [(1, 7), (4, 10)]


def test_threshold_p():
    # Same a as above: mean .3625, max 1. p = 0.8 -> T = .8725 keeps both peaks (1 and .9);
    # p = 0.9 -> T = .93625 keeps only t = 1. p = 0 keeps every peak above the mean.
    s = scores_with_smoothed([0, 1, 0.5, 0.5, 0.9, 0, 0, 0], 3)
    assert [g.start for g in spot_intervals(s, 3, p=0.8)] == [1, 4]
    assert [g.start for g in spot_intervals(s, 3, p=0.9)] == [1]
    assert [g.start for g in spot_intervals(s, 3, p=0.0)] == [1, 4]


def test_flat_scores_have_no_peak():
    assert spot_intervals(np.full(50, 0.3), 4) == []


def test_accepts_tensors():
    s = torch.tensor([0, 0, 0, 1, 1, 0, 0, 0], dtype=torch.float32)
    assert spot_intervals(s, 1) == [SpottedInterval(3, 5, 1.0)]


@pytest.mark.parametrize(
    ("scores", "k", "p", "match"),
    [
        ([0.1, float("nan"), 0.3, 0.2, 0.1], 1, 0.55, "should be finite"),
        ([0.1, float("inf"), 0.3, 0.2, 0.1], 1, 0.55, "should be finite"),
        (np.zeros((4, 4)), 1, 0.55, "1-D"),
        ([0.1] * 10, 0, 0.55, "k should be an integer >= 1"),
        ([0.1] * 10, 1.5, 0.55, "k should be an integer >= 1"),
        ([0.1] * 10, 1, -0.1, r"p should be a number in \[0, 1\]"),
        ([0.1] * 10, 1, 1.5, r"p should be a number in \[0, 1\]"),
        ([0.1] * 10, 1, float("nan"), r"p should be a number in \[0, 1\]"),
    ],
)
def test_bad_input(scores, k, p, match):
    with pytest.raises(SpotnetError, match=match):
        spot_intervals(scores, k, p=p)


def test_smooth_bad_input():
    with pytest.raises(SpotnetError, match="finite"):
        smooth_scores([float("nan")] * 5, 1)
    with pytest.raises(SpotnetError, match="k should"):
        smooth_scores([0.0] * 5, 0)


def _notebook_peaks(scores: np.ndarray, k: int, p: float = 0.55) -> list[int]:
    """SOFTNet_Spotting.ipynb cell 17 (``spotting``), transcribed for one video: the model's float32
    scores as an (L, 1) column, the aggregation loop, the threshold and find_peaks; returns the
    peaks (the intervals are [peak - k, peak + k] there, in frames shifted by k)."""
    score_plot = np.asarray(scores, np.float32).reshape(-1, 1)
    score_plot_agg = score_plot.copy()
    for x in range(len(score_plot[k:-k])):
        score_plot_agg[x + k] = score_plot[x:x + 2 * k].mean()
    score_plot_agg = score_plot_agg[k:-k]
    threshold = score_plot_agg.mean() + p * (max(score_plot_agg) - score_plot_agg.mean())
    peaks, _ = find_peaks(score_plot_agg[:, 0], height=threshold[0], distance=k)
    return [int(t) for t in peaks]


def _random_case(rng) -> tuple[np.ndarray, int]:
    """Scores with exact repeats (a model's outputs on still stretches), as float32."""
    k = int(rng.integers(2, 20))
    length = int(rng.integers(4 * k + 2, 400))
    levels = np.float32([0.0, 0.05, 0.1, 0.3, 0.5, 0.9])
    runs = rng.integers(1, 3 * k, size=length)
    scores = np.repeat(rng.choice(levels, size=length), runs)[:length]
    noisy = rng.random() < 0.5  # half the cases: continuous scores without repeats
    if noisy:
        scores = scores + rng.normal(0, 0.02, length).astype(np.float32)
    return scores.astype(np.float32), k


def test_peaks_equal_the_notebook_on_400_random_cases():
    """spot_intervals finds the notebook's peaks on every one of 400 random cases (seed 0), half of
    them with exactly repeated scores: the smoothing is float32, slice by slice, as there."""
    rng = np.random.default_rng(0)
    for case in range(400):
        scores, k = _random_case(rng)
        ours = [it.start for it in spot_intervals(scores, k)]
        assert ours == _notebook_peaks(scores, k), f"case {case}, k={k}"
