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

Implementations of the inner iteration share this driver: "eager" (plain torch operations,
any device), "triton" (``triton_tvl1``: an inner iteration fused into two kernel launches and the
median into one; CUDA, or the CPU under ``TRITON_INTERPRET=1``), "triton-tiles" (three inner
iterations per launch on tiles of whole rows: less than half the memory traffic per iteration, but
its shifts go through shared memory between barriers) and "triton-strips" (five inner iterations per
launch, a one-warp program walking down a column strip, its shifts warp shuffles; what "auto" takes
on CUDA). The Triton implementations also run the warp step as one kernel. Their measured speeds
and accuracy: docs/gpu.md.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from flowkit.errors import FlowkitError
from flowkit.flow.median import median_blur
from flowkit.flow.params import TVL1Params
from flowkit.flow.pyramid import pyramid_sizes, resize_linear
from flowkit.flow.remap import remap_cubic

__all__ = ["IMPLS", "centered_gradient", "divergence", "forward_gradient", "resolve_impl", "tvl1_torch"]

IMPLS = ("auto", "eager", "triton", "triton-tiles", "triton-strips")
#: The fused inner kernel's launch shape per Triton implementation (``triton_tvl1.FusedInner``),
#: each the fastest of the shapes measured for it (docs/gpu.md, tools/gpu/): "triton" one
#: iteration per launch on blocks of 256 pixels, the same flow as larger blocks. "triton-tiles"
#: three iterations per launch on tiles of 16 rows and 16 warps, the shape the instruction and byte
#: models rate highest; on a GPU its tl.gather shifts cost more than the bytes they save, so it is
#: an option only. "triton-strips" five iterations per launch on strips 32 columns wide, one warp
#: each: its shifts are warp shuffles, with no barrier and no shared memory, so it is what "auto"
#: takes. Its flow differs from "triton"'s by rounding only, as eager's does.
TRITON_LAUNCH = {"triton": {"block": 256}, "triton-tiles": {"steps": 3, "rows": 16, "num_warps": 16},
                 "triton-strips": {"steps": 5, "strip": 32, "num_warps": 1}}

_FLT_EPSILON = 1.1920929e-07


