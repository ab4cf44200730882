"""TV-L1 on the CPU with OpenCV's ``cv2.optflow.DualTVL1OpticalFlow`` (the reference).

:func:`solve_pairs` is the driver that both OpenCV backends share (this one and
:mod:`flowkit.flow.opencv_cuda`): it validates the input once and fills the (B, 2, H, W) flow
one pair at a time with a backend's per-pair solver.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from flowkit.errors import FlowkitError
from flowkit.flow.params import TVL1Params, check_params

__all__ = ["PairSolver", "as_uint8_batch", "create_solver", "solve_pairs", "tvl1_opencv"]

#: Flow (H, W, 2) float32 from one pair of (H, W) uint8 C-contiguous frames.
PairSolver = Callable[[np.ndarray, np.ndarray], np.ndarray]


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

    if not hasattr(cv2, "optflow"):
        raise FlowkitError(f"the opencv backend needs cv2.optflow (opencv-contrib-python); "
                           f"this OpenCV {cv2.__version__} has no contrib modules")
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


def solve_pairs(prev, nxt, params: dict, make_solver: Callable[[TVL1Params], PairSolver]) -> np.ndarray:
    """Validate a batch, then solve it pair by pair.

    Args:
        prev: frames (B, H, W) uint8, or one frame (H, W).
        nxt: frames (B, H, W) uint8, same shape as ``prev``.
        params: ``TVL1Params`` fields, checked with :func:`~flowkit.flow.params.check_params`.
        make_solver: called once with the checked ``TVL1Params``, after the frames are
            validated; returns a function from one pair of (H, W) uint8 C-contiguous frames to
            the flow (H, W, 2) float32, as OpenCV's ``calc`` returns it.

    Returns:
        flow (B, 2, H, W) float32; channel 0 is u (x), channel 1 is v (y).
    """
    p = check_params(params)
    prev, nxt = as_uint8_batch(prev, nxt)
    solve = make_solver(p)
    b, h, w = prev.shape
    out = np.empty((b, 2, h, w), np.float32)
    for i in range(b):
        out[i] = solve(np.ascontiguousarray(prev[i]), np.ascontiguousarray(nxt[i])).transpose(2, 0, 1)
    return out


def tvl1_opencv(prev, nxt, **params) -> np.ndarray:
    """Dual TV-L1 flow from ``prev`` to ``nxt`` with OpenCV, one pair after another.

    Args:
        prev: frames (B, H, W) uint8, or one frame (H, W).
        nxt: frames (B, H, W) uint8, same shape as ``prev``.
        **params: ``TVL1Params`` fields (OpenCV defaults when omitted).

    Returns:
        flow (B, 2, H, W) float32; channel 0 is u (x), channel 1 is v (y).

    >>> a = np.zeros((2, 16, 16), np.uint8)
    >>> tvl1_opencv(a, a, nscales=1, warps=1, outer_iterations=1, inner_iterations=1).shape
    (2, 2, 16, 16)
    """
    return solve_pairs(prev, nxt, params, _cpu_pair_solver)


def _cpu_pair_solver(p: TVL1Params) -> PairSolver:
    solver = create_solver(p)
    return lambda prev, nxt: solver.calc(prev, nxt, None)
