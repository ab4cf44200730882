"""Triton kernels for the TV-L1 solver's hot loop: the fused inner iteration and the median.

The eager inner iteration is ~33 kernels and ~536 bytes per pixel (every elementwise step
writes a full tensor). Here it is two launches:

- ``_inner_kernel`` does the thresholding step, the primal update, the divergence and the dual
  update at once. The dual update needs the *new* flow of the right and lower neighbours, so each
  program recomputes those from the old state (three times the arithmetic, none of the traffic)
  and writes the new state into a second set of buffers (ping-pong), which keeps the reads race
  free. It also writes a partial sum of the squared flow change per block.
- ``_stop_kernel`` adds each pair's partial sums in a fixed order (deterministic, unlike atomics)
  and clears the pair's ``active`` flag when the change is <= epsilon**2 * H * W, on the device.

The median is one launch of the selection network of ``flowkit.flow.median`` (the columns sorted
inside the kernel, then ``median_network``), generated as straight-line Triton code.

Everything is float32 and keeps the eager path's order of operations; only FMA contraction and
``sqrt(x*x + y*y)`` in place of ``hypot`` round differently. With ``TRITON_INTERPRET=1`` set
before this module is imported, the kernels run on CPU tensors (tests).
"""

from __future__ import annotations

import linecache
from contextlib import contextmanager

import torch
import triton
import triton.language as tl

from flowkit.flow.median import median_network, sorting_network

__all__ = ["FusedInner", "count_launches", "interpreted", "median_blur_triton"]

_BLOCK = 512
_MEDIAN_BLOCK = 256
_launch_log: list | None = None


@contextmanager
def count_launches():
    """Record the kernels launched inside the block: yields a list of (name, bytes read,
    bytes written), the bytes being those of the tensors each kernel reads and writes."""
    global _launch_log
    previous, _launch_log = _launch_log, []
    try:
        yield _launch_log
    finally:
        _launch_log = previous


def _launch(name: str, kernel, grid, args, meta: dict, *, bytes_rw: tuple[int, int]) -> None:
    """Launch ``kernel[grid](*args, **meta)`` and record it for ``count_launches``."""
    kernel[grid](*args, **meta)
    if _launch_log is not None:
        _launch_log.append((name, *bytes_rw))


@triton.jit
def _fi(u_ptr, iw_ptr, ng_ptr, rc_ptr, bc, b1, q, m, hw, l_t, C: tl.constexpr):  # noqa: PLR0913, PLR0917 - a Triton helper takes pointers and offsets as arguments
    """Clamped step of the thresholding: clamp((rho_c + sum iw*u) / -|grad|^2, +-l_t)."""
    rho = tl.load(rc_ptr + b1 + q, mask=m, other=0.0)
    for c in tl.static_range(C):
        iw = tl.load(iw_ptr + bc + c * hw + q, mask=m, other=0.0)
        rho += iw * tl.load(u_ptr + bc + c * hw + q, mask=m, other=0.0)
    ng = tl.load(ng_ptr + b1 + q, mask=m, other=-1.0)
    return tl.minimum(tl.maximum(rho / ng, -l_t), l_t)


@triton.jit
def _new_u(u_ptr, px_ptr, py_ptr, iw_ptr, off, x, y, m, w, fi, theta):  # noqa: PLR0913, PLR0917 - a Triton helper takes pointers and offsets as arguments
    """(new u, old u) of one channel at offsets ``off``: v + theta * div p, v = u + fi * iw."""
    u = tl.load(u_ptr + off, mask=m, other=0.0)
    v = u + fi * tl.load(iw_ptr + off, mask=m, other=0.0)
    d = tl.load(px_ptr + off, mask=m, other=0.0)
    d = d - tl.load(px_ptr + off - 1, mask=m & (x > 0), other=0.0)
    d = d + tl.load(py_ptr + off, mask=m, other=0.0)
    d = d - tl.load(py_ptr + off - w, mask=m & (y > 0), other=0.0)
    return d * theta + v, u


