"""Triton kernels for the TV-L1 solver's hot loop: the fused inner iteration, the warp step and the median.

The eager inner iteration is dozens of kernels, every elementwise step reading and writing full
tensors (tools/kernels/cost_model.py counts them). Here ``steps`` iterations (1 or more) are two launches:

- the inner kernel (its source written by ``triton_stencil``) does the thresholding step, the
  primal update, the divergence and the dual update, ``steps`` times, and writes the new state
  into a second set of buffers (ping-pong), which keeps the reads race free. Each step at a pixel
  needs the step before at its neighbours: a program on a block of pixels recomputes those from
  the state in memory (more arithmetic, no more traffic); a program on a tile of whole rows
  shifts its tensors with ``tl.gather`` and reads ``steps`` rows more at either end (rows wider
  than 128 are cut into column tiles, which read ``steps`` columns more at either side); a
  one-warp program on a column strip walks down its rows with every step in flight and reads
  ``steps`` columns more at either side. It also
  writes each step's partial sum of the squared flow change per program. The programs of a
  stopped pair return at once.
- ``_stop_kernel`` adds each pair's partial sums in a fixed order (deterministic, unlike atomics)
  and clears the pair's ``active`` flag when a step's change is <= epsilon**2 * H * W, on the
  device, noting which buffers hold the pair and whether a stop inside a multi-step launch leaves
  steps to apply again. ``_settle_kernel`` copies the pairs that ended in the second buffers back.

The median is one launch of the selection network of ``flowkit.flow.median`` (the columns sorted
inside the kernel, then ``median_network``), generated as straight-line Triton code.

Everything is float32 and keeps the eager path's order of operations. What rounds differently:
``sqrt(x*x + y*y)`` in place of ``hypot``, the error sums' order and, compiled for CUDA, FMA
contraction, and Triton's ``/`` and ``tl.sqrt``, which become PTX's ``div.full.f32`` (within 2
ulp) and ``sqrt.approx.ftz.f32``. With ``TRITON_INTERPRET=1`` set before this module is imported,
the kernels run on CPU tensors in numpy (tests), where none of the compiled differences exist.
"""

from __future__ import annotations

import linecache
from contextlib import contextmanager

import torch
import triton
import triton.language as tl

from flowkit.flow.median import median_network, sorting_network
from flowkit.flow.triton_stencil import inner_source, strip_source, tile_source

__all__ = ["FusedInner", "count_launches", "interpreted", "median_blur_triton", "record_launch", "warp_triton"]

_BLOCK = 512
_MEDIAN_BLOCK = 256
_WARP_BLOCK = 256
_TILE_WIDTH = 128
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


def _launch(name: str, kernel, grid, args, meta: dict, *, bytes_rw):
    """Launch ``kernel[grid](*args, **meta)``, record it for ``count_launches`` and return
    Triton's handle of the compiled kernel (its ``n_regs``, ``n_spills``; None when interpreted).
    ``bytes_rw`` is a function returning (bytes read, bytes written), called only while counting."""
    handle = kernel[grid](*args, **meta)
    record_launch(name, bytes_rw)
    return handle


def record_launch(name: str, bytes_rw) -> None:
    """Note a launch of kernel ``name`` for ``count_launches``, if counting (``_launch`` does;
    tools/kernels/cost_model.py also calls it for launches it counts without running)."""
    if _launch_log is not None:
        _launch_log.append((name, *bytes_rw()))


def _jit_source(name: str, source: str):
    """``triton.jit`` of a kernel written as text. Triton reads a kernel's source with inspect,
    so the text is registered in linecache under a file name of its own before it is executed."""
    filename = f"<flowkit-{name}-triton>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {"tl": tl}
    exec(compile(source, filename, "exec"), namespace)
    return triton.jit(namespace[name])


_INNER_KERNELS: dict = {}


