"""Batched PyTorch port of OpenCV's Dual TV-L1 optical flow (``cv::optflow::DualTVL1``).

The algorithm is Zach, Pock and Bischof's duality-based TV-L1 with Sanchez et al.'s
choices as implemented in OpenCV: a bilinear pyramid with ``scale_step``, a centred gradient
of the second image, bicubic backward warping with a zero border, the thresholding step on the
linearised data term, a primal-dual update of the flow, a 5x5 median filter of the flow before
every outer iteration, and a per-pair stop when the squared flow change falls below
``epsilon**2 * H * W``. All B pairs of a batch run together; a pair that has converged stops
changing, so each pair reproduces OpenCV's result for that pair alone.

The pieces that must match OpenCV bit for bit (up to float rounding) live apart:
``pyramid`` (cv2.resize INTER_LINEAR), ``remap`` (cv2.remap INTER_CUBIC), ``median``
(cv2.medianBlur).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from flowkit.errors import FlowkitError
from flowkit.flow.median import median_blur
from flowkit.flow.params import TVL1Params
from flowkit.flow.pyramid import pyramid_sizes, resize_linear
from flowkit.flow.remap import remap_cubic

_FLT_EPSILON = 1.1920929e-07


def centered_gradient(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Half central differences; at the border OpenCV uses half one-sided differences.

    With a replicated border, 0.5 * (I[x+1] - I[x-1]) gives exactly those one-sided values.
    """
    p = F.pad(img, (1, 1, 1, 1), mode="replicate")
    dx = 0.5 * (p[..., 1:-1, 2:] - p[..., 1:-1, :-2])
    dy = 0.5 * (p[..., 2:, 1:-1] - p[..., :-2, 1:-1])
    return dx, dy


def forward_gradient(u: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor) -> None:
    """Forward differences into ``gx``, ``gy``; zero in the last column / row."""
    torch.sub(u[..., :, 1:], u[..., :, :-1], out=gx[..., :, :-1])
    gx[..., :, -1] = 0
    torch.sub(u[..., 1:, :], u[..., :-1, :], out=gy[..., :-1, :])
    gy[..., -1, :] = 0