@triton.jit
def _inner_kernel(u_ptr, px_ptr, py_ptr, iw_ptr, ng_ptr, rc_ptr, active_ptr,  # noqa: PLR0913, PLR0917 - a Triton kernel takes every buffer as an argument
                  u_out, px_out, py_out, part_ptr, h, w, l_t, theta, taut,
                  C: tl.constexpr, BLOCK: tl.constexpr):
    blk = tl.program_id(0)
    b = tl.program_id(1)
    nblk = tl.num_programs(0)
    hw = h * w
    q = blk * BLOCK + tl.arange(0, BLOCK)
    m = q < hw
    y = q // w
    x = q - y * w
    mr = m & (x + 1 < w)
    md = m & (y + 1 < h)
    bc = b.to(tl.int64) * C * hw
    b1 = b.to(tl.int64) * hw
    on = tl.load(active_ptr + b) != 0
    fi0 = _fi(u_ptr, iw_ptr, ng_ptr, rc_ptr, bc, b1, q, m, hw, l_t, C)
    fir = _fi(u_ptr, iw_ptr, ng_ptr, rc_ptr, bc, b1, q + 1, mr, hw, l_t, C)
    fid = _fi(u_ptr, iw_ptr, ng_ptr, rc_ptr, bc, b1, q + w, md, hw, l_t, C)
    err = tl.zeros((BLOCK,), dtype=tl.float32)
    for c in tl.static_range(C):
        off = bc + c * hw + q
        nu, uc = _new_u(u_ptr, px_ptr, py_ptr, iw_ptr, off, x, y, m, w, fi0, theta)
        nr, _r = _new_u(u_ptr, px_ptr, py_ptr, iw_ptr, off + 1, x + 1, y, mr, w, fir, theta)
        nd, _d = _new_u(u_ptr, px_ptr, py_ptr, iw_ptr, off + w, x, y + 1, md, w, fid, theta)
        diff = nu - uc
        err += tl.where(m, diff * diff, 0.0)
        gx = tl.where(mr, nr - nu, 0.0)
        gy = tl.where(md, nd - nu, 0.0)
        den = tl.sqrt(gx * gx + gy * gy) * taut + 1.0
        pxc = tl.load(px_ptr + off, mask=m, other=0.0)
        pyc = tl.load(py_ptr + off, mask=m, other=0.0)
        tl.store(u_out + off, tl.where(on, nu, uc), mask=m)
        tl.store(px_out + off, tl.where(on, (pxc + gx * taut) / den, pxc), mask=m)
        tl.store(py_out + off, tl.where(on, (pyc + gy * taut) / den, pyc), mask=m)
    tl.store(part_ptr + b * nblk + blk, tl.sum(err, axis=0))


@triton.jit
def _stop_kernel(part_ptr, active_ptr, err_ptr, nblk, eps, NB: tl.constexpr):  # noqa: PLR0913, PLR0917 - a Triton kernel takes every buffer as an argument
    b = tl.program_id(0)
    i = tl.arange(0, NB)
    e = tl.sum(tl.load(part_ptr + b * nblk + i, mask=i < nblk, other=0.0), axis=0)
    tl.store(err_ptr + b, e)
    on = tl.load(active_ptr + b) != 0
    tl.store(active_ptr + b, (on & (e > eps)).to(tl.uint8))


def interpreted() -> bool:
    """True when the kernels were built for Triton's CPU interpreter (TRITON_INTERPRET=1)."""
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(_inner_kernel, InterpretedFunction)


def _block(n: int, gpu_block: int) -> int:
    # The interpreter runs programs one after another with numpy: few large blocks are faster.
    return min(triton.next_power_of_2(n), 1 << 16) if interpreted() else gpu_block


class FusedInner:
    """The inner iterations of one outer iteration, fused (the "triton" implementation).

    Args:
        l_t: lambda * theta; theta; taut: tau / theta (as in the eager solver).
    """

    def __init__(self, *, l_t: float, theta: float, taut: float):
        self.l_t, self.theta, self.taut = l_t, theta, taut

    def run(self, state, consts, scaled_eps: float, iterations: int) -> torch.Tensor:
        """``iterations`` inner iterations on ``state`` = (u, px, py), each (n, C, H, W) float32
        contiguous, updated in place; ``consts`` = (iw (n, C, H, W), neg_grad (n, 1, H, W),
        rho_c (n, 1, H, W)) from the warp. Returns the (n, 1, 1, 1) bool mask of the pairs still
        going, as the eager "masked" mode does; nothing is read on the host."""
        u, px, py = state
        n, c, h, w = u.shape
        iw, neg_grad, rho_c = (t.contiguous() for t in consts)
        block = _block(h * w, _BLOCK)
        nblk = triton.cdiv(h * w, block)
        active = torch.ones(n, dtype=torch.uint8, device=u.device)
        part = torch.empty((n, nblk), dtype=torch.float32, device=u.device)
        err = torch.empty(n, dtype=torch.float32, device=u.device)
        src, dst = (u, px, py), tuple(torch.empty_like(t) for t in (u, px, py))
        px_bytes = 4 * n * h * w
        for _ in range(iterations):
            args = (*src, iw, neg_grad, rho_c, active, *dst, part, h, w, self.l_t, self.theta, self.taut)
            _launch("inner", _inner_kernel, (nblk, n), args, {"C": c, "BLOCK": block},
                    bytes_rw=(px_bytes * (4 * c + 2), px_bytes * 3 * c))
            _launch("stop", _stop_kernel, (n,), (part, active, err, nblk, scaled_eps),
                    {"NB": triton.next_power_of_2(nblk)}, bytes_rw=(4 * n * nblk + n, 5 * n))
            src, dst = dst, src
        if src[0] is not u:  # an odd count: the last results sit in the second buffers
            for t, s in zip((u, px, py), src):
                t.copy_(s)
        return active.view(n, 1, 1, 1).bool()


