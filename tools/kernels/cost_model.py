"""Machine-independent cost of the TV-L1 solver's CUDA code path, counted on the CPU.

For each implementation of the hot loop it counts kernels and the bytes of the tensors they read
and write, per pixel of one pair (all flow channels together):

- the inner iteration: eager = the aten operations a TorchDispatchMode sees (one CUDA kernel
  each, near enough: a reduction may take two); triton, triton-tiles and triton-strips = the kernel
  launches of ``flowkit.flow.triton_tvl1`` with the bytes their wrapper declares (a tile's edge
  rows or a strip's edge columns read again count again). Per iteration means the
  difference between 31 and 1 iterations, divided by 30, so per-call set-up is left out.
- the median step (``u[:, :2] = median(u[:, :2])``): old = unfold + ``torch.median`` (the code
  before issue 11), eager = the min/max selection network, triton = one launch (+ the copy back).
- the warp step (bicubic remap of I1 and its gradient, then the constants of the inner
  iterations), 25 times per pair at SPEC defaults: eager against the triton kernel (whose 16 taps
  a pixel reads from cache count once).
- peak tensor memory per pixel of a small SPEC-pyramid solve (live storages, tracked through the
  dispatch mode; the CUDA caching allocator adds its own slack on top).

Bytes count every tensor argument and output at its size (a neighbour read from cache counts
once): a model of DRAM traffic, not a measurement. Views and metadata operations count nothing.
The Triton kernels run under TRITON_INTERPRET=1, set here before triton is imported.

Run (about a minute):
    python tools/kernels/cost_model.py > benchmarks/results/cost_model.json
"""

from __future__ import annotations

import json
import os
import platform
import sys
import weakref
from collections import Counter

os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes  # noqa: E402

import flowkit.flow.torch_tvl1 as solver_mod  # noqa: E402
from flowkit.flow.median import median_blur_torch  # noqa: E402
from flowkit.flow.params import TVL1Params  # noqa: E402

H = W = 128
B = 2
_VIEW_OPS = {"view", "_unsafe_view", "slice", "select", "expand", "as_strided", "unsqueeze", "squeeze",
             "alias", "t", "permute", "transpose", "detach", "unfold", "_reshape_alias", "reshape", "split",
             "lift_fresh", "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "zeros",
             "zeros_like", "ones", "arange", "_to_copy_noop", "unbind"}
_WRITE_ONLY_FIRST = {"copy_", "fill_", "zero_", "index_copy_"}
TARGETS = {"inner_kernels": 4, "inner_bytes_per_px": 120, "median_bytes_per_px": 40}


def _tensors(x):
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, (list, tuple)):
        for y in x:
            yield from _tensors(y)


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


class OpCounter(TorchDispatchMode):
    """Counts data-moving aten operations and the bytes of their tensor arguments and outputs."""

    def __init__(self):
        super().__init__()
        self.kernels = 0
        self.bytes = 0
        self.ops = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func.overloadpacket.__name__
        if name in _VIEW_OPS:
            return out
        ins = list(_tensors(args)) + list(_tensors(list(kwargs.values())))
        if name in _WRITE_ONLY_FIRST and ins:
            ins = ins[1:]  # the destination is written, not read
        self.kernels += 1
        self.ops[name] += 1
        self.bytes += sum(_nbytes(t) for t in ins) + sum(_nbytes(t) for t in _tensors(out))
        return out


