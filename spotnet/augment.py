"""Micro-expression training augmentation and the released training generator (SPEC section 6).

Every positive micro window gets three extra copies: a horizontal flip, a 7x7 Gaussian blur
(OpenCV sigma 0, border reflect-101) and additive Gaussian noise of variance 0.01, clipped as
``skimage.util.random_noise`` clips with its defaults, which the released code calls (the paper
writes N(0, 1)): to [0, 1], or to [-1, 1] when the normalised window has a negative value
(:func:`released_low_clip`).

:func:`training_windows` is the released generator (``SOFTNet_Spotting.ipynb`` cells 16 and 18)
as it acts on a fold's windows: min-max normalise the base window, augment it, then min-max
normalise every window again before the model sees it. The second normalisation stretches a
blurred copy back to [0, 1] and rescales a noisy one. Every operation is elementwise or an exact
min/max, batched over (B, 3, H, W) on the input's device, so a row's result does not depend on
the other rows of its batch: the sequential trainer (one window at a time) and the fold-parallel
trainer (all folds' batches at once) compute the same values.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from spotnet.errors import SpotnetError
from spotnet.normalize import minmax_normalize

__all__ = ["NONE", "FLIP", "BLUR", "NOISE", "COPIES", "NOISE_VARIANCE", "BLUR_TAPS", "augment", "augment_window",
           "blur", "item_noise", "released_low_clip", "training_windows"]

#: Augmentation codes stored next to each training window.
NONE, FLIP, BLUR, NOISE = 0, 1, 2, 3
COPIES = (FLIP, BLUR, NOISE)
NOISE_VARIANCE = 0.01
#: cv2.getGaussianKernel(7, 0): OpenCV's fixed 7-tap table for sigma 0, exact binary fractions.
BLUR_TAPS = (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125)


def blur(x: torch.Tensor) -> torch.Tensor:
    """cv2.GaussianBlur(window, (7, 7), 0) of every channel of every sample.

    Separable, rows then columns as OpenCV filters, border reflect-101 (torch's "reflect").

    Args:
        x: (B, C, H, W) floating tensor, H and W at least 4.

    Returns:
        (B, C, H, W) tensor, same device and dtype.
    """
    half = len(BLUR_TAPS) // 2
    width, height = x.shape[-1], x.shape[-2]
    padded = F.pad(x, (half, half, 0, 0), mode="reflect")
    rows = sum(t * padded[..., i:i + width] for i, t in enumerate(BLUR_TAPS))
    padded = F.pad(rows, (0, 0, half, half), mode="reflect")
    return sum(t * padded[..., i:i + height, :] for i, t in enumerate(BLUR_TAPS))


def item_noise(seed, items, shape: tuple[int, int, int] = (3, 42, 42)) -> np.ndarray:
    """The noise of training items ``items``: N(0, 0.01), (B, C, H, W) float32.

    Item ``i`` always draws from ``np.random.default_rng((seed, i))``, in the (H, W, C) order in
    which ``skimage.util.random_noise`` draws for a channels-last window, so its noise does not
    depend on batching or on the order in which items are visited. ``seed``: one int, or one per
    item (folds of other seeds in one batch).
    """
    c, h, w = shape
    seeds = np.broadcast_to(np.asarray(seed, dtype=np.int64), (len(items),))
    out = np.empty((len(items), c, h, w), np.float32)
    for row, i in enumerate(items):
        draw = np.random.default_rng((int(seeds[row]), int(i))).normal(0.0, NOISE_VARIANCE ** 0.5, size=(h, w, c))
        out[row] = draw.transpose(2, 0, 1)
    return out


def released_low_clip(raw: np.ndarray) -> np.ndarray:
    """Lower clip of each window's noisy copy as the released code gets it: -1 or 0, (B,) float32.

    ``random_noise`` clips to [-1, 1] when its image has a negative value, else to [0, 1]. The
    released code hands it a window that ``cv2.normalize`` has min-max scaled, and OpenCV's
    float32 scale-and-shift often leaves its minimum a rounding error below 0 (about -1e-8), so
    the lower clip is -1 for most windows. This asks OpenCV itself for each window.

    Args:
        raw: (B, 3, H, W) float32 stored features.
    """
    out = np.zeros(len(raw), np.float32)
    for row, window in enumerate(raw):
        mins = [cv2.normalize(channel, None, alpha=0, beta=1, norm_type=cv2.NORM_MINMAX).min() for channel in window]
        out[row] = -1.0 if min(mins) < 0 else 0.0
    return out


def augment(x: torch.Tensor, codes, *, noise: torch.Tensor | None = None,
            low: torch.Tensor | None = None) -> torch.Tensor:
    """Apply each row's augmentation code to normalised windows.

    Args:
        x: (B, 3, H, W) floating tensor, min-max normalised (values in [0, 1]).
        codes: (B,) int, NONE, FLIP (mirror the x axis), BLUR (:func:`blur`) or NOISE (``noise``
            added, then clipped to [low, 1] as ``random_noise`` clips).
        noise: (B, 3, H, W) tensor on ``x``'s device; needed when a code is NOISE (rows with other
            codes ignore it).
        low: (B,) lower clip of each NOISE row (:func:`released_low_clip`); 0 when None.

    Returns:
        (B, 3, H, W) tensor (``x`` itself when every code is NONE).
    """
    codes = torch.as_tensor(np.asarray(codes), device=x.device).reshape(-1)
    if codes.numel() != x.shape[0]:
        raise SpotnetError(f"codes should have one entry per window ({x.shape[0]}), got {codes.numel()}")
    if bool(((codes < NONE) | (codes > NOISE)).any()):
        raise SpotnetError(f"augmentation codes should be in 0..3, got {sorted(set(codes.tolist()))}")
    if not bool((codes != NONE).any()):
        return x
    out = x.clone()
    for code, op in ((FLIP, _flip), (BLUR, _blurred), (NOISE, _noisy)):
        rows = torch.nonzero(codes == code).flatten()
        if rows.numel():
            extra = None if noise is None else (noise[rows], None if low is None else low[rows])
            out[rows] = op(x[rows], extra)
    return out


def _flip(x, _noise):
    return x.flip(-1)


def _blurred(x, _noise):
    return blur(x)


def _noisy(x, extra):
    if extra is None:
        raise SpotnetError("noise should be given for NOISE windows, got None")
    noise, low = extra
    out = x + noise
    if low is not None:
        out = torch.maximum(out, low.to(out.dtype).reshape(-1, 1, 1, 1))
    return out.clamp(min=None if low is not None else 0.0, max=1.0)


def training_windows(raw: torch.Tensor, codes, *, items=None, seed=0) -> torch.Tensor:
    """Windows as the released generator hands them to the model.

    Min-max normalise (per sample and channel), apply each row's augmentation code, min-max
    normalise again. NOISE rows are clipped below at :func:`released_low_clip`. Rows with code
    NONE come out as one normalisation gives them (normalising a normalised window changes
    nothing: its min is 0 and its max 1 exactly).

    Args:
        raw: (B, 3, H, W) float tensor of stored features.
        codes: (B,) augmentation codes.
        items: (B,) item numbers of the rows in their fold's training set; they fix each NOISE
            row's noise (:func:`item_noise`). Needed when a code is NOISE.
        seed: the recipe's seed (int), or one per row.

    Returns:
        (B, 3, H, W) float tensor in [0, 1] on ``raw``'s device.

    >>> training_windows(torch.tensor([[[[0.0, 2.0], [4.0, 8.0]]]]), [FLIP]).tolist()
    [[[[0.25, 0.0], [1.0, 0.5]]]]
    """
    codes = np.asarray(codes, dtype=np.int64).reshape(-1)
    base = minmax_normalize(raw)
    if not (codes != NONE).any():
        return base
    noise = low = None
    if (codes == NOISE).any():
        if items is None:
            raise SpotnetError("items should be given for NOISE windows (they fix the noise), got None")
        noisy = np.flatnonzero(codes == NOISE)
        rows = torch.from_numpy(noisy).to(raw.device)
        noise = torch.zeros_like(raw)
        seeds = np.broadcast_to(np.asarray(seed, dtype=np.int64), (len(codes),))[noisy]
        noise[rows] = torch.from_numpy(item_noise(seeds, np.asarray(items)[noisy], tuple(raw.shape[1:]))).to(
            raw.device, raw.dtype)
        low = torch.zeros(len(raw), dtype=raw.dtype, device=raw.device)
        low[rows] = torch.from_numpy(released_low_clip(raw[rows].cpu().numpy())).to(raw.device, raw.dtype)
    return minmax_normalize(augment(base, codes, noise=noise, low=low))


def augment_window(x: np.ndarray, code: int, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """Apply augmentation ``code`` to one normalised window (no second normalisation).

    Args:
        x: (3, 42, 42) float32 window, channels (u, v, e), normalised to [0, 1].
        code: NONE, FLIP, BLUR or NOISE (see :func:`augment`).
        rng: random generator for NOISE (keyword-only); a fixed one gives fixed noise.

    Returns:
        (3, 42, 42) float32 window.

    >>> float(augment_window(np.arange(3.0 * 42 * 42, dtype=np.float32).reshape(3, 42, 42), FLIP)[0, 0, 0])
    41.0
    """
    noise = None
    if code == NOISE:
        rng = rng if rng is not None else np.random.default_rng()
        noise = torch.from_numpy(rng.normal(0.0, NOISE_VARIANCE ** 0.5, size=x.shape).astype(np.float32))[None]
    return augment(torch.from_numpy(np.ascontiguousarray(x))[None], [code], noise=noise)[0].numpy()
