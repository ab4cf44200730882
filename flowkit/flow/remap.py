"""Backward warping that reproduces ``cv2.remap(..., INTER_CUBIC, BORDER_CONSTANT 0)``.

OpenCV 5.x samples float maps at their exact (unquantised) positions and weighs the 4x4
neighbourhood with Keys' cubic kernel (a = -0.75); taps outside the image read the border
value 0. (OpenCV 4.x quantised the maps to 1/32 pixel first; checked against cv2 5.1 in
tests/test_flow_torch.py.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["cubic_weights", "remap_cubic"]

_A = -0.75
_PAD = 3


def cubic_weights(t: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Keys' cubic weights of the taps at offsets -1, 0, 1, 2 for fractions ``t`` in [0, 1)."""
    a = _A
    t1 = t + 1
    s = 1 - t
    w0 = ((a * t1 - 5 * a) * t1 + 8 * a) * t1 - 4 * a
    w1 = ((a + 2) * t - (a + 3)) * t * t + 1
    w2 = ((a + 2) * s - (a + 3)) * s * s + 1
    return w0, w1, w2, 1 - w0 - w1 - w2


def remap_cubic(img: torch.Tensor, map_x: torch.Tensor, map_y: torch.Tensor) -> torch.Tensor:
    """Sample ``img`` at (map_x, map_y) with OpenCV's bicubic remap and a zero border.

    Args:
        img: images (B, C, H, W) float; all C channels share the same sampling positions.
        map_x: x coordinates (B, H', W') float, in pixels.
        map_y: y coordinates (B, H', W') float.

    Returns:
        samples (B, C, H', W').
    """
    b, c, h, w = img.shape
    ho, wo = map_x.shape[-2:]
    # Anything further than 3 px outside reads only zeros; clamping keeps indices small.
    mx = map_x.clamp(-_PAD - 1, w + _PAD)
    my = map_y.clamp(-_PAD - 1, h + _PAD)
    fx, fy = torch.floor(mx), torch.floor(my)
    wx = cubic_weights(mx - fx)
    wy = cubic_weights(my - fy)
    ix, iy = fx.to(torch.int64), fy.to(torch.int64)
    # Zero padding of width _PAD: taps outside the padded image clamp onto a zero pixel.
    padded = F.pad(img, (_PAD, _PAD, _PAD, _PAD))
    hp, wp = h + 2 * _PAD, w + 2 * _PAD
    flat = padded.reshape(b, c, hp * wp)
    cols = [(ix + (j - 1 + _PAD)).clamp_(0, wp - 1) for j in range(4)]
    out = img.new_zeros((b, c, ho * wo))
    for i in range(4):
        row = (iy + (i - 1 + _PAD)).clamp_(0, hp - 1) * wp
        acc = img.new_zeros((b, c, ho * wo))
        for j in range(4):
            idx = (row + cols[j]).reshape(b, 1, ho * wo).expand(b, c, ho * wo)
            acc += torch.gather(flat, 2, idx) * wx[j].reshape(b, 1, ho * wo)
        out += acc * wy[i].reshape(b, 1, ho * wo)
    return out.reshape(b, c, ho, wo)