class PeakMemory(TorchDispatchMode):
    """Peak bytes of live storages created inside the block (inputs created before are not counted)."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, list] = {}
        self.current = 0
        self.peak = 0

    def _release(self, key: int) -> None:
        entry = self.live[key]
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self.live[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in _tensors(out):
            key = t.untyped_storage().data_ptr()
            if key not in self.live:
                self.live[key] = [t.untyped_storage().nbytes(), 0]
                self.current += self.live[key][0]
                self.peak = max(self.peak, self.current)
            self.live[key][1] += 1
            weakref.finalize(t, self._release, key)
        return out


def _old_median(x: torch.Tensor, ksize: int) -> torch.Tensor:
    """The median before issue 11: unfold, a reshape copy and torch.median over 25 values."""
    b, c, h, w = x.shape
    r = ksize // 2
    padded = F.pad(x, (r, r, r, r), mode="replicate")
    windows = padded.unfold(2, ksize, 1).unfold(3, ksize, 1).reshape(b, c, h, w, ksize * ksize)
    return windows.median(dim=-1).values


def _setup(impl: str, inner: int):
    p = TVL1Params(inner_iterations=inner)
    solver = solver_mod._Solver(p, "masked", False, impl)
    g = torch.Generator().manual_seed(0)
    i0 = torch.rand(B, H, W, generator=g) * 255
    i1 = torch.rand(B, H, W, generator=g) * 255
    u = torch.randn(B, 2, H, W, generator=g)
    px, py = torch.randn(B, 2, H, W, generator=g) * 0.1, torch.randn(B, 2, H, W, generator=g) * 0.1
    i1x, i1y = solver_mod.centered_gradient(i1)
    consts = solver.warp(i0, i1, i1x, i1y, u)
    return solver, solver_mod._Working((u, px, py), consts)


def _count(fn, run_kernels: bool = True) -> dict:
    """Kernels and bytes of ``fn()``: aten operations seen by the dispatch mode, Triton launches
    with the bytes their wrapper declares. ``run_kernels`` False records the launches without
    running them (the interpreter takes minutes on strips); the declared bytes do not depend on
    what the kernels compute while no pair stops."""
    from flowkit.flow import triton_tvl1

    launch = triton_tvl1._launch

    def launch_unseen(name, kernel, grid, args, meta, *, bytes_rw):
        # The interpreter moves the kernel's arguments with torch ops of its own: not the kernel's.
        if not run_kernels:
            triton_tvl1.record_launch(name, bytes_rw)
            return None
        with _disable_current_modes():
            return launch(name, kernel, grid, args, meta, bytes_rw=bytes_rw)

    triton_tvl1._launch = launch_unseen
    try:
        with triton_tvl1.count_launches() as launches, OpCounter() as ops:
            fn()
    finally:
        triton_tvl1._launch = launch
    return {"kernels": ops.kernels + len(launches), "bytes": ops.bytes + sum(r + w for _, r, w in launches),
            "aten_ops": dict(ops.ops), "triton_launches": dict(Counter(n for n, _, _ in launches))}


def inner_iteration(impl: str) -> dict:
    """Kernels and bytes per pixel of one inner iteration (the masked path CUDA runs). The Triton
    kernels are recorded, not run: at epsilon 1e-12 no pair stops, so their launches are those of
    a run."""
    runs = {}
    for n in (1, 31):
        solver, work = _setup(impl, n)
        runs[n] = _count(lambda s=solver, wk=work: solver_mod._inner_iterations(s, wk, 1e-12), run_kernels=False)
    per = {k: (runs[31][k] - runs[1][k]) / 30 for k in ("kernels", "bytes")}
    return {"kernels": per["kernels"], "bytes_per_px": per["bytes"] / (B * H * W),
            "one_iteration_ops": runs[1]["aten_ops"], "one_iteration_launches": runs[1]["triton_launches"]}


def median_step(kind: str) -> dict:
    """Kernels and bytes per pixel of the median step ``u[:, :2] = median(u[:, :2], 5)``."""
    solver, work = _setup("triton" if kind == "triton" else "eager", 1)
    solver.median_fn = {"old": _old_median, "eager": median_blur_torch}.get(kind, solver.median_fn)
    got = _count(lambda: solver_mod._median(solver, work.state[0]))
    return {"kernels": got["kernels"], "bytes_per_px": got["bytes"] / (B * H * W)}


def warp_step(impl: str) -> dict:
    """Kernels and bytes per pixel of one warp (``_Solver.warp``: bicubic remap of I1 and its
    gradient, then the per-warp constants)."""
    solver, work = _setup(impl, 1)
    g = torch.Generator().manual_seed(2)
    i0, i1 = (torch.rand(B, H, W, generator=g) * 255 for _ in range(2))
    i1x, i1y = solver_mod.centered_gradient(i1)
    got = _count(lambda: solver.warp(i0, i1, i1x, i1y, work.state[0]))
    return {"kernels": got["kernels"], "bytes_per_px": got["bytes"] / (B * H * W)}


def peak_memory(impl: str) -> dict:
    """Peak live tensor bytes per pixel of a solve of B 128x128 pairs (5 scales, short iterations)."""
    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 256, (B, H, W), generator=g, dtype=torch.uint8)
    b = torch.randint(0, 256, (B, H, W), generator=g, dtype=torch.uint8)
    with PeakMemory() as mem:
        solver_mod.tvl1_torch(a, b, warps=1, outer_iterations=1, inner_iterations=2, impl=impl,
                              early_stop="masked")
    return {"peak_bytes_per_px": mem.peak / (B * H * W)}


def main() -> None:
    torch.manual_seed(0)
    solver_mod.median_blur = median_blur_torch  # the CUDA path's median, also for eager on the CPU
    out = {
        "what": "per 128x128 pair and pixel, all flow channels; CUDA code path counted on the CPU",
        "torch": torch.__version__, "python": platform.python_version(), "targets": TARGETS,
        "inner_iteration": {"old_eager": inner_iteration("eager"), "new_triton": inner_iteration("triton"),
                            "new_triton_tiles": inner_iteration("triton-tiles"),
                            "new_triton_strips": inner_iteration("triton-strips")},
        "median": {k: median_step(k) for k in ("old", "eager", "triton")},
        "warp": {impl: warp_step(impl) for impl in ("eager", "triton")},
        "peak_memory": {impl: peak_memory(impl) for impl in ("eager", "triton", "triton-tiles", "triton-strips")},
    }
    out["meets_targets"] = {}
    for name in ("new_triton", "new_triton_tiles", "new_triton_strips"):
        new = out["inner_iteration"][name]
        out["meets_targets"][name] = {
            "inner_kernels": new["kernels"] <= TARGETS["inner_kernels"],
            "inner_bytes_per_px": new["bytes_per_px"] <= TARGETS["inner_bytes_per_px"],
            "median_bytes_per_px": out["median"]["triton"]["bytes_per_px"] <= TARGETS["median_bytes_per_px"],
        }
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
