"""Bilinear resizing that reproduces ``cv2.resize(..., INTER_LINEAR)`` on float32 images.

OpenCV's image pyramid for TV-L1 resizes each level from the previous one with ``fx = fy =
scale_step``: the output size is ``round(size * scale_step)`` but the sampling step is exactly
``1 / scale_step`` (not in/out), so ``torch.nn.functional.interpolate`` (which floors the size)
cannot be used as is. Resizing is expressed as two small interpolation matrices, applied
horizontally first and vertically second, like OpenCV's row buffer.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

__all__ = ["pyramid_sizes", "resize_linear", "resize_matrices"]


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


def resize_linear(
    img: torch.Tensor, size: tuple[int, int], scale: tuple[float, float] | None = None
) -> torch.Tensor:
    """Resize (..., H, W) float images to ``size`` like ``cv2.resize(INTER_LINEAR)``.

    Args:
        img: images (..., H, W) float.
        size: output (H', W').
        scale: (fy, fx) when OpenCV was called with factors instead of a size.

    Returns:
        images (..., H', W').
    """
    ry, rx = resize_matrices(tuple(img.shape[-2:]), size, scale, img.device, img.dtype)
    return ry @ (img @ rx)