def _inner_kernel(steps: int, channels: int, rows: int | None = None, columns: bool = False, *,
                  strips: bool = False, prefetch: bool = False):
    """The kernel of ``steps`` fused inner iterations for C = ``channels``: on blocks of pixels
    with the neighbours recomputed (``rows`` None), on tiles of ``rows`` rows, cut into column
    tiles if ``columns``, or on column strips walked row by row (``strips``), the next row read
    one row ahead if ``prefetch``. Built on first use."""
    key = (steps, channels, rows, columns, strips, prefetch)
    if key not in _INNER_KERNELS:
        if strips:
            name = f"_strip{steps}_c{channels}{'_prefetch' if prefetch else ''}_kernel"
            source = strip_source(name, steps, channels, prefetch)
        elif rows is None:
            name = f"_inner{steps}_c{channels}_kernel"
            source = inner_source(name, steps, channels)
        else:
            name = f"_tile{steps}_c{channels}_r{rows}{'_cols' if columns else ''}_kernel"
            source = tile_source(name, steps, channels, rows, columns)
        _INNER_KERNELS[key] = _jit_source(name, source)
    return _INNER_KERNELS[key]


@triton.jit
def _stop_kernel(part_ptr, active_ptr, loc_ptr, redo_ptr, n, nblk, eps, dst,  # noqa: PLR0913, PLR0917 - a Triton kernel takes every buffer as an argument
                 STEPS: tl.constexpr, NB: tl.constexpr):
    """OpenCV's stopping rule after a launch of STEPS iterations, for pair b.

    A step is applied while the pair is going; it stops after the first step whose squared
    change is <= eps. A pair that took every step now sits in buffer ``dst`` (``loc``); one that
    stopped after j < STEPS steps stays where it was, with ``redo`` = j steps to apply again.
    """
    b = tl.program_id(0)
    i = tl.arange(0, NB)
    on = tl.load(active_ptr + b) != 0
    going = on
    taken = 0
    for k in tl.static_range(STEPS):
        e = tl.sum(tl.load(part_ptr + (k * n + b) * nblk + i, mask=i < nblk, other=0.0), axis=0)
        taken += going.to(tl.int32)
        going = going & (e > eps)
    tl.store(active_ptr + b, going.to(tl.uint8))
    loc = tl.load(loc_ptr + b)
    tl.store(loc_ptr + b, tl.where(taken == STEPS, dst, loc).to(tl.uint8))
    tl.store(redo_ptr + b, tl.where(taken == STEPS, 0, taken).to(tl.uint8), mask=on)


@triton.jit
def _settle_kernel(u_src, px_src, py_src, u_dst, px_dst, py_dst, flag_ptr, chw,  # noqa: PLR0913, PLR0917 - a Triton kernel takes every buffer as an argument
                   BLOCK: tl.constexpr):
    """Copy pair b's state (C*H*W values per tensor) from src to dst where ``flag`` is set."""
    blk = tl.program_id(0)
    b = tl.program_id(1)
    if tl.load(flag_ptr + b) == 0:
        return
    q = blk * BLOCK + tl.arange(0, BLOCK)
    m = q < chw
    off = b.to(tl.int64) * chw + q
    tl.store(u_dst + off, tl.load(u_src + off, mask=m), mask=m)
    tl.store(px_dst + off, tl.load(px_src + off, mask=m), mask=m)
    tl.store(py_dst + off, tl.load(py_src + off, mask=m), mask=m)


def interpreted() -> bool:
    """True when the kernels were built for Triton's CPU interpreter (TRITON_INTERPRET=1)."""
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(_stop_kernel, InterpretedFunction)


def _block(n: int, gpu_block: int) -> int:
    # The interpreter runs programs one after another with numpy: few large blocks are faster.
    return min(triton.next_power_of_2(n), 1 << 16) if interpreted() else gpu_block


