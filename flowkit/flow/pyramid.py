"""Bilinear resizing that reproduces ``cv2.resize(..., INTER_LINEAR)`` on float32 images.

OpenCV's image pyramid for TV-L1 resizes each level from the previous one with ``fx = fy =
scale_step``: the output size is ``round(size * scale_step)`` but the sampling step is exactly
``1 / scale_step`` (not in/out), so ``torch.nn.functional.interpolate`` (which floors the size)
cannot be used as is. Each output pixel is two taps per axis, horizontally first and
vertically second, like OpenCV's row buffer, computed elementwise (gather, multiply, add): a
matrix product would give the same weights but, on CUDA, cuBLAS picks its kernel by the batch
size, so a pair's result would change in the last bit with its batch, and TV-L1 grows such bits
into pixels (tenths of a pixel after one iteration over 5 scales, found on a GPU by bisection).
The matrices remain available (:func:`resize_matrices`).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

__all__ = ["pyramid_sizes", "resize_linear", "resize_matrices", "resize_taps"]


def pyramid_sizes(
    height: int, width: int, nscales: int, scale_step: float
) -> list[tuple[int, int]]:
    """Sizes (H, W) of OpenCV's TV-L1 pyramid, finest first.

    A level smaller than 16 pixels on a side is dropped, and so are all coarser ones.

    >>> pyramid_sizes(128, 128, 5, 0.8)
    [(128, 128), (102, 102), (82, 82), (66, 66), (53, 53)]
    """
    sizes = [(height, width)]
    for _ in range(1, nscales):
        h, w = sizes[-1]
        # cv::resize sizes its output saturate_cast<int>(size * fx), i.e. cvRound.
        nh, nw = _cv_round(h * scale_step), _cv_round(w * scale_step)
        if nh < 16 or nw < 16:
            break
        sizes.append((nh, nw))
    return sizes


def _cv_round(x: float) -> int:
    # cvRound is lrint: round half to even, like Python's round().
    return int(round(x))


def _linear_matrix(n_in: int, n_out: int, scale: float) -> np.ndarray:
    """(n_out, n_in) matrix of cv::resize INTER_LINEAR weights for sampling step ``scale``."""
    m = np.zeros((n_out, n_in), np.float32)
    for d in range(n_out):
        # Position and fraction in double, the weights in float, as cv::resize does.
        pos = (d + 0.5) * scale - 0.5
        s = math.floor(pos)
        f = np.float32(pos - s)
        if s < 0:
            s, f = 0, np.float32(0)
        if s >= n_in - 1:
            s, f = n_in - 1, np.float32(0)
        m[d, s] += np.float32(1) - f
        if f != 0:
            m[d, s + 1] += f
    return m


def resize_matrices(
    src: tuple[int, int], dst: tuple[int, int], scale: tuple[float, float] | None, device, dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row matrix (H_dst, H_src) and transposed column matrix (W_src, W_dst).

    ``scale`` is OpenCV's (fy, fx) when the call passed factors; None when it passed a size
    (then the step is src/dst, computed as OpenCV does: 1 / (dst / src)).

    The matrices are built once per (sizes, scale, device, dtype) and cached: a solve resizes
    at every pyramid level, and on a GPU each build would be a copy from pageable memory.
    Callers must not modify them.
    """
    scale = None if scale is None else (float(scale[0]), float(scale[1]))
    return _cached_matrices(tuple(src), tuple(dst), scale, torch.device(device), dtype)


@lru_cache(maxsize=256)
def _cached_matrices(src, dst, scale, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    (hs, ws), (hd, wd) = src, dst
    if scale is None:
        sy, sx = 1.0 / (hd / hs), 1.0 / (wd / ws)
    else:
        sy, sx = 1.0 / scale[0], 1.0 / scale[1]
    ry = torch.from_numpy(_linear_matrix(hs, hd, sy)).to(device=device, dtype=dtype)
    rx = torch.from_numpy(_linear_matrix(ws, wd, sx).T.copy()).to(device=device, dtype=dtype)
    return ry, rx


def resize_taps(
    src: tuple[int, int], dst: tuple[int, int], scale: tuple[float, float] | None, device, dtype
) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """Per axis (rows, then columns): first tap index, second tap index, their weights, each (n_dst,).

    The same weights as :func:`resize_matrices` (a row of those matrices has at most two non-zero
    entries). Built once per (sizes, scale, device, dtype) and cached.
    """
    scale = None if scale is None else (float(scale[0]), float(scale[1]))
    return _cached_taps(tuple(src), tuple(dst), scale, torch.device(device), dtype)


@lru_cache(maxsize=256)
def _cached_taps(src, dst, scale, device, dtype):
    (hs, ws), (hd, wd) = src, dst
    if scale is None:
        sy, sx = 1.0 / (hd / hs), 1.0 / (wd / ws)
    else:
        sy, sx = 1.0 / scale[0], 1.0 / scale[1]

    def taps(n_in: int, n_out: int, step: float):
        m = _linear_matrix(n_in, n_out, step)
        first = m.argmax(axis=1) if n_in == 1 else (m != 0).argmax(axis=1)
        second = np.minimum(first + 1, n_in - 1)
        w0 = m[np.arange(n_out), first]
        w1 = np.where(second != first, m[np.arange(n_out), second], np.float32(0))
        as_t = lambda a, t: torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=t)  # noqa: E731
        return as_t(first, torch.long), as_t(second, torch.long), as_t(w0, dtype), as_t(w1, dtype)

    return taps(hs, hd, sy), taps(ws, wd, sx)


def resize_linear(
    img: torch.Tensor, size: tuple[int, int], scale: tuple[float, float] | None = None
) -> torch.Tensor:
    """Resize (..., H, W) float images to ``size`` like ``cv2.resize(INTER_LINEAR)``.

    Elementwise, so a pair's result does not depend on the other images of its batch.

    Args:
        img: images (..., H, W) float.
        size: output (H', W').
        scale: (fy, fx) when OpenCV was called with factors instead of a size.

    Returns:
        images (..., H', W').
    """
    (r0, r1, rw0, rw1), (c0, c1, cw0, cw1) = resize_taps(tuple(img.shape[-2:]), size, scale, img.device,
                                                         img.dtype)
    rows = img.index_select(-1, c0) * cw0 + img.index_select(-1, c1) * cw1
    return rows.index_select(-2, r0) * rw0[:, None] + rows.index_select(-2, r1) * rw1[:, None]