def _median_source(ksize: int) -> str:
    """Source of a Triton kernel: the ksize x ksize median of one (H, W) plane per program row,
    replicated border, columns sorted first and then ``median_network(ksize)``."""
    r = ksize // 2
    lines = [
        f"def _median{ksize}_kernel(src, dst, h, w, stride_b, nch, BLOCK: tl.constexpr):",
        "    blk = tl.program_id(0)",
        "    plane = tl.program_id(1)",
        "    q = blk * BLOCK + tl.arange(0, BLOCK)",
        "    m = q < h * w",
        "    y = q // w",
        "    x = q - y * w",
        "    base = src + (plane // nch).to(tl.int64) * stride_b + (plane % nch) * h * w",
    ]
    for d in range(-r, r + 1):
        lines.append(f"    y{d + r} = tl.minimum(tl.maximum(y + ({d}), 0), h - 1) * w")
        lines.append(f"    x{d + r} = tl.minimum(tl.maximum(x + ({d}), 0), w - 1)")
    for c in range(ksize):
        for rr in range(ksize):
            lines.append(f"    w{c * ksize + rr} = tl.load(base + y{rr} + x{c}, mask=m, other=0.0)")
    ops = [(c * ksize + i, c * ksize + j, True, True) for c in range(ksize) for i, j in sorting_network(ksize)]
    for i, j, keep_min, keep_max in ops + list(median_network(ksize)):
        if keep_min and keep_max:
            lines += [f"    t = tl.minimum(w{i}, w{j})", f"    w{j} = tl.maximum(w{i}, w{j})", f"    w{i} = t"]
        elif keep_min:
            lines.append(f"    w{i} = tl.minimum(w{i}, w{j})")
        else:
            lines.append(f"    w{j} = tl.maximum(w{i}, w{j})")
    lines.append(f"    tl.store(dst + plane.to(tl.int64) * h * w + q, w{ksize * ksize // 2}, mask=m)")
    return "\n".join(lines) + "\n"


def _build_median_kernel(ksize: int):
    # Triton reads a kernel's source with inspect, so the generated text is registered in
    # linecache under a file name of its own before it is executed.
    source = _median_source(ksize)
    filename = f"<flowkit-median{ksize}-triton>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {"tl": tl}
    exec(compile(source, filename, "exec"), namespace)
    return triton.jit(namespace[f"_median{ksize}_kernel"])


_MEDIAN_KERNELS = {k: _build_median_kernel(k) for k in (3, 5)}


def median_blur_triton(x: torch.Tensor, ksize: int) -> torch.Tensor:
    """``median_blur`` in one launch: images (B, C, H, W) float32 whose (H, W) planes are
    contiguous (a channel slice of a contiguous tensor will do) -> (B, C, H, W) contiguous."""
    b, c, h, w = x.shape
    if x.stride(-1) != 1 or x.stride(-2) != w or x.stride(1) != h * w:
        x = x.contiguous()
    out = torch.empty((b, c, h, w), dtype=x.dtype, device=x.device)
    block = _block(h * w, _MEDIAN_BLOCK)
    grid = (triton.cdiv(h * w, block), b * c)
    _launch(f"median{ksize}", _MEDIAN_KERNELS[ksize], grid, (x, out, h, w, x.stride(0), c), {"BLOCK": block},
            bytes_rw=(4 * b * c * h * w, 4 * b * c * h * w))
    return out