class FusedInner:
    """The inner iterations of one outer iteration, fused (the Triton implementations).

    Args:
        l_t: lambda * theta; theta; taut: tau / theta (as in the eager solver).
        steps: inner iterations per kernel launch. 1 reads and writes the state and the warp
            constants once per iteration; 2 once per two iterations, halving that traffic (a
            little less on tiles, which also read their edge rows).
        rows: None: a program owns ``block`` pixels and recomputes the neighbours' steps it needs
            (3 flow evaluations per pixel for one step, 15 for two: ``triton_stencil.inner_source``).
            An int: a program owns a tile of ``rows`` whole rows and shifts tensors with
            ``tl.gather``, each step computed once per tile pixel, the tile's ``steps`` rows at
            either end read again by the next tile (``triton_stencil.tile_source``). A tile is
            ``rows`` x the next power of two >= W, up to ``tile_width``.
        block: pixels per program (``rows`` None, on a GPU); num_warps: warps per program.
            tools/kernels/sass_model.py and tools/gpu/gpu_check.py compare the choices.
        tile_width: the widest tile. Wider images are cut into column tiles that read ``steps``
            columns again at either side. At 128 (SPEC's crop) the default tiles compile for sm_90
            without register spills; at 256 they spill (tools/kernels/sass_model.py).
        strip: None, or the width of a column strip (a power of two > 2 * ``steps``): a program
            walks down a strip with every step in flight, the rows above and below carried in
            registers, and writes its ``strip - 2 * steps`` middle columns
            (``triton_stencil.strip_source``). Made for many steps per launch: the state and the
            constants cross DRAM once per launch, the edge columns twice. Strips are as wide as
            the image with its edges where that is narrower.
        prefetch: on strips, read each row one row ahead (``strip_source``); an option to measure.
    """

    def __init__(self, *, l_t: float, theta: float, taut: float, steps: int = 1, rows: int | None = None,  # noqa: PLR0913 - three solver constants and seven launch choices, keyword-only
                 block: int = _BLOCK, num_warps: int = 4, tile_width: int = _TILE_WIDTH, strip: int | None = None,
                 prefetch: bool = False):
        if steps < 1:
            raise ValueError(f"steps should be >= 1, got {steps}")
        if rows is not None and strip is not None:
            raise ValueError(f"rows and strip are two layouts: give one, got rows={rows} and strip={strip}")
        if prefetch and strip is None:
            raise ValueError(f"prefetch is an option of strips: give strip too, got strip={strip}")
        for name, size in (("rows", rows), ("tile_width", tile_width if rows else None), ("strip", strip)):
            if size is not None and (size <= 2 * steps or size & (size - 1)):
                raise ValueError(f"{name} should be a power of two > 2 * steps = {2 * steps}, got {size}")
        self.l_t, self.theta, self.taut = l_t, theta, taut
        self.steps, self.rows, self.block, self.num_warps = steps, rows, block, num_warps
        self.tile_width, self.strip, self.prefetch = tile_width, strip, bool(prefetch)
        self.compiled = None  # Triton's handle of the last launch of ``steps`` (register counts)

    def _tile_grid(self, steps: int, h: int, w: int) -> tuple[int, int, int]:
        """(BW, row tiles, column tiles) of a launch of ``steps`` iterations on (h, w) images."""
        bw = min(triton.next_power_of_2(w), self.tile_width)
        cols = 1 if w <= bw else triton.cdiv(w, bw - 2 * steps)
        return bw, triton.cdiv(h, self.rows - 2 * steps), cols

    def _strip_grid(self, steps: int, w: int) -> tuple[int, int]:
        """(BW, strips) of a launch of ``steps`` iterations on images ``w`` wide."""
        bw = min(triton.next_power_of_2(w + 2 * steps), self.strip)
        return bw, triton.cdiv(w, bw - 2 * steps)

    def blocks(self, steps: int, h: int, w: int) -> int:
        """Programs per pair of a launch of ``steps`` iterations on (h, w) images."""
        if self.strip is not None:
            return self._strip_grid(steps, w)[1]
        if self.rows is None:
            return triton.cdiv(h * w, _block(h * w, self.block))
        _, rows, cols = self._tile_grid(steps, h, w)
        return rows * cols

    def read_share(self, steps: int, h: int, w: int) -> float:
        """Pixels a launch of ``steps`` iterations reads per image pixel: 1 on blocks; on tiles
        more, each tile's edge rows (and columns) being read again; on strips, their edge columns."""

        def covered(size: int, tile: int, count: int, halo: int) -> int:
            own = tile - 2 * halo
            return sum(min(size, t * own - halo + tile) - max(0, t * own - halo) for t in range(count))

        if self.strip is not None:
            bw, n_strips = self._strip_grid(steps, w)
            return covered(w, bw, n_strips, steps) / w
        if self.rows is None:
            return 1.0
        bw, n_rows, n_cols = self._tile_grid(steps, h, w)
        cols_read = covered(w, bw, n_cols, steps) if n_cols > 1 else w
        return covered(h, self.rows, n_rows, steps) * cols_read / (h * w)

    def run(self, state, consts, scaled_eps: float, iterations: int) -> torch.Tensor:
        """``iterations`` inner iterations on ``state`` = (u, px, py), each (n, C, H, W) float32
        contiguous, updated in place; ``consts`` = (iw (n, C, H, W), neg_grad (n, 1, H, W),
        rho_c (n, 1, H, W)) from the warp. Returns the (n, 1, 1, 1) bool mask of the pairs still
        going, as the eager "masked" mode does; nothing is read on the host.

        The state moves between two sets of buffers (a launch reads one and writes the other, so
        neighbours are read race free); a stopped pair's programs return at once. Each
        pair's last state is then copied back into ``state`` where it is not there already.
        """
        u = state[0]
        n, c, h, w = u.shape
        consts = tuple(t.contiguous() for t in consts)
        buffers = (tuple(state), tuple(torch.empty_like(t) for t in state))
        active = torch.ones(n, dtype=torch.uint8, device=u.device)
        loc = torch.zeros(n, dtype=torch.uint8, device=u.device)  # which buffers hold the pair
        redo = torch.zeros(n, dtype=torch.uint8, device=u.device)  # steps to apply again from there
        most = max(self.blocks(s, h, w) for s in range(1, self.steps + 1))
        part = torch.empty((self.steps, n, most), dtype=torch.float32, device=u.device)
        src, done = 0, 0
        while done < iterations:
            steps = min(self.steps, iterations - done)
            nblk = self._launch_steps(steps, (buffers[src], buffers[1 - src]), consts, active, part)
            _launch("stop", _stop_kernel, (n,), (part, active, loc, redo, n, nblk, scaled_eps, 1 - src),
                    {"STEPS": steps, "NB": triton.next_power_of_2(nblk)},
                    bytes_rw=lambda s=steps, nb=nblk: (4 * s * n * nb + 2 * n, 3 * n))
            src, done = 1 - src, done + steps
        self._settle(buffers, consts, loc, redo, part)
        return active.view(n, 1, 1, 1).bool()

    def _launch_steps(self, steps: int, src_dst, consts, flags, part) -> int:
        """``steps`` iterations from the buffers ``src_dst[0]`` into ``src_dst[1]``, for the pairs
        whose ``flags`` (n,) uint8 is set. Returns the programs per pair, ``part``'s stride."""
        src, dst = src_dst
        n, c, h, w = src[0].shape
        nblk = self.blocks(steps, h, w)
        if self.strip is not None:
            meta, columns = {"BW": self._strip_grid(steps, w)[0]}, False
        elif self.rows is None:
            meta, columns = {"BLOCK": _block(h * w, self.block)}, False
        else:
            bw, _, cols = self._tile_grid(steps, h, w)
            meta, columns = {"BW": bw}, cols > 1
        args = (*src, *consts, flags, *dst, part, n, h, w, self.l_t, self.theta, self.taut)

        def bytes_rw():  # the state and constants once, a tile's edge rows again; the state written
            px_bytes = 4 * n * h * w
            return px_bytes * self.read_share(steps, h, w) * (4 * c + 2), px_bytes * 3 * c

        kernel = _inner_kernel(steps, c, self.rows, columns, strips=self.strip is not None, prefetch=self.prefetch)
        handle = _launch(f"inner{steps}", kernel, (nblk, n), args,
                         {**meta, "num_warps": self.num_warps}, bytes_rw=bytes_rw)
        if steps == self.steps:
            self.compiled = handle
        return nblk

    def _settle(self, buffers, consts, loc, redo, part) -> None:
        """Bring every pair's final state into ``buffers[0]``: first the steps a stop inside a
        multi-step launch left to apply again (one step at a time, from wherever the pair is),
        then a copy for the pairs whose state ended in the second buffers."""
        for j in range(1, self.steps):
            due = redo >= j
            for where in (0, 1):
                flags = (due & (loc == where)).to(torch.uint8)
                self._launch_steps(1, (buffers[where], buffers[1 - where]), consts, flags, part)
            loc ^= due.to(torch.uint8)
        u = buffers[0][0]
        chw = u[0].numel()
        block = _block(chw, _BLOCK)
        # Declared as if every pair moved: the model's upper bound (a stopped pair moves no byte).
        moved = 12 * chw * u.shape[0]
        _launch("settle", _settle_kernel, (triton.cdiv(chw, block), u.shape[0]), (*buffers[1], *buffers[0], loc, chw),
                {"BLOCK": block}, bytes_rw=lambda: (moved, moved))


