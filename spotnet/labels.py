"""Pseudo-labels of optical-flow windows (SPEC section 6).

Window ``i`` pairs frames ``i`` and ``i + k``; for labelling it covers frames ``[i, i + k - 1]``.
Intervals are 0-based, inclusive ``(onset, offset)`` frame pairs of one expression type.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from spotnet.errors import SpotnetError

__all__ = ["KINDS", "pseudo_labels"]

KINDS = ("unit", "linear", "step")


def _check(n_windows: int, k: int, intervals, kind: str) -> np.ndarray:
    if isinstance(n_windows, bool) or not isinstance(n_windows, (int, np.integer)) or n_windows < 0:
        raise SpotnetError(f"n_windows should be an integer >= 0, got {n_windows!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise SpotnetError(f"k should be an integer >= 1, got {k!r}")
    if kind not in KINDS:
        raise SpotnetError(f"kind should be one of {', '.join(KINDS)}, got {kind!r}")
    pairs = np.asarray(list(intervals), dtype=np.int64)
    if pairs.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise SpotnetError(f"intervals should be (onset, offset) pairs, got array of shape {pairs.shape}")
    bad = (pairs[:, 0] < 0) | (pairs[:, 0] > pairs[:, 1])
    if bad.any():
        onset, offset = pairs[bad][0]
        raise SpotnetError(f"intervals should have 0 <= onset <= offset, got ({onset}, {offset})")
    return pairs


def pseudo_labels(
    n_windows: int,
    k: int,
    intervals: Iterable[tuple[int, int]],
    *,
    kind: str = "unit",
) -> np.ndarray:
    """Training targets of the ``n_windows`` windows of one video.

    Kinds, for window frames ``W = [i, i + k - 1]`` and one interval ``[onset, offset]``:

    - ``"unit"`` (default, the released code): 1 if ``W`` intersects ``[onset + 1, offset]``,
      else 0. The ``+ 1`` follows the released code: a window that only touches the onset frame
      is not positive (the flow from the onset frame onward starts one frame later), and an
      interval with ``onset == offset`` labels nothing.
    - ``"linear"``: the frame-inclusive IoU of ``W`` and ``[onset, offset]``, i.e.
      ``inter / (k + (offset - onset + 1) - inter)`` with ``inter`` the number of shared frames.
    - ``"step"``: 1 if that IoU >= 0.5, else 0.

    With several intervals a window takes the maximum over them.

    Args:
        n_windows: number of windows L (frames T minus k).
        k: window length in frames, >= 1.
        intervals: 0-based inclusive (onset, offset) pairs.
        kind: "unit", "linear" or "step" (keyword-only).

    Returns:
        (L,) float32 labels in [0, 1].

    >>> pseudo_labels(6, 2, [(2, 3)]).tolist()
    [0.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    """
    pairs = _check(n_windows, k, intervals, kind)
    labels = np.zeros(n_windows, dtype=np.float32)
    start = np.arange(n_windows, dtype=np.int64)
    end = start + k - 1
    for onset, offset in pairs:
        if kind == "unit":
            # Frames [onset + 1, offset]; empty (no positive window) when onset == offset.
            value = ((start <= offset) & (end >= onset + 1) & (onset < offset)).astype(np.float32)
        else:
            inter = np.clip(np.minimum(end, offset) - np.maximum(start, onset) + 1, 0, None)
            iou = inter / (k + (offset - onset + 1) - inter)
            value = (iou if kind == "linear" else iou >= 0.5).astype(np.float32)
        np.maximum(labels, value, out=labels)
    return labels
