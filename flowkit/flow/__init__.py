"""TV-L1 optical flow (SPEC section 2) with interchangeable backends.

- ``opencv``: ``cv2.optflow.DualTVL1OpticalFlow`` on the CPU, the reference.
- ``torch``: a batched PyTorch port of the same algorithm, on any torch device.
- ``opencv-cuda``: ``cv2.cuda.OpticalFlowDual_TVL1`` when OpenCV was built with CUDA.
"""

from __future__ import annotations

import numpy as np

from flowkit.errors import FlowkitError
from flowkit.flow.backend import available_backends, resolve_backend
from flowkit.flow.params import TVL1Params, check_params

__all__ = ["TVL1Params", "available_backends", "resolve_backend", "tvl1"]


def tvl1(prev, nxt, *, backend: str = "opencv", device=None, impl: str = "auto", **params):
    """Dual TV-L1 optical flow from ``prev`` to ``nxt`` for a batch of frame pairs.

    Args:
        prev: frames (B, H, W) uint8 (numpy, or a torch tensor for ``backend="torch"``),
            or one frame (H, W).
        nxt: frames of the same shape.
        backend: "opencv" (default), "torch", "opencv-cuda" or "auto" (see ``resolve_backend``).
        device: torch device for the torch backend; default: the input's device, else CPU.
        impl: the torch backend's implementation, one of ``torch_tvl1.IMPLS``: "auto" (Triton
            kernels on CUDA when triton is installed, else eager) or one named (see
            ``torch_tvl1.resolve_impl``).
            The OpenCV backends take only "auto".
        **params: ``TVL1Params`` fields; OpenCV's defaults when omitted.

    Returns:
        flow (B, 2, H, W) float32; channel 0 is u (x), channel 1 is v (y). numpy for the
        OpenCV backends; for torch, a tensor when the input was a tensor, else numpy.

    >>> import numpy as np
    >>> a = np.zeros((1, 16, 16), np.uint8)
    >>> tvl1(a, a, nscales=1, warps=1, outer_iterations=1, inner_iterations=1).shape
    (1, 2, 16, 16)
    """
    import torch

    check_params(params)
    is_tensor = isinstance(prev, torch.Tensor)
    if device is None and is_tensor and backend == "auto":
        device = prev.device
    name, dev = resolve_backend(backend, device)
    if impl != "auto" and name != "torch":
        raise FlowkitError(f"impl should be 'auto' with the {name} backend (it is the torch solver's), got {impl!r}")
    if name == "torch":
        from flowkit.flow.torch_tvl1 import tvl1_torch

        if is_tensor:
            t0, t1 = prev, nxt
            if device is not None:
                t0, t1 = t0.to(dev), t1.to(dev)
        else:
            t0 = torch.as_tensor(np.asarray(prev), device=dev)
            t1 = torch.as_tensor(np.asarray(nxt), device=dev)
        out = tvl1_torch(t0, t1, impl=impl, **params)
        return out if is_tensor else out.cpu().numpy()
    if is_tensor:
        prev = prev.detach().cpu().numpy()
        nxt = nxt.detach().cpu().numpy()
    if name == "opencv-cuda":
        from flowkit.flow.opencv_cuda import tvl1_opencv_cuda

        return tvl1_opencv_cuda(prev, nxt, **params)
    from flowkit.flow.opencv_tvl1 import tvl1_opencv

    return tvl1_opencv(prev, nxt, **params)
