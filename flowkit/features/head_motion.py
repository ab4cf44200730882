"""SPEC section 4.1: removing global head motion with the patch around landmark 28."""

from __future__ import annotations

import numpy as np
import torch

from flowkit.errors import FlowkitError

__all__ = ["landmarks_as_int", "nose_patch", "remove_head_motion"]

PATCH_RADIUS = 5


def landmarks_as_int(landmarks) -> np.ndarray:
    """(68, 2) landmarks (numpy or torch, any dtype) as int64 pixels, rounded to nearest
    (half to even, as np.rint; dlib points are already integers)."""
    if isinstance(landmarks, torch.Tensor):
        landmarks = landmarks.detach().cpu().numpy()
    pts = np.asarray(landmarks)
    if pts.shape != (68, 2):
        raise FlowkitError(f"landmarks should have shape (68, 2), got {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise FlowkitError("landmarks should be finite, got NaN or inf")
    return np.rint(pts).astype(np.int64)


def nose_patch(landmarks, size: int = 128) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1), end exclusive, of the 11x11 patch centred on landmark 28.

    Rows y28-5 .. y28+5 and columns x28-5 .. x28+5 inclusive, clipped to the image.
    """
    x, y = landmarks_as_int(landmarks)[28]
    r = PATCH_RADIUS
    y0, y1 = max(y - r, 0), min(y + r + 1, size)
    x0, x1 = max(x - r, 0), min(x + r + 1, size)
    if y1 <= y0 or x1 <= x0:
        raise FlowkitError(f"landmark 28 should lie inside the {size}x{size} crop, got ({x}, {y})")
    return int(y0), int(y1), int(x0), int(x1)


def remove_head_motion(uve: torch.Tensor, landmarks) -> torch.Tensor:
    """Subtract the mean of the nose-root patch from each channel, per sample.

    u := |u - mean(u_patch)|, v := |v - mean(v_patch)|, e := e - mean(e_patch)
    (no absolute value on e).

    Args:
        uve: (B, 3, H, W) floating tensor, channels u, v, strain.
        landmarks: (68, 2) (x, y) in the same pixel frame, rounded to ints.

    Returns:
        (B, 3, H, W) tensor on ``uve``'s device and dtype.
    """
    if not isinstance(uve, torch.Tensor) or uve.ndim != 4 or uve.shape[1] != 3:
        raise FlowkitError(f"uve should be a (B, 3, H, W) tensor, got {getattr(uve, 'shape', type(uve).__name__)}")
    if uve.shape[2] != uve.shape[3]:
        raise FlowkitError(f"uve should be square, got {tuple(uve.shape[2:])}")
    y0, y1, x0, x1 = nose_patch(landmarks, size=uve.shape[2])
    mean = uve[:, :, y0:y1, x0:x1].mean(dim=(2, 3), keepdim=True)
    out = uve - mean
    return torch.cat([out[:, :2].abs(), out[:, 2:]], dim=1)
