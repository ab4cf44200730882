"""5x5 (or 3x3) median filter that reproduces ``cv2.medianBlur`` on float32 (replicated border)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def median_blur(x: torch.Tensor, ksize: int) -> torch.Tensor:
    """Median over ksize x ksize windows with a replicated border, like ``cv2.medianBlur``.

    Args:
        x: images (B, C, H, W) float.
        ksize: odd window size (OpenCV accepts 3 or 5 for float32).

    Returns:
        filtered images (B, C, H, W). The window has an odd number of values, so the median is
        one of them, exactly as OpenCV's sorting network returns.
    """
    b, c, h, w = x.shape
    r = ksize // 2
    padded = F.pad(x.reshape(b * c, 1, h, w), (r, r, r, r), mode="replicate")
    patches = F.unfold(padded, ksize)  # (B*C, k*k, H*W)
    return patches.median(dim=1).values.reshape(b, c, h, w)
