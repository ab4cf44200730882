"""Per-sample, per-channel min-max normalisation of feature windows (SPEC section 5)."""

from __future__ import annotations

import torch

from spotnet.errors import SpotnetError

__all__ = ["minmax_normalize"]


def minmax_normalize(x: torch.Tensor) -> torch.Tensor:
    """Scale every channel of every sample to [0, 1] by its own min and max.

    A constant channel (max == min, e.g. an all-zero strain map) has no range to scale; it is
    mapped to 0 rather than NaN. Training and inference both call this before :class:`SOFTNet`.

    Args:
        x: (B, C, H, W) floating tensor; device and dtype are kept.

    Returns:
        (B, C, H, W) tensor with values in [0, 1].

    >>> minmax_normalize(torch.tensor([[[[1.0, 3.0]], [[2.0, 2.0]]]])).tolist()
    [[[[0.0, 1.0]], [[0.0, 0.0]]]]
    """
    if not isinstance(x, torch.Tensor):
        raise SpotnetError(f"features should be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise SpotnetError(f"features should have shape (B, C, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise SpotnetError(f"features should be a floating-point tensor, got {x.dtype}")
    lo = x.amin(dim=(2, 3), keepdim=True)
    span = x.amax(dim=(2, 3), keepdim=True) - lo
    # Dividing by 1 where span == 0 keeps constant channels at 0 instead of 0/0 = NaN.
    return (x - lo) / torch.where(span > 0, span, torch.ones_like(span))
