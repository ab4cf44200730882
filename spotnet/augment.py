"""Micro-expression training augmentation (SPEC section 6).

Every positive micro window gets three extra copies: a horizontal flip, a 7x7 Gaussian blur
(OpenCV sigma 0) and additive Gaussian noise of variance 0.01 (the released code's value; the
paper writes N(0, 1)). They act on one *normalised* window (values in [0, 1]), so the noise
variance is relative to that range.
"""

from __future__ import annotations

import cv2
import numpy as np

from spotnet.errors import SpotnetError

__all__ = ["NONE", "FLIP", "BLUR", "NOISE", "COPIES", "NOISE_VARIANCE", "augment_window"]

#: Augmentation codes stored next to each training window.
NONE, FLIP, BLUR, NOISE = 0, 1, 2, 3
COPIES = (FLIP, BLUR, NOISE)
NOISE_VARIANCE = 0.01


def augment_window(x: np.ndarray, code: int, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """Apply augmentation ``code`` to one window.

    Args:
        x: (3, 42, 42) float32 window, channels (u, v, e), normalised to [0, 1].
        code: NONE, FLIP (mirror the x axis), BLUR (7x7 Gaussian, sigma 0) or NOISE
            (N(0, 0.01) added).
        rng: random generator for NOISE (keyword-only); a fixed one gives fixed noise.

    Returns:
        (3, 42, 42) float32 window (a new array unless ``code`` is NONE).

    >>> float(augment_window(np.arange(3.0 * 42 * 42, dtype=np.float32).reshape(3, 42, 42), FLIP)[0, 0, 0])
    41.0
    """
    if code == NONE:
        return x
    if code == FLIP:
        return np.ascontiguousarray(x[:, :, ::-1])
    if code == BLUR:
        hwc = np.ascontiguousarray(x.transpose(1, 2, 0))
        return np.ascontiguousarray(cv2.GaussianBlur(hwc, (7, 7), 0).transpose(2, 0, 1))
    if code == NOISE:
        rng = rng if rng is not None else np.random.default_rng()
        return (x + rng.normal(0.0, np.sqrt(NOISE_VARIANCE), size=x.shape)).astype(np.float32)
    raise SpotnetError(f"augmentation code should be one of 0..3, got {code}")