def divergence(p1: torch.Tensor, p2: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Backward-difference divergence; row 0 and column 0 take the value itself."""
    out.copy_(p1)
    out[..., :, 1:] -= p1[..., :, :-1]
    out += p2
    out[..., 1:, :] -= p2[..., :-1, :]
    return out


def _as_float_batch(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise FlowkitError(f"{name} should be a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise FlowkitError(f"{name} should be (B, H, W) or (H, W), got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.to(torch.float32)
    if not x.is_floating_point():
        raise FlowkitError(f"{name} should be uint8 or float (0-255), got {x.dtype}")
    return x.to(torch.float32)


class _Solver:
    """State and constants of one pyramid level for the whole batch."""

    def __init__(self, p: TVL1Params, early_stop: str):
        self.p = p
        self.l_t = p.lambda_ * p.theta
        self.taut = p.tau / p.theta
        self.use_gamma = p.gamma != 0
        self.early_stop = early_stop

    def warp(self, i0, i1, i1x, i1y, u):
        """Warp I1 and its gradient with the current flow; return the linearisation terms."""
        b, _, h, w = u.shape
        xs = torch.arange(w, device=u.device, dtype=u.dtype)
        ys = torch.arange(h, device=u.device, dtype=u.dtype)
        map_x = u[:, 0] + xs
        map_y = u[:, 1] + ys[:, None]
        warped = remap_cubic(torch.stack((i1, i1x, i1y), 1), map_x, map_y)
        i1w, i1wx, i1wy = warped.unbind(1)
        grad = i1wx * i1wx + i1wy * i1wy
        rho_c = i1w - i1wx * u[:, 0] - i1wy * u[:, 1] - i0
        return i1wx, i1wy, grad, rho_c

    def iterate(self, u, u3, ps, consts, n_iter_since_median, scaled_eps):
        """One inner iteration on the given (sub-)batch; returns the per-pair error (B,)."""
        i1wx, i1wy, grad, rho_c = consts
        l_t = self.l_t
        u1, u2 = u[:, 0], u[:, 1]
        rho = rho_c + (i1wx * u1 + i1wy * u2)
        if self.use_gamma:
            rho = rho + self.p.gamma * u3
        lg = l_t * grad
        # Thresholding step: the three cases of OpenCV's estimateV, as one factor per pixel.
        fi = torch.where(grad > _FLT_EPSILON, -rho / grad.clamp_min(_FLT_EPSILON), 0.0)
        fi = torch.where(rho < -lg, l_t, torch.where(rho > lg, -l_t, fi))
        v1 = u1 + fi * i1wx
        v2 = u2 + fi * i1wy
        p11, p12, p21, p22 = ps[:4]
        div = torch.empty_like(u)
        divergence(p11, p12, div[:, 0])
        divergence(p21, p22, div[:, 1])
        theta = self.p.theta
        new_u = torch.stack((v1, v2), 1).add_(div, alpha=theta)
        diff = new_u - u
        err = diff.mul_(diff).sum(dim=(1, 2, 3))
        if self.use_gamma:
            v3 = u3 + fi * self.p.gamma
            div3 = divergence(ps[4], ps[5], torch.empty_like(u3))
            new_u3 = v3 + theta * div3
            d3 = new_u3 - u3
            err = err + (d3 * d3).sum(dim=(1, 2))
            u3.copy_(new_u3)
        u.copy_(new_u)
        g = torch.empty((u.shape[0], 4) + u.shape[2:], device=u.device, dtype=u.dtype)
        forward_gradient(u, g[:, 0:2], g[:, 2:4])  # g = (u1x, u2x, u1y, u2y)
        self._dual(g[:, 0], g[:, 2], p11, p12)
        self._dual(g[:, 1], g[:, 3], p21, p22)
        if self.use_gamma:
            g3x, g3y = torch.empty_like(u3), torch.empty_like(u3)
            forward_gradient(u3, g3x, g3y)
            self._dual(g3x, g3y, ps[4], ps[5])
        return err

    def _dual(self, gx, gy, px, py):
        taut = self.taut
        ng = torch.hypot(gx, gy).mul_(taut).add_(1.0)
        px.add_(gx, alpha=taut).div_(ng)
        py.add_(gy, alpha=taut).div_(ng)


def _select(tensors, idx):
    return [t.index_select(0, idx) for t in tensors]


@torch.inference_mode()
def tvl1_torch(
    prev: torch.Tensor,
    nxt: torch.Tensor,
    *,
    tau: float = 0.25,
    lambda_: float = 0.15,
    theta: float = 0.3,
    nscales: int = 5,
    warps: int = 5,
    epsilon: float = 0.01,
    inner_iterations: int = 30,
    outer_iterations: int = 10,
    scale_step: float = 0.8,
    gamma: float = 0.0,
    median_filtering: int = 5,
    early_stop: str = "auto",
) -> torch.Tensor:
    """Dual TV-L1 flow from ``prev`` to ``nxt`` for a batch of pairs, as OpenCV computes it.

    Args:
        prev: frames (B, H, W) uint8 or float with values 0-255, or one frame (H, W); any
            device. The flow is computed on that device.
        nxt: frames of the same shape, dtype and device.
        tau, lambda_, theta, nscales, warps, epsilon, inner_iterations, outer_iterations,
            scale_step, gamma, median_filtering: OpenCV's DualTVL1 parameters (its defaults).
        early_stop: how pairs that meet the stopping rule are taken out of the batch.
            "compact": the error is read on the host after every inner iteration and
            converged pairs leave the working batch (no wasted work; one host sync per
            iteration, cheap on the CPU). "masked": every pair is computed and converged
            pairs keep their values through a mask; the host checks only once per outer
            iteration whether every pair is done (no sync inside the inner loop, for CUDA).
            "auto": "compact" on the CPU, "masked" elsewhere. Both give the same flow.

    Returns:
        flow (B, 2, H, W) float32 on the input's device; channel 0 is u (x), 1 is v (y).

    >>> a = torch.zeros(2, 32, 32, dtype=torch.uint8)
    >>> tvl1_torch(a, a, nscales=2, warps=1).shape
    torch.Size([2, 2, 32, 32])
    """
    p = TVL1Params(tau, lambda_, theta, nscales, warps, epsilon, inner_iterations,
                   outer_iterations, scale_step, gamma, median_filtering)
    i0 = _as_float_batch(prev, "prev")
    i1 = _as_float_batch(nxt, "nxt")
    if i0.shape != i1.shape:
        raise FlowkitError(
            f"prev and nxt should have the same shape, got {tuple(i0.shape)} and {tuple(i1.shape)}"
        )
    if i0.device != i1.device:
        raise FlowkitError(f"prev and nxt should be on one device, got {i0.device} and {i1.device}")
    b, h, w = i0.shape
    if h < 3 or w < 3:
        raise FlowkitError(f"frames should be at least 3x3, got {h}x{w}")
    if nscales < 1:
        raise FlowkitError(f"nscales should be >= 1, got {nscales}")
    if median_filtering > 1 and median_filtering not in (3, 5):
        raise FlowkitError(f"median_filtering should be 0, 1, 3 or 5, got {median_filtering}")
    if early_stop == "auto":
        early_stop = "compact" if i0.device.type == "cpu" else "masked"
    if early_stop not in ("compact", "masked"):
        raise FlowkitError(f"early_stop should be one of auto, compact, masked, got {early_stop!r}")

    sizes = pyramid_sizes(h, w, nscales, scale_step)
    i0s, i1s = [i0], [i1]
    for s in range(1, len(sizes)):
        both = resize_linear(torch.stack((i0s[-1], i1s[-1]), 1), sizes[s], (scale_step, scale_step))
        i0s.append(both[:, 0])
        i1s.append(both[:, 1])

    solver = _Solver(p, early_stop)
    hc, wc = sizes[-1]
    u = i0.new_zeros((b, 2, hc, wc))
    u3 = i0.new_zeros((b, hc, wc)) if solver.use_gamma else None
    for s in range(len(sizes) - 1, -1, -1):
        _one_scale(solver, i0s[s], i1s[s], u, u3)
        if s == 0:
            break
        u = resize_linear(u, sizes[s - 1]).mul_(1.0 / scale_step)
        if u3 is not None:
            u3 = resize_linear(u3, sizes[s - 1])
    return u


def _one_scale(solver: _Solver, i0, i1, u, u3) -> None:
    """Warps, outer and inner iterations at one pyramid level; updates ``u`` (and ``u3``)."""
    p = solver.p
    b, _, h, w = u.shape
    scaled_eps = p.epsilon * p.epsilon * h * w
    i1x, i1y = centered_gradient(i1)
    n_dual = 6 if solver.use_gamma else 4
    ps = [torch.zeros_like(i0) for _ in range(n_dual)]
    for _ in range(p.warps):
        consts = solver.warp(i0, i1, i1x, i1y, u)
        if solver.early_stop == "compact":
            _run_compact(solver, u, u3, ps, consts, scaled_eps)
        else:
            _run_masked(solver, u, u3, ps, consts, scaled_eps)


def _median(solver, u, u3):
    k = solver.p.median_filtering
    if k > 1:
        u.copy_(median_blur(u, k))
        # OpenCV filters u1 and u2 only; u3 is left as is.


def _run_compact(solver, u, u3, ps, consts, scaled_eps) -> None:
    p = solver.p
    b = u.shape[0]
    idx = torch.arange(b, device=u.device)
    full = (u, u3, ps)
    cu, cu3, cps, cconsts = u, u3, ps, consts
    compacted = False
    for _ in range(p.outer_iterations):
        _median(solver, cu, cu3)
        for _ in range(p.inner_iterations):
            err = solver.iterate(cu, cu3, cps, cconsts, 0, scaled_eps)
            done = err <= scaled_eps
            if bool(done.any()):
                keep = ~done
                # Write the whole working batch back, then continue with the rest.
                _scatter(full, idx, cu, cu3, cps, compacted)
                idx = idx[keep]
                if idx.numel() == 0:
                    return
                compacted = True
                cu, cu3, cps = _gather(full, idx)
                cconsts = _select(consts, idx)
    _scatter(full, idx, cu, cu3, cps, compacted)


def _gather(full, idx):
    u, u3, ps = full
    return (u.index_select(0, idx), None if u3 is None else u3.index_select(0, idx),
            _select(ps, idx))


def _scatter(full, idx, cu, cu3, cps, compacted):
    if not compacted:
        return  # the working tensors are the full tensors themselves
    u, u3, ps = full
    u.index_copy_(0, idx, cu)
    if u3 is not None:
        u3.index_copy_(0, idx, cu3)
    for t, c in zip(ps, cps):
        t.index_copy_(0, idx, c)


def _run_masked(solver, u, u3, ps, consts, scaled_eps) -> None:
    p = solver.p
    b = u.shape[0]
    active = torch.ones(b, dtype=torch.bool, device=u.device)
    for _ in range(p.outer_iterations):
        old_u = u.clone()
        _median(solver, u, u3)
        u.copy_(torch.where(active[:, None, None, None], u, old_u))
        for _ in range(p.inner_iterations):
            saved = [u.clone()] + ([u3.clone()] if u3 is not None else []) + [t.clone() for t in ps]
            err = solver.iterate(u, u3, ps, consts, 0, scaled_eps)
            cur = [u] + ([u3] if u3 is not None else []) + list(ps)
            for t, old in zip(cur, saved):
                m = active.view((b,) + (1,) * (t.ndim - 1))
                t.copy_(torch.where(m, t, old))
            active = active & (err > scaled_eps)
        # One host sync per outer iteration: stop when every pair has converged.
        if not bool(active.any()):
            return