@triton.jit
def _cubic_weights(t):
    """Keys' cubic weights (a = -0.75) of the taps at -1, 0, 1, 2, as ``remap.cubic_weights``
    writes them (the same order of operations)."""
    a = -0.75
    t1 = t + 1
    s = 1 - t
    w0 = ((a * t1 - 5 * a) * t1 + 8 * a) * t1 - 4 * a
    w1 = ((a + 2) * t - (a + 3)) * t * t + 1
    w2 = ((a + 2) * s - (a + 3)) * s * s + 1
    return w0, w1, w2, 1 - w0 - w1 - w2


@triton.jit
def _warp_kernel(u_ptr, i0_ptr, i1_ptr, i1x_ptr, i1y_ptr, iw_ptr, ng_ptr, rc_ptr, h, w, gamma,  # noqa: PLR0913, PLR0917 - a Triton kernel takes every buffer as an argument
                 stride_i0, stride_i1, stride_grad, C: tl.constexpr, BLOCK: tl.constexpr):
    """``_Solver.warp`` for one block of pixels: I1 and its gradient sampled bicubically at
    (x + u1, y + u2) with a zero border (``remap.remap_cubic``), then the per-warp constants.
    The frames' (H, W) planes are contiguous, ``stride_*`` apart (the pyramid's are views)."""
    blk = tl.program_id(0)
    b = tl.program_id(1)
    hw = h * w
    q = blk * BLOCK + tl.arange(0, BLOCK)
    m = q < hw
    y = q // w
    x = q - y * w
    bc = b.to(tl.int64) * C * hw
    b1 = b.to(tl.int64) * hw
    i1_ptr += b.to(tl.int64) * stride_i1
    i1x_ptr += b.to(tl.int64) * stride_grad
    i1y_ptr += b.to(tl.int64) * stride_grad
    u1 = tl.load(u_ptr + bc + q, mask=m, other=0.0)
    u2 = tl.load(u_ptr + bc + hw + q, mask=m, other=0.0)
    # Further than 3 px outside, every tap reads the zero border; the clamp keeps indices small.
    mx = tl.minimum(tl.maximum(u1 + x.to(tl.float32), -4.0), (w + 3).to(tl.float32))
    my = tl.minimum(tl.maximum(u2 + y.to(tl.float32), -4.0), (h + 3).to(tl.float32))
    fx = tl.floor(mx)
    fy = tl.floor(my)
    wx0, wx1, wx2, wx3 = _cubic_weights(mx - fx)
    wy0, wy1, wy2, wy3 = _cubic_weights(my - fy)
    ix = fx.to(tl.int32)
    iy = fy.to(tl.int32)
    i1w = tl.zeros((BLOCK,), dtype=tl.float32)
    i1wx = tl.zeros((BLOCK,), dtype=tl.float32)
    i1wy = tl.zeros((BLOCK,), dtype=tl.float32)
    for i in tl.static_range(4):
        yy = iy + (i - 1)
        row_in = m & (yy >= 0) & (yy < h)
        acc = tl.zeros((BLOCK,), dtype=tl.float32)
        acc_x = tl.zeros((BLOCK,), dtype=tl.float32)
        acc_y = tl.zeros((BLOCK,), dtype=tl.float32)
        for j in tl.static_range(4):
            xx = ix + (j - 1)
            tap_in = row_in & (xx >= 0) & (xx < w)
            off = yy * w + xx
            wj = wx0 if j == 0 else (wx1 if j == 1 else (wx2 if j == 2 else wx3))
            acc += tl.load(i1_ptr + off, mask=tap_in, other=0.0) * wj
            acc_x += tl.load(i1x_ptr + off, mask=tap_in, other=0.0) * wj
            acc_y += tl.load(i1y_ptr + off, mask=tap_in, other=0.0) * wj
        wi = wy0 if i == 0 else (wy1 if i == 1 else (wy2 if i == 2 else wy3))
        i1w += acc * wi
        i1wx += acc_x * wi
        i1wy += acc_y * wi
    grad = i1wx * i1wx + i1wy * i1wy
    rho_c = i1w - i1wx * u1 - i1wy * u2 - tl.load(i0_ptr + b.to(tl.int64) * stride_i0 + q, mask=m, other=0.0)
    tl.store(iw_ptr + bc + q, i1wx, mask=m)
    tl.store(iw_ptr + bc + hw + q, i1wy, mask=m)
    if C == 3:
        tl.store(iw_ptr + bc + 2 * hw + q, tl.zeros((BLOCK,), dtype=tl.float32) + gamma, mask=m)
    tl.store(ng_ptr + b1 + q, tl.where(grad > 1.1920929e-07, -grad, -1e-30), mask=m)
    tl.store(rc_ptr + b1 + q, rho_c, mask=m)


