"""The causal spotter against the offline one (SPEC 7), and its latency."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import find_peaks

from spotnet.causal import CausalSpotter, confirmation_delay, spot_causal
from spotnet.errors import SpotnetError
from spotnet.spotting import smooth_scores, spot_intervals


def bumps(n: int, where: list[int], width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    s = rng.normal(0, 0.02, n)
    for w in where:
        s[w:w + width] += 1.0
    return s


def test_separated_bumps_match_the_offline_spotter():
    """Well separated events: the same intervals as offline, except the first, which falls in the
    warm-up; each is reported by the score of window t + 3k - 1 (frame t + 4k - 1)."""
    k = 6
    s = bumps(900, [40, 300, 520, 700], 12)
    offline = spot_intervals(s, k)
    spotter = CausalSpotter(k, fps=30, history_s=30, warmup_s=2)  # 60 smoothed values
    reported = [(i, it) for i, x in enumerate(s) for it in spotter.push(x)]
    reported += [(len(s), it) for it in spotter.finish()]
    assert len(offline) == 4 and offline[0].start < 60
    assert [(it.start, it.end) for _, it in reported] == [(it.start, it.end) for it in offline[1:]]
    # Scores: a mean of 2k values against offline's cumulative sums, equal to float64 rounding.
    np.testing.assert_allclose([it.score for _, it in reported], [it.score for it in offline[1:]], rtol=1e-12)
    # Window i's score exists once frame i + k is read; an interval starting at t is confirmed at
    # frame t + 4k - 1, so at score index t + 3k - 1.
    assert all(i == it.start + confirmation_delay(k) - k for i, it in reported)


def test_peaks_are_find_peaks_peaks():
    """On noise (many close maxima) every causal peak is one of find_peaks' local maxima, at least
    k apart, and at least 80 % of the offline peaks are found (the threshold differs: the causal one
    only knows the past)."""
    k = 6
    rng = np.random.default_rng(1)
    s = np.convolve(rng.random(3000), np.ones(5) / 5, "same")
    a = smooth_scores(s, k)
    maxima = set(find_peaks(a)[0].tolist())
    causal = spot_causal(s, k, fps=30, history_s=1000, warmup_s=0)
    starts = [it.start for it in causal]
    assert set(starts) <= maxima and all(b - a_ >= k for a_, b in zip(starts, starts[1:]))
    offline = {it.start for it in spot_intervals(s, k)}
    assert len(offline & set(starts)) >= 0.8 * len(offline)


def test_warmup_and_history():
    k = 2
    s = bumps(400, [20, 200], 4)
    early = spot_causal(s, k, fps=10, history_s=100, warmup_s=0)
    late = spot_causal(s, k, fps=10, history_s=100, warmup_s=5)  # 50 smoothed values of warm-up
    assert [it.start for it in early][:1] == [19] or early[0].start < 50
    assert all(it.start + k >= 50 - 2 * k for it in late) and len(late) < len(early)
    quantile = spot_causal(s, k, fps=10, history_s=10, warmup_s=0, rule="quantile", quantile=0.99)
    assert {it.start for it in quantile} >= {it.start for it in early if it.score > 0.5}


@pytest.mark.parametrize("kwargs, match", [({"k": 0}, "k should"), ({"fps": 0}, "fps"), ({"rule": "max"}, "rule"),
                                           ({"p": 2.0}, "p and quantile"), ({"history_s": 0}, "history")])
def test_bad_settings(kwargs, match):
    options = {"k": 6, "fps": 30.0, **kwargs}
    with pytest.raises(SpotnetError, match=match):
        CausalSpotter(options.pop("k"), **options)
