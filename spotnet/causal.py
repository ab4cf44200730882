"""Causal spotting for live streams: SPEC 7 one window score at a time, nothing from the future.

The offline spotter (:func:`spotnet.spotting.spot_intervals`, the default and exact to SPEC 7)
smooths each score with the 2k scores after it and thresholds at the whole video's mean and
maximum, so nothing is known until the video ends. :class:`CausalSpotter` keeps the 2k
smoothing and ``find_peaks(distance=k)``'s rule, and replaces the whole-video statistics with
statistics of a trailing history of smoothed scores:

- ``a[t] = mean(s[t : t + 2k])`` is final once score ``t + 2k - 1`` has arrived;
- a peak ``t`` is decided once ``a[t + k]`` is known: it is a local maximum (a flat top counts
  at its middle), it reaches the threshold of the history at that moment, no later local maximum
  within ``k - 1`` above the threshold is higher, and no reported peak lies within ``k - 1`` before
  it (find_peaks' ``distance=k``, decided greedily in time order). Its interval is windows ``[t, t + 2k]``, as offline;
- rule "meanmax": ``T = mean(h) + p * (max(h) - mean(h))`` over the history ``h``, the offline
  rule on a trailing window; rule "quantile": ``T`` = the ``q`` quantile of ``h``;
- during the warm-up (fewer than ``warmup_s * fps`` smoothed values) nothing is reported.

Latency, in frames at k (window ``w`` pairs frames ``w`` and ``w + k``, so its score exists once
frame ``w + k`` is read): ``a[t + k]`` needs score ``t + 3k - 1``, so a peak at ``t`` is confirmed
when frame ``t + 4k - 1`` arrives: ``4k - 1`` frames after the interval's onset and ``2k - 1``
after its end (frame ``t + 2k``). At 30 fps: k = 6 (CAS(ME)^2 micro): 23 and 11 frames, 0.77 s
and 0.37 s; k = 18 (macro): 71 and 35 frames, 2.37 s and 1.17 s; plus the time to compute the
features.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from spotnet.errors import SpotnetError
from spotnet.spotting import SpottedInterval

__all__ = ["RULES", "CausalSpotter", "confirmation_delay", "spot_causal"]

RULES = ("meanmax", "quantile")


def confirmation_delay(k: int) -> int:
    """Frames between a spotted interval's onset and the frame at which it can be confirmed.

    >>> confirmation_delay(6), confirmation_delay(18)
    (23, 71)
    """
    return 4 * int(k) - 1


class CausalSpotter:
    """Spot intervals in a stream of window scores, as they become certain.

    Args:
        k: window length in frames (the model's k).
        fps: frames per second of the stream (converts the history and warm-up to samples).
        p: threshold position for rule "meanmax" (SPEC 7's p).
        history_s: length of the trailing history of smoothed scores the threshold is taken over.
        warmup_s: nothing is reported until this much history exists.
        rule: "quantile" (the default: early in a video the running maximum is low and the
            "meanmax" threshold lets noise through; compared in docs/live.md) or "meanmax".
        quantile: the quantile of rule "quantile".

    Feed scores with :meth:`push`, in window order; it returns the intervals confirmed by that
    score (0-based window indices, inclusive, as :class:`~spotnet.spotting.SpottedInterval`).
    :meth:`finish` confirms what the end of the stream decides.

    >>> spotter = CausalSpotter(2, fps=10, history_s=10, warmup_s=0)
    >>> scores = [0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    >>> [(i, it) for i, s in enumerate(scores) for it in spotter.push(s)]
    [(8, SpottedInterval(start=3, end=7, score=0.5))]
    """

    def __init__(self, k: int, *, fps: float, p: float = 0.55, history_s: float = 60.0, warmup_s: float = 2.0,
                 rule: str = "quantile", quantile: float = 0.95):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise SpotnetError(f"k should be an integer >= 1, got {k!r}")
        if not fps or fps <= 0:
            raise SpotnetError(f"fps should be > 0, got {fps!r}")
        if rule not in RULES:
            raise SpotnetError(f"threshold rule should be one of {', '.join(RULES)}, got {rule!r}")
        if not 0.0 <= p <= 1.0 or not 0.0 <= quantile <= 1.0:
            raise SpotnetError(f"p and quantile should be in [0, 1], got {p} and {quantile}")
        if history_s <= 0 or warmup_s < 0:
            raise SpotnetError(f"history should be > 0 s and warm-up >= 0 s, got {history_s} and {warmup_s}")
        self.k, self.p, self.rule, self.quantile = int(k), float(p), rule, float(quantile)
        self.history = max(int(round(history_s * fps)), 1)
        self.warmup = int(round(warmup_s * fps))
        self._scores: deque[float] = deque(maxlen=2 * self.k)  # the smoothing window
        self._recent: deque[float] = deque(maxlen=2 * self.k + 2)  # the newest smoothed values
        self._hist: deque[float] = deque(maxlen=self.history)
        self._n = 0  # smoothed values so far
        self._rise: int | None = None  # start of the flat top being climbed, if any
        self._maxima: deque[tuple[int, float]] = deque()  # local maxima not yet decided or within k
        self._last_peak = -self.k

    @property
    def n_smoothed(self) -> int:
        """How many smoothed values exist (the index of the next one)."""
        return self._n

    def push(self, score: float) -> list[SpottedInterval]:
        """Add the next window's score; the intervals it confirms."""
        score = float(score)
        if not np.isfinite(score):
            raise SpotnetError(f"scores should be finite, got {score}")
        self._scores.append(score)
        if len(self._scores) < 2 * self.k:
            return []
        # a[t] = mean(s[t : t + 2k]) for the newest t, in float32 as the offline spotter takes it
        value = float(np.asarray(self._scores, dtype=np.float32).mean())
        self._track_maxima(value)
        self._recent.append(value)
        self._hist.append(value)
        self._n += 1
        # A maximum m is decided once a[m + k] is known: every rival within k - 1 is then known.
        return self._decide(self._n - 1 - self.k)

    def finish(self) -> list[SpottedInterval]:
        """At the end of the stream: decide the maxima whose right side the end cut short."""
        return self._decide(self._n)

    def threshold(self) -> float:
        """The current threshold over the history (NaN before any smoothed value)."""
        if not self._hist:
            return float("nan")
        h = np.fromiter(self._hist, dtype=np.float64)
        if self.rule == "quantile":
            return float(np.quantile(h, self.quantile))
        return float(h.mean() + self.p * (h.max() - h.mean()))

    def _track_maxima(self, value: float) -> None:
        """find_peaks' local maxima: higher than both neighbours, a flat top counted at its middle."""
        if not self._recent:
            return
        prev, t = self._recent[-1], self._n  # t: index of ``value``
        if value > prev:
            self._rise = t
        elif value < prev and self._rise is not None:
            self._maxima.append(((self._rise + t - 1) // 2, prev))
            self._rise = None

    def _decide(self, up_to: int) -> list[SpottedInterval]:
        out = []
        threshold = self.threshold()
        while self._maxima and self._maxima[0][0] <= up_to:
            m, value = self._maxima.popleft()
            rivals = [v for i, v in self._maxima if i - m < self.k and v >= threshold]
            if (value >= threshold and self._n >= self.warmup and m - self._last_peak >= self.k
                    and all(v <= value for v in rivals)):
                self._last_peak = m
                out.append(SpottedInterval(m, m + 2 * self.k, value))
        return out


def spot_causal(scores, k: int, **options) -> list[SpottedInterval]:
    """All the intervals a :class:`CausalSpotter` reports over a whole (L,) score series.

    Every option of :class:`CausalSpotter` (``fps`` among them) is passed on.
    """
    spotter = CausalSpotter(k, **options)
    out = [it for s in np.asarray(scores, dtype=np.float64).ravel() for it in spotter.push(s)]
    return out + spotter.finish()
