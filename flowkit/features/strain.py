"""SPEC section 3: optical strain magnitude from a flow field."""

from __future__ import annotations

import torch
from torch import nn

from flowkit.errors import FlowkitError

__all__ = ["optical_strain", "OpticalStrain"]


def optical_strain(flow: torch.Tensor) -> torch.Tensor:
    """Optical strain magnitude |e| of a flow field, on the flow's device and in its dtype.

    With forward differences u_x = u[y, x] - u[y, x+1], v_y = v[y, x] - v[y+1, x],
    u_y = u[y, x] - u[y+1, x], v_x = v[y, x] - v[y, x+1]:
    |e| = sqrt(u_x^2 + v_y^2 + 0.5 * (u_y + v_x)^2), computed for rows 0..H-2 and columns
    0..W-2; then column W-1 copies column W-2 and row H-1 copies row H-2 (strain values).

    Plain tensor slicing, on any device. kornia's ``spatial_gradient`` uses Sobel or central
    differences, not SPEC's one-sided ones; ``kornia.filters.filter2d`` with forward-difference
    kernels gives exactly these values but runs a grouped convolution, far slower than slicing
    (docs/benchmarks.md), so kornia is not used.

    Args:
        flow: (B, 2, H, W) floating tensor, channel 0 u (x), channel 1 v (y), H, W >= 2.

    Returns:
        (B, H, W) strain magnitude.

    >>> x = torch.arange(4.0).repeat(4, 1)  # u = x, so u_x = -1 everywhere
    >>> flow = torch.stack([x, torch.zeros_like(x)])[None]
    >>> optical_strain(flow)[0, 0]
    tensor([1., 1., 1., 1.])
    """
    if not isinstance(flow, torch.Tensor):
        raise FlowkitError(f"flow should be a torch.Tensor, got {type(flow).__name__}")
    if flow.ndim != 4 or flow.shape[1] != 2 or flow.shape[2] < 2 or flow.shape[3] < 2:
        raise FlowkitError(f"flow should have shape (B, 2, H, W) with H, W >= 2, got {tuple(flow.shape)}")
    if not flow.is_floating_point():
        raise FlowkitError(f"flow should have a floating dtype, got {flow.dtype}")
    u, v = flow[:, 0], flow[:, 1]
    here_u, here_v = u[:, :-1, :-1], v[:, :-1, :-1]
    u_x = here_u - u[:, :-1, 1:]
    u_y = here_u - u[:, 1:, :-1]
    v_x = here_v - v[:, :-1, 1:]
    v_y = here_v - v[:, 1:, :-1]
    e = torch.sqrt(u_x * u_x + v_y * v_y + 0.5 * (u_y + v_x) ** 2)
    e = torch.cat([e, e[:, :, -1:]], dim=2)
    return torch.cat([e, e[:, -1:, :]], dim=1)


class OpticalStrain(nn.Module):
    """Module twin of :func:`optical_strain`: (B, 2, H, W) -> (B, H, W)."""

    def forward(self, flow: torch.Tensor) -> torch.Tensor:
        return optical_strain(flow)
