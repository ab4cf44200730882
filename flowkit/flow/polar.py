"""The released code's polar round trip of the flow (SPEC 9): u, v through ``cv2.cartToPolar`` and back.

Extraction_Preprocess.ipynb (cell 18) converts each flow to magnitude and angle with
``cv2.cartToPolar`` and back with ``rho * cos(phi)``, ``rho * sin(phi)`` in float32 numpy.
OpenCV's angle is a fast approximation, so the round trip turns each vector slightly
(docs/faithfulness.md gives the measured size). It runs on the host, after any backend's solve.
"""

from __future__ import annotations

import cv2
import numpy as np

from flowkit.errors import FlowkitError

__all__ = ["polar_round_trip"]


def polar_round_trip(flow: np.ndarray) -> np.ndarray:
    """u, v through ``cv2.cartToPolar`` (radians) and back, as the released code does.

    Args:
        flow: (B, 2, H, W) or (2, H, W) float32 numpy, channel 0 u (x), channel 1 v (y).

    Returns:
        float32 numpy of the same shape.

    >>> out = polar_round_trip(np.array([[[3.0]], [[4.0]]], dtype=np.float32))
    >>> bool(np.allclose(out.ravel(), [3.0, 4.0], atol=1e-3))
    True
    """
    flow = np.asarray(flow)
    if flow.ndim not in (3, 4) or flow.shape[-3] != 2:
        raise FlowkitError(f"flow should have shape (B, 2, H, W) or (2, H, W), got {flow.shape}")
    flow = flow.astype(np.float32, copy=False)
    out = np.empty_like(flow)
    for pair_in, pair_out in zip(flow.reshape(-1, *flow.shape[-3:]), out.reshape(-1, *flow.shape[-3:])):
        magnitude, angle = cv2.cartToPolar(np.ascontiguousarray(pair_in[0]), np.ascontiguousarray(pair_in[1]))
        pair_out[0] = magnitude * np.cos(angle)
        pair_out[1] = magnitude * np.sin(angle)
    return out
