"""TV-L1 on the CPU with OpenCV's ``cv2.optflow.DualTVL1OpticalFlow`` (the reference)."""

from __future__ import annotations

import numpy as np

from flowkit.errors import FlowkitError
from flowkit.flow.params import check_params


def as_uint8_batch(prev, nxt) -> tuple[np.ndarray, np.ndarray]:
    """Validate a pair of (B, H, W) or (H, W) uint8 arrays; return (B, H, W) views."""
    prev = np.asarray(prev)
    nxt = np.asarray(nxt)
    if prev.shape != nxt.shape:
        raise FlowkitError(
            f"prev and nxt should have the same shape, got {prev.shape} and {nxt.shape}"
        )
    if prev.ndim == 2:
        prev, nxt = prev[None], nxt[None]
    if prev.ndim != 3:
        raise FlowkitError(f"frames should be (B, H, W) or (H, W), got shape {prev.shape}")
    if prev.dtype != np.uint8 or nxt.dtype != np.uint8:
        raise FlowkitError(f"frames should be uint8, got {prev.dtype} and {nxt.dtype}")
    return prev, nxt


def create_solver(params):
    """One ``cv2.optflow.DualTVL1OpticalFlow`` object configured from ``TVL1Params``."""
    import cv2

    return cv2.optflow.DualTVL1OpticalFlow_create(
        tau=params.tau,
        lambda_=params.lambda_,
        theta=params.theta,
        nscales=params.nscales,
        warps=params.warps,
        epsilon=params.epsilon,
        innnerIterations=params.inner_iterations,
        outerIterations=params.outer_iterations,
        scaleStep=params.scale_step,
        gamma=params.gamma,
        medianFiltering=params.median_filtering,
        useInitialFlow=False,
    )


def tvl1_opencv(prev, nxt, **params) -> np.ndarray:
    """Dual TV-L1 flow from ``prev`` to ``nxt`` with OpenCV, one pair after another.

    Args:
        prev: frames (B, H, W) uint8, or one frame (H, W).
        nxt: frames (B, H, W) uint8, same shape as ``prev``.
        **params: ``TVL1Params`` fields (OpenCV defaults when omitted).

    Returns:
        flow (B, 2, H, W) float32; channel 0 is u (x), channel 1 is v (y).
    """
    p = check_params(params)
    prev, nxt = as_uint8_batch(prev, nxt)
    solver = create_solver(p)
    b, h, w = prev.shape
    out = np.empty((b, 2, h, w), np.float32)
    for i in range(b):
        flow = solver.calc(np.ascontiguousarray(prev[i]), np.ascontiguousarray(nxt[i]), None)
        out[i] = flow.transpose(2, 0, 1)
    return out