def centered_gradient(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Half central differences (dx, dy) of images (B, H, W), each (B, H, W).

    At the border OpenCV uses half one-sided differences; with a replicated border,
    0.5 * (I[x+1] - I[x-1]) gives exactly those one-sided values.
    """
    p = F.pad(img, (1, 1, 1, 1), mode="replicate")
    dx = 0.5 * (p[..., 1:-1, 2:] - p[..., 1:-1, :-2])
    dy = 0.5 * (p[..., 2:, 1:-1] - p[..., :-2, 1:-1])
    return dx, dy


def forward_gradient(u: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor) -> None:
    """Forward differences of ``u`` (..., H, W) into ``gx``, ``gy`` (same shape); zero in the
    last column / row."""
    torch.sub(u[..., :, 1:], u[..., :, :-1], out=gx[..., :, :-1])
    gx[..., :, -1] = 0
    torch.sub(u[..., 1:, :], u[..., :-1, :], out=gy[..., :-1, :])
    gy[..., -1, :] = 0


def divergence(p1: torch.Tensor, p2: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Backward-difference divergence of (``p1``, ``p2``), each (..., H, W), into ``out`` (same
    shape); row 0 and column 0 take the value itself."""
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


def _triton_module():
    """``flowkit.flow.triton_tvl1``, or None when triton is not installed or cannot load."""
    try:
        from flowkit.flow import triton_tvl1
    except (ImportError, RuntimeError):
        return None
    return triton_tvl1


def resolve_impl(impl: str, device) -> str:
    """The inner-iteration implementation that runs: "eager", "triton", "triton-tiles" or "triton-strips".

    "auto" is "triton-strips", the fastest on the GPUs measured (``TRITON_LAUNCH``, docs/gpu.md),
    on a CUDA device when the ``triton``
    package (the ``gpu`` extra) loads, else "eager". The Triton implementations on the CPU need
    ``TRITON_INTERPRET=1`` set before the kernels were first imported (Triton's interpreter, for
    tests).

    >>> resolve_impl("auto", torch.device("cpu"))
    'eager'
    """
    if impl not in IMPLS:
        raise FlowkitError(f"impl should be one of {', '.join(IMPLS)}, got {impl!r}")
    device = torch.device(device)
    if impl == "eager" or (impl == "auto" and device.type != "cuda"):
        return "eager"
    module = _triton_module()
    if impl == "auto":
        return "eager" if module is None else "triton-strips"
    if module is None:
        raise FlowkitError(
            f"impl {impl!r} should have the triton package installed (pip install 'softnet-spotting[gpu]'), "
            "got none that loads"
        )
    if device.type != "cuda" and not module.interpreted():
        raise FlowkitError(
            f"impl {impl!r} should run on a CUDA device (or on the CPU with TRITON_INTERPRET=1 set before "
            f"the first import), got {device}"
        )
    return impl


class _Solver:
    """Per-level state of the whole batch, with the flow channels stacked.

    The flow is ``u`` (B, C, H, W) with C = 2 (u1, u2), or C = 3 when gamma != 0 (u3, the
    illumination term). The dual variables are stacked the same way: ``px`` holds the x
    components (p11, p21[, p31]) and ``py`` the y components. The data-term coefficients
    ``iw`` are (I1wx, I1wy[, gamma]), so one expression covers u1, u2 and u3 as OpenCV writes
    them separately.
    """

    def __init__(self, p: TVL1Params, early_stop: str, compile: bool = False, impl: str = "eager",
                 launch: dict | None = None):
        self.p = p
        self.l_t = p.lambda_ * p.theta
        self.taut = p.tau / p.theta
        self.use_gamma = p.gamma != 0
        self.early_stop = early_stop
        self.median_fn = median_blur
        self.warp_fn = None
        self.fused = None
        if impl in TRITON_LAUNCH:
            from flowkit.flow.triton_tvl1 import FusedInner, median_blur_triton, warp_triton

            self.median_fn = median_blur_triton
            self.warp_fn = warp_triton
            shape = TRITON_LAUNCH[impl] if launch is None else launch
            self.fused = FusedInner(l_t=self.l_t, theta=p.theta, taut=self.taut, **shape)
        if compile:
            self.iterate = torch.compile(self.iterate, dynamic=True)

    def warp(self, i0, i1, i1x, i1y, u):
        """Warp I1 and its gradient with the current flow; return the per-warp constants.

        Returns (iw (B, C, H, W), neg_grad (B, 1, H, W), rho_c (B, 1, H, W)), where
        ``neg_grad`` is -|grad I1w|^2, or -1e-30 where that is <= FLT_EPSILON: there OpenCV
        takes the full step +-lambda*theta unless rho == 0, which a huge -rho/grad clamped
        to +-lambda*theta reproduces.
        """
        if self.warp_fn is not None:
            return self.warp_fn(i0, i1, i1x, i1y, u, gamma=self.p.gamma)
        b, _, h, w = u.shape
        xs = torch.arange(w, device=u.device, dtype=u.dtype)
        ys = torch.arange(h, device=u.device, dtype=u.dtype)
        map_x = u[:, 0] + xs
        map_y = u[:, 1] + ys[:, None]
        warped = remap_cubic(torch.stack((i1, i1x, i1y), 1), map_x, map_y)
        i1w, i1wx, i1wy = warped[:, 0:1], warped[:, 1:2], warped[:, 2:3]
        grad = i1wx * i1wx + i1wy * i1wy
        rho_c = i1w - i1wx * u[:, 0:1] - i1wy * u[:, 1:2] - i0[:, None]
        neg_grad = torch.where(grad > _FLT_EPSILON, -grad, -1e-30)
        parts = [i1wx, i1wy]
        if self.use_gamma:
            parts.append(torch.full_like(i1wx, self.p.gamma))
        return torch.cat(parts, 1), neg_grad, rho_c

    def iterate(self, u, px, py, consts, active=None):
        """One inner iteration, in place on ``u``, ``px``, ``py``; returns the error (B,).

        ``active`` (B, 1, 1, 1) bool, when given, freezes the pairs where it is False.
        """
        iw, neg_grad, rho_c = consts
        l_t = self.l_t
        # Thresholding step (OpenCV's estimateV): v = u + clamp(-rho / grad, +-l_t) * grad I1w.
        rho = rho_c.clone()
        for c in range(u.shape[1]):
            rho.addcmul_(iw[:, c : c + 1], u[:, c : c + 1])
        fi = rho.div_(neg_grad).clamp_(-l_t, l_t)
        v = torch.addcmul(u, fi, iw)
        # u = v + theta * div(p), and the squared change for the stopping rule.
        new_u = divergence(px, py, torch.empty_like(u)).mul_(self.p.theta).add_(v)
        diff = new_u.sub(u)
        err = diff.mul_(diff).sum(dim=(1, 2, 3))
        if active is None:
            u.copy_(new_u)
        else:
            torch.where(active, new_u, u, out=u)
        # Dual step: p = (p + taut * grad u) / (1 + taut * |grad u|), per flow channel.
        gx, gy = torch.empty_like(u), torch.empty_like(u)
        forward_gradient(u, gx, gy)
        taut = self.taut
        ng = torch.hypot(gx, gy).mul_(taut).add_(1.0)
        if active is None:
            px.add_(gx, alpha=taut).div_(ng)
            py.add_(gy, alpha=taut).div_(ng)
        else:
            torch.where(active, px.add(gx, alpha=taut).div_(ng), px, out=px)
            torch.where(active, py.add(gy, alpha=taut).div_(ng), py, out=py)
        return err


def _select(tensors, idx):
    return [t.index_select(0, idx) for t in tensors]


@torch.no_grad()  # not inference_mode: callers may use the flow in autograd code later
def tvl1_torch(  # noqa: PLR0913 - SPEC 2's 11 TV-L1 knobs, keyword-only and named as there (scikit-image style)
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
    compile: bool = False,
    impl: str = "auto",
    launch: dict | None = None,
) -> torch.Tensor:
    """Dual TV-L1 flow from ``prev`` to ``nxt`` for a batch of pairs, as OpenCV computes it.

    Args:
        prev: frames (B, H, W) uint8 or float with values 0-255, or one frame (H, W); any
            device. The flow is computed on that device.
        nxt: frames of the same shape, dtype and device.
        tau, lambda_, theta, nscales, warps, epsilon, inner_iterations, outer_iterations,
            scale_step, gamma, median_filtering: OpenCV's DualTVL1 parameters (its defaults).
        early_stop: how pairs that meet the stopping rule leave the batch.
            "compact": the errors are read on the host after every inner iteration and
            stopped pairs leave at once (no wasted work; a host sync per iteration, free on
            the CPU). "masked": within an outer iteration stopped pairs are frozen on the
            device (eager computes them for nothing, the Triton kernels skip them); the host
            reads the mask once per outer iteration (30 inner iterations) and drops them then,
            so the CUDA queue is not drained every iteration. "auto": "compact" on the CPU, "masked" elsewhere.
            Both give the same flow. With the Triton impls only "masked" (and "auto") exist.
        compile: run the eager inner iteration through ``torch.compile`` (fuses its ~25
            elementwise kernels; the first call pays the compilation). Off by default.
        impl: one of ``IMPLS`` (see ``resolve_impl``): how the inner iterations and the median
            run. "auto" is "triton-strips" on CUDA when triton is installed.
        launch: the fused inner kernel's launch shape, ``triton_tvl1.FusedInner``'s keywords
            (e.g. ``{"block": 512}``) for a Triton impl; None takes ``TRITON_LAUNCH[impl]``. For
            comparing shapes (tools/gpu/gpu_launch_shapes.py); every shape gives the same flow up to
            rounding.

    A batch that does not fit in GPU memory (``torch.cuda.OutOfMemoryError``) is solved in
    halves, recursively, down to single pairs; each pair's flow does not depend on its batch.

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
    impl = resolve_impl(impl, i0.device)
    if early_stop == "auto":
        early_stop = "compact" if i0.device.type == "cpu" and impl == "eager" else "masked"
    if early_stop not in ("compact", "masked"):
        raise FlowkitError(f"early_stop should be one of auto, compact, masked, got {early_stop!r}")
    if impl in TRITON_LAUNCH and early_stop != "masked":
        raise FlowkitError(f"early_stop should be 'auto' or 'masked' with impl {impl!r}, got {early_stop!r}")
    if impl in TRITON_LAUNCH and compile:
        raise FlowkitError(f"compile should be False with impl {impl!r} (its kernels are fused already), got True")
    if launch is not None and impl not in TRITON_LAUNCH:
        raise FlowkitError(f"launch should be None with impl {impl!r} (it shapes the Triton kernels), got {launch}")
    return _solve_halving(i0, i1, _Solver(p, early_stop, compile, impl, launch))


def _solve_halving(i0: torch.Tensor, i1: torch.Tensor, solver: _Solver) -> torch.Tensor:
    """``_solve``, retried on two halves of the batch when the device runs out of memory."""
    try:
        return _solve(i0, i1, solver)
    except torch.cuda.OutOfMemoryError:
        if i0.shape[0] == 1:
            raise
    # Outside the except block: the exception's frames (and their tensors) are released.
    if i0.is_cuda:
        torch.cuda.empty_cache()
    half = (i0.shape[0] + 1) // 2
    warnings.warn(f"a batch of {i0.shape[0]} pairs did not fit in device memory; solving it in halves "
                  f"of {half}", RuntimeWarning, stacklevel=3)
    first = _solve_halving(i0[:half], i1[:half], solver)
    return torch.cat((first, _solve_halving(i0[half:], i1[half:], solver)))


def _solve(i0: torch.Tensor, i1: torch.Tensor, solver: _Solver) -> torch.Tensor:
    """The coarse-to-fine driver over a validated batch (B, H, W) float32: flow (B, 2, H, W)."""
    b, h, w = i0.shape
    p = solver.p
    scale_step = p.scale_step
    sizes = pyramid_sizes(h, w, p.nscales, scale_step)
    i0s, i1s = [i0], [i1]
    for s in range(1, len(sizes)):
        both = resize_linear(torch.stack((i0s[-1], i1s[-1]), 1), sizes[s], (scale_step, scale_step))
        i0s.append(both[:, 0])
        i1s.append(both[:, 1])

    hc, wc = sizes[-1]
    u = i0.new_zeros((b, 3 if solver.use_gamma else 2, hc, wc))
    for s in range(len(sizes) - 1, -1, -1):
        _one_scale(solver, i0s[s], i1s[s], u)
        if s == 0:
            break
        u = resize_linear(u, sizes[s - 1])
        u[:, :2] *= 1.0 / scale_step  # u3 is not a displacement and keeps its scale
    return u[:, :2].contiguous()


def _one_scale(solver: _Solver, i0, i1, u) -> None:
    """Warps, outer and inner iterations at one pyramid level; updates ``u`` in place."""
    p = solver.p
    h, w = u.shape[-2:]
    scaled_eps = p.epsilon * p.epsilon * h * w
    i1x, i1y = centered_gradient(i1)
    px = torch.zeros_like(u)
    py = torch.zeros_like(u)
    for _ in range(p.warps):
        consts = solver.warp(i0, i1, i1x, i1y, u)
        _run_warp(solver, (u, px, py), consts, scaled_eps)


def _median(solver, u) -> None:
    k = solver.p.median_filtering
    if k > 1:
        # OpenCV filters u1 and u2 only, never u3.
        u[:, :2] = solver.median_fn(u[:, :2], k)


class _Working:
    """The pairs of a batch still iterating in one warp.

    ``full`` is (u, px, py), each (B, C, H, W). Until a pair stops, the working tensors are the
    full ones; after that they are copies of the rows ``idx`` still going, written back into
    ``full`` before every narrowing and at the end of the warp.
    """

    def __init__(self, full, consts):
        self.full = full
        self.all_consts = consts
        self.idx = None  # None: the working tensors are the full ones; else host indices
        self.idx_dev = None  # the same indices on the device
        self.state = full
        self.consts = consts

    @property
    def empty(self) -> bool:
        return self.idx is not None and self.idx.numel() == 0

    def drop(self, keep: torch.Tensor) -> bool:
        """Keep the working pairs where ``keep`` (n,) bool is True; True when none is left.

        The indices live on the host, so narrowing costs no device sync beyond reading ``keep``.
        """
        u = self.full[0]
        if self.idx is None:
            self.idx = torch.arange(u.shape[0])
        else:
            self.write_back()
        self.idx = self.idx[keep.cpu()]
        self.idx_dev = self.idx.to(u.device)
        self.state = _select(self.full, self.idx_dev)
        self.consts = _select(self.all_consts, self.idx_dev)
        return self.idx.numel() == 0

    def write_back(self) -> None:
        if self.idx is not None:
            for t, c in zip(self.full, self.state):
                t.index_copy_(0, self.idx_dev, c)


def _run_warp(solver, state, consts, scaled_eps) -> None:
    """Outer and inner iterations of one warp, with OpenCV's stopping rule for each pair.

    ``state`` is (u, px, py), updated in place. A pair stops when its squared flow change is
    <= ``scaled_eps``; it then keeps its flow for the rest of the warp, as if solved alone.
    Stopped pairs leave the working batch:
    - "compact": the errors are read on the host after every inner iteration and stopped
      pairs leave at once (no wasted work; the read is free on the CPU).
    - "masked": inside an outer iteration stopped pairs are frozen by a mask on the device
      (their work is wasted, but nothing waits for the host); the host reads the mask once
      per outer iteration, its only sync there, and drops them then.
    """
    work = _Working(state, consts)
    for _ in range(solver.p.outer_iterations):
        _median(solver, work.state[0])
        active = _inner_iterations(solver, work, scaled_eps)
        if work.empty:
            return
        if active is not None:
            keep = active.view(-1).cpu()
            if not bool(keep.all()) and work.drop(keep):
                return
    work.write_back()


def _inner_iterations(solver, work: _Working, scaled_eps):
    """The inner iterations of one outer iteration. Returns the (n, 1, 1, 1) mask of the pairs
    still going ("masked"), or None ("compact", where stopped pairs have already left)."""
    if solver.fused is not None:
        return solver.fused.run(work.state, work.consts, scaled_eps, solver.p.inner_iterations)
    per_iteration = solver.early_stop == "compact"
    active = None
    for _ in range(solver.p.inner_iterations):
        u, px, py = work.state
        err = solver.iterate(u, px, py, work.consts, active)
        going = (err > scaled_eps).view(-1, 1, 1, 1)
        if not per_iteration:
            active = going if active is None else active & going
        elif not bool(going.all()):
            if work.drop(going.view(-1)):
                return None
    return active
