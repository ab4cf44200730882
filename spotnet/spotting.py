"""Spotting expression intervals from per-window scores (SPEC section 7)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.signal import find_peaks

from spotnet.errors import SpotnetError

__all__ = ["SpottedInterval", "smooth_scores", "spot_intervals", "spot_video"]


class SpottedInterval(NamedTuple):
    """One spotted interval: 0-based inclusive frames ``[start, end]`` and its smoothed peak score."""

    start: int
    end: int
    score: float


def _as_scores(scores) -> np.ndarray:
    if hasattr(scores, "detach"):  # torch tensor on any device
        scores = scores.detach().cpu().numpy()
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise SpotnetError(f"scores should be a 1-D series of window scores, got shape {s.shape}")
    if not np.isfinite(s).all():
        raise SpotnetError(f"scores should be finite, got {int((~np.isfinite(s)).sum())} NaN or infinite values")
    return s


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise SpotnetError(f"k should be an integer >= 1, got {k!r}")
    return int(k)


def _smooth(s: np.ndarray, k: int) -> np.ndarray:
    # As SOFTNet_Spotting.ipynb (cell 17, spotting) does it: numpy's float32 mean of each slice of
    # the float32 scores. Equal slices then give equal values (a running float64 sum does not),
    # which decides where find_peaks puts the peak of a plateau.
    n = s.shape[0] - 2 * k
    s32 = s.astype(np.float32)
    return np.array([s32[t : t + 2 * k].mean() for t in range(max(n, 0))], dtype=np.float32)


def smooth_scores(scores, k: int) -> np.ndarray:
    """Moving average of the window scores over 2k windows, as in the released code.

    ``a[t] = mean(s[t : t + 2k])`` for ``t = 0 .. L - 2k - 1``. (The paper describes a centred
    2k + 1 window; SPEC section 9 keeps the code's 2k.) As in the code, the last score
    ``s[L - 1]`` never enters ``a``, and the means are taken in float32, slice by slice, as the
    released code takes them of the model's float32 scores.

    Args:
        scores: (L,) window scores (array-like or tensor), finite.
        k: window length in frames, >= 1.

    Returns:
        (max(L - 2k, 0),) float32 smoothed scores; empty when L <= 2k.

    >>> smooth_scores([0, 2, 4, 6], 1).tolist()
    [1.0, 3.0]
    """
    return _smooth(_as_scores(scores), _check_k(k))


def spot_intervals(scores, k: int, *, p: float = 0.55, n_frames: int | None = None) -> list[SpottedInterval]:
    """Spot intervals in one video's window scores.

    Smooth (see :func:`smooth_scores`), threshold at ``T = mean(a) + p * (max(a) - mean(a))``,
    take ``scipy.signal.find_peaks(a, height=T, distance=k)`` and turn each peak ``t`` into
    frames ``[t, t + 2k]`` scored ``a[t]``. A series with L <= 2k has nothing to smooth and
    gives no interval.

    Args:
        scores: (L,) window scores, finite.
        k: window length in frames, >= 1.
        p: threshold position between mean and max of ``a``, in [0, 1] (keyword-only).
        n_frames: the video's frame count; when given, an end beyond its last frame is
            clamped to ``n_frames - 1``.

    Returns:
        Spotted intervals in increasing frame order.

    >>> spot_intervals([0, 0, 0, 1, 1, 0, 0, 0], 1)
    [SpottedInterval(start=3, end=5, score=1.0)]
    """
    s = _as_scores(scores)
    k = _check_k(k)
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not (0.0 <= p <= 1.0):
        raise SpotnetError(f"p should be a number in [0, 1], got {p!r}")
    a = _smooth(s, k)
    if a.size == 0:
        return []
    mean = a.mean()  # float32 throughout, as in the released code
    threshold = mean + np.float32(p) * (a.max() - mean)
    peaks, _ = find_peaks(a, height=threshold, distance=k)
    last = None if n_frames is None else int(n_frames) - 1
    return [SpottedInterval(int(t), int(t + 2 * k) if last is None else min(int(t + 2 * k), last), float(a[t]))
            for t in peaks]


def spot_video(scores, video, expression: str, *, p: float = 0.55) -> list:
    """Spot one video's window scores as typed intervals ready for evaluation.

    Args:
        scores: (n_windows,) raw window scores of the video.
        video: a :class:`spotnet.dataset.VideoWindows` (its id, k and frame count are used).
        expression: "macro" or "micro", the type given to every interval.
        p: threshold position (SPEC 7).

    Returns:
        0-based :class:`spotnet.evaluation.EvalInterval` list with scores, ends clamped to the
        video's last frame.
    """
    from spotnet.evaluation import EvalInterval

    return [EvalInterval(video.video, it.start, it.end, expression, it.score)
            for it in spot_intervals(scores, video.k, p=p, n_frames=video.n_frames)]
