"""5x5 (or 3x3) median filter that reproduces ``cv2.medianBlur`` on float32 (replicated border).

Off the CPU the median is a selection network of min/max compare-exchanges: elementwise,
deterministic (it runs under ``torch.use_deterministic_algorithms(True)``) and exact, because a
median of an odd count is one of the inputs whatever the order of the comparisons. The network
is built in two stages:

1. each column of a window is sorted (``sorting_network(ksize)``); a column belongs to ``ksize``
   horizontally adjacent windows, so this stage runs once over the padded image and is shared;
2. ``median_network(ksize)``: Batcher's odd-even merge sort over the ``ksize**2`` values of a
   window (wire ``c * ksize + r`` holds rank ``r`` of column ``c``), less every comparator that
   never exchanges anything once the columns are sorted (checked on all 0-1 inputs with sorted
   columns, which by the 0-1 principle covers all real inputs), less every output that does not
   reach the median wire. 85 comparators (146 min/max) for 5x5, 17 (26) for 3x3.
"""

from __future__ import annotations

import itertools
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["median_blur", "median_blur_torch", "median_network", "sorting_network"]


@cache
def sorting_network(n: int) -> tuple[tuple[int, int], ...]:
    """Batcher's odd-even merge sort on ``n`` wires: comparators (i, j), i < j, in order.

    After each comparator wire i holds the minimum and wire j the maximum.

    >>> sorting_network(3)
    ((0, 1), (0, 2), (1, 2))
    """
    ops = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        ops.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return tuple(ops)


def _sorted_column_inputs(k: int) -> np.ndarray:
    """All 0-1 windows (N, k*k) bool whose k columns are sorted, column-major wires."""
    columns = [[False] * (k - ones) + [True] * ones for ones in range(k + 1)]
    rows = [sum((columns[z] for z in combo), []) for combo in itertools.product(range(k + 1), repeat=k)]
    return np.array(rows, dtype=bool)


@cache
def median_network(ksize: int) -> tuple[tuple[int, int, bool, bool], ...]:
    """The second stage of the median: ops (i, j, keep_min, keep_max) over ``ksize**2`` wires.

    Wire ``c * ksize + r`` starts as rank ``r`` of the sorted column ``c``. An op computes
    ``min(w[i], w[j])`` into wire i when ``keep_min`` and ``max`` into wire j when ``keep_max``
    (the other output is never read again). At the end wire ``ksize**2 // 2`` holds the median.
    """
    x = _sorted_column_inputs(ksize)
    kept = []
    for i, j in sorting_network(ksize * ksize):
        if np.any(x[:, i] & ~x[:, j]):  # it exchanges something on some input
            kept.append((i, j))
            x[:, i], x[:, j] = x[:, i] & x[:, j], x[:, i] | x[:, j]
    needed = {ksize * ksize // 2}
    ops = []
    for i, j in reversed(kept):
        keep_min, keep_max = i in needed, j in needed
        if keep_min or keep_max:
            ops.append((i, j, keep_min, keep_max))
            needed |= {i, j}
    return tuple(reversed(ops))


def median_blur(x: torch.Tensor, ksize: int) -> torch.Tensor:
    """Median over ksize x ksize windows with a replicated border, like ``cv2.medianBlur``.

    On the CPU this calls ``cv2.medianBlur`` itself (SIMD sorting network); elsewhere it runs
    ``median_blur_torch``. Both return one of the window's values, the same one.

    Args:
        x: images (B, C, H, W) float32.
        ksize: odd window size (OpenCV accepts 3 or 5 for float32).

    Returns:
        filtered images (B, C, H, W).
    """
    if x.device.type == "cpu" and x.dtype == torch.float32:
        return _median_cv2(x, ksize)
    return median_blur_torch(x, ksize)


def median_blur_torch(x: torch.Tensor, ksize: int) -> torch.Tensor:
    """The pure-torch path of ``median_blur`` (any device): images (B, C, H, W) -> (B, C, H, W).

    >>> img = torch.arange(16.0).reshape(1, 1, 4, 4)
    >>> median_blur_torch(img, 3)[0, 0, 1].tolist()
    [4.0, 5.0, 6.0, 7.0]
    """
    h, w = x.shape[-2:]
    r = ksize // 2
    padded = F.pad(x, (r, r, r, r), mode="replicate")
    # Stage 1 on the padded width: rows[r][..., y, x'] is rank r of column x' around row y.
    rows: list = [padded[..., i : i + h, :] for i in range(ksize)]
    for i, j in sorting_network(ksize):
        rows[i], rows[j] = torch.minimum(rows[i], rows[j]), torch.maximum(rows[i], rows[j])
    wires: list = [rows[rr][..., c : c + w] for c in range(ksize) for rr in range(ksize)]
    del rows, padded
    for i, j, keep_min, keep_max in median_network(ksize):
        lo = torch.minimum(wires[i], wires[j]) if keep_min else None
        hi = torch.maximum(wires[i], wires[j]) if keep_max else None
        # A dropped output is never read again: free it now rather than at the end.
        wires[i], wires[j] = lo, hi
    return wires[ksize * ksize // 2]


def _median_cv2(x: torch.Tensor, ksize: int) -> torch.Tensor:
    import cv2

    b, c, h, w = x.shape
    src = x.detach().contiguous().numpy().reshape(b * c, h, w)
    out = np.empty_like(src)
    for i in range(b * c):
        cv2.medianBlur(src[i], ksize, out[i])
    return torch.from_numpy(out).reshape(b, c, h, w)