def warp_triton(i0, i1, i1x, i1y, u, *, gamma: float = 0.0):
    """``_Solver.warp`` in one launch: frames ``i0``, ``i1`` and I1's gradient ``i1x``, ``i1y``
    (n, H, W) float32, flow ``u`` (n, C, H, W) -> (iw (n, C, H, W), neg_grad
    (n, 1, H, W), rho_c (n, 1, H, W)); C = 3 carries ``gamma`` as the third coefficient."""
    n, c, h, w = u.shape
    u = u.contiguous()
    # The pyramid's frames are channel views of one tensor: read in place, not copied every warp.
    i0, i1, i1x, i1y = (t if t.stride(-1) == 1 and t.stride(-2) == w else t.contiguous() for t in (i0, i1, i1x, i1y))
    if i1x.stride(0) != i1y.stride(0):
        i1x, i1y = i1x.contiguous(), i1y.contiguous()
    iw = torch.empty_like(u)
    neg_grad = torch.empty((n, 1, h, w), dtype=u.dtype, device=u.device)
    rho_c = torch.empty_like(neg_grad)
    block = _block(h * w, _WARP_BLOCK)
    px_bytes = 4 * n * h * w
    _launch("warp", _warp_kernel, (triton.cdiv(h * w, block), n),
            (u, i0, i1, i1x, i1y, iw, neg_grad, rho_c, h, w, gamma, i0.stride(0), i1.stride(0), i1x.stride(0)),
            {"C": c, "BLOCK": block}, bytes_rw=lambda: (px_bytes * (2 + 4), px_bytes * (c + 2)))
    return iw, neg_grad, rho_c


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


_MEDIAN_KERNELS = {k: _jit_source(f"_median{k}_kernel", _median_source(k)) for k in (3, 5)}


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
            bytes_rw=lambda: (4 * b * c * h * w, 4 * b * c * h * w))
    return out
