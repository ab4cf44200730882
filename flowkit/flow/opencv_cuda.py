"""TV-L1 with OpenCV's CUDA module (``cv2.cuda.OpticalFlowDual_TVL1``) when the build has it.

The pip wheels of OpenCV are built without CUDA, so this backend is usually unavailable;
everything here is detected at run time and importing this module never fails.
"""

from __future__ import annotations

import numpy as np

from flowkit.errors import FlowkitError
from flowkit.flow.opencv_tvl1 import PairSolver, solve_pairs
from flowkit.flow.params import TVL1Params

__all__ = ["opencv_cuda_available", "tvl1_opencv_cuda"]


def opencv_cuda_available() -> bool:
    """True when cv2 has the CUDA optical-flow module and sees at least one CUDA device."""
    try:
        import cv2

        if cv2.cuda.getCudaEnabledDeviceCount() <= 0:
            return False
        return hasattr(cv2.cuda, "OpticalFlowDual_TVL1_create")
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return False


def tvl1_opencv_cuda(prev, nxt, **params) -> np.ndarray:
    """Dual TV-L1 with ``cv2.cuda``, one pair per call.

    Not the CPU solver's twin: cv2.cuda's DualTVL1 has no median filtering and a single
    iteration count (here outer x inner), so its flow differs from ``cv2.optflow``'s. The
    torch backend is the one that reproduces the CPU reference on CUDA.

    Args:
        prev: frames (B, H, W) uint8, or one frame (H, W).
        nxt: frames (B, H, W) uint8, same shape as ``prev``.
        **params: ``TVL1Params`` fields.

    Returns:
        flow (B, 2, H, W) float32; channel 0 is u (x), channel 1 is v (y).
    """
    return solve_pairs(prev, nxt, params, _cuda_pair_solver)


def _cuda_pair_solver(p: TVL1Params) -> PairSolver:
    if not opencv_cuda_available():
        raise FlowkitError(
            "backend 'opencv-cuda' should have an OpenCV build with CUDA and a CUDA device, "
            "got none"
        )
    import cv2

    solver = cv2.cuda.OpticalFlowDual_TVL1_create(
        tau=p.tau,
        lambda_=p.lambda_,
        theta=p.theta,
        nscales=p.nscales,
        warps=p.warps,
        epsilon=p.epsilon,
        iterations=p.outer_iterations * p.inner_iterations,
        scaleStep=p.scale_step,
        gamma=p.gamma,
        useInitialFlow=False,
    )
    g0, g1 = cv2.cuda_GpuMat(), cv2.cuda_GpuMat()

    def solve(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        # uint8 in: cv2.cuda scales float input by 255 (it expects 0..1) but uint8 by 1.
        g0.upload(prev)
        g1.upload(nxt)
        return solver.calc(g0, g1, None).download()

    return solve
