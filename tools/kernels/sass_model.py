"""The fused TV-L1 kernels compiled for the H100/H200 (sm_90) on the CPU, and what their machine code implies.

No GPU is needed: Triton compiles a kernel ahead of time for a named target, and its wheel brings
NVIDIA's ptxas and cuobjdump. For each launch shape (inner iterations per launch, pixels per
program, warps per program) of ``triton_tvl1``'s inner kernel this reads, from the SASS:

- registers per thread and local-memory spills, hence how many warps an SM can hold;
- the instructions of the main path (up to the first unconditional EXIT; NOPs left out), by
  opcode, per pixel and inner iteration: warp instructions issued, global loads;
- two ceilings for the kernel alone, from datasheet figures (132 SMs issuing 4 warp instructions a
  cycle at 1.98 GHz; 3.35 TB/s HBM3 on the H100 SXM, 4.8 TB/s HBM3e on the H200): the issue
  ceiling, and the memory ceiling from the bytes a launch must move (64 per pixel with C = 2,
  over ``steps`` iterations). Turned into pairs/s with the 29.8 M pixel-iterations a pair needs at
  SPEC defaults (benchmarks/results/iteration_work.json, "bench", "needed").

A model, not a measurement: it knows nothing of latency, caches or occupancy's effect on bandwidth.
tools/gpu/gpu_check.py ("inner_kernel") measures the same shapes on a GPU.

    python tools/kernels/sass_model.py > benchmarks/results/sass_model_sm90.json   # about a minute
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

SM90 = {"sms": 132, "schedulers": 4, "clock_hz": 1.98e9, "regs": 65536, "max_warps": 64, "max_ctas": 32}
BANDWIDTH = {"h100_sxm": 3.35e12, "h200": 4.8e12}
PX_ITERATIONS_PER_PAIR = 29.8e6
#: Launch shapes (``triton_tvl1.FusedInner`` arguments) besides the implementations' defaults:
#: blocks of pixels that recompute neighbours, tiles of whole rows (at level 0's 128-pixel rows),
#: and column strips walked row by row by one warp (their shifts are warp shuffles).
SHAPES = [{"steps": 1, "block": 128, "num_warps": 4}, {"steps": 1, "block": 256, "num_warps": 4},
          {"steps": 1, "block": 512, "num_warps": 8}, {"steps": 2, "block": 128, "num_warps": 4},
          {"steps": 2, "block": 256, "num_warps": 8}, {"steps": 3, "block": 128, "num_warps": 4},
          {"steps": 1, "rows": 8, "num_warps": 4}, {"steps": 1, "rows": 16, "num_warps": 8},
          {"steps": 2, "rows": 8, "num_warps": 4}, {"steps": 2, "rows": 16, "num_warps": 8},
          {"steps": 2, "rows": 16, "num_warps": 16},
          {"steps": 2, "rows": 32, "num_warps": 32}, {"steps": 3, "rows": 16, "num_warps": 8},
          {"steps": 3, "rows": 16, "num_warps": 16}, {"steps": 3, "rows": 32, "num_warps": 32},
          {"steps": 4, "rows": 32, "num_warps": 32},
          {"steps": 3, "strip": 32, "num_warps": 1}, {"steps": 4, "strip": 32, "num_warps": 1},
          {"steps": 6, "strip": 32, "num_warps": 1}, {"steps": 3, "strip": 64, "num_warps": 1},
          {"steps": 4, "strip": 64, "num_warps": 1}, {"steps": 5, "strip": 64, "num_warps": 1},
          {"steps": 8, "strip": 64, "num_warps": 2}, {"steps": 5, "strip": 32, "num_warps": 1, "prefetch": True},
          {"steps": 5, "strip": 64, "num_warps": 1, "prefetch": True}]
WIDTH = 128
_INSTRUCTION = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_]*)")


def _tools() -> Path:
    import triton.backends.nvidia as nvidia

    return Path(nvidia.__file__).parent / "bin"


def inner_signature(block_name: str = "BLOCK") -> dict:
    """Triton types of the inner kernels' arguments (``triton_stencil``); the last one, the
    pixels per program, is ``BLOCK`` or, for the row tiles, ``BW``."""
    sig = {name: "*fp32" for name in ("u_ptr", "px_ptr", "py_ptr", "iw_ptr", "ng_ptr", "rc_ptr")}
    sig["active_ptr"] = "*u8"
    sig.update({name: "*fp32" for name in ("u_out", "px_out", "py_out", "part_ptr")})
    sig.update({"n": "i32", "h": "i32", "w": "i32", "l_t": "fp32", "theta": "fp32", "taut": "fp32",
                block_name: "constexpr"})
    return sig


def compile_sm90(kernel, signature: dict, constexprs: dict, num_warps: int):
    """Triton's compiled kernel for sm_90 (its ``asm`` holds the ptx and the cubin)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    source = ASTSource(kernel, signature, constexprs=constexprs)
    return triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps})


def sass_stats(cubin: bytes, workdir: Path) -> dict:
    """Registers, stack (spill) bytes and main-path opcode counts of one kernel's cubin."""
    path = workdir / "kernel.cubin"
    path.write_bytes(cubin)
    tools = _tools()
    usage = subprocess.run([str(tools / "cuobjdump"), "--dump-resource-usage", str(path)],
                           capture_output=True, text=True, check=True).stdout
    regs = int(re.search(r"REG:(\d+)", usage).group(1))
    stack = int(re.search(r"STACK:(\d+)", usage).group(1))
    sass = subprocess.run([str(tools / "cuobjdump"), "-sass", str(path)], capture_output=True, text=True,
                          check=True).stdout
    ops: Counter = Counter()
    for line in sass.splitlines():
        found = _INSTRUCTION.search(line)
        if not found:
            continue
        predicate, op = found.groups()
        if op == "EXIT" and not predicate:
            break
        if op != "NOP":
            ops[op] += 1
    return {"registers": regs, "stack_bytes": stack, "ops": ops}


def warps_per_sm(registers: int, warps: int) -> int:
    """Resident warps per SM for a program of ``warps`` warps at ``registers`` per thread."""
    per_warp = -(-registers // 8) * 8 * 32
    programs = min(SM90["max_ctas"], SM90["regs"] // (per_warp * warps), SM90["max_warps"] // warps)
    return programs * warps


def default_shapes() -> dict:
    """The launch shape of each Triton implementation, FusedInner's defaults filled in."""
    import inspect

    from flowkit.flow.torch_tvl1 import TRITON_LAUNCH
    from flowkit.flow.triton_tvl1 import FusedInner

    params = inspect.signature(FusedInner).parameters
    base = {name: params[name].default for name in ("steps", "rows", "block", "num_warps", "strip")}
    shapes = {}
    for impl, launch in TRITON_LAUNCH.items():
        shape = {**base, **launch}
        layout = "strip" if shape["strip"] is not None else "rows" if shape["rows"] is not None else "block"
        shapes[impl] = {key: value for key, value in shape.items()
                        if key not in {"strip", "rows", "block"} - {layout}}
    return shapes


def inner_shape(shape: dict, workdir: Path) -> dict:
    """One launch shape of the inner kernel (C = 2): {"steps", "num_warps", and "block" pixels per
    program, "rows" per tile of 128-pixel rows, with "columns" true for the column tiles of
    images wider than 128, which read ``steps`` columns again at either side, or "strip" columns
    per strip of 128 rows, with "prefetch" true to read each row one row ahead}.

    A strip's kernel is a loop over rows: its instructions (the path to the first EXIT, the loop
    body once) are counted as one row's, over the strips that cover a 128-pixel row."""
    from flowkit.flow.triton_tvl1 import _inner_kernel

    steps, warps, rows, strip = shape["steps"], shape["num_warps"], shape.get("rows"), shape.get("strip")
    if strip is not None:
        kernel = _inner_kernel(steps, 2, strips=True, prefetch=shape.get("prefetch", False))
        compiled = compile_sm90(kernel, inner_signature("BW"), {"BW": strip}, warps)
        n_strips = -(-WIDTH // (strip - 2 * steps))
        own, reread = WIDTH / n_strips, n_strips * strip / WIDTH
    elif rows is None:
        block = shape["block"]
        compiled = compile_sm90(_inner_kernel(steps, 2), inner_signature(), {"BLOCK": block}, warps)
        own, reread = block, 1.0
    else:
        columns = shape.get("columns", False)
        compiled = compile_sm90(_inner_kernel(steps, 2, rows, columns), inner_signature("BW"), {"BW": WIDTH}, warps)
        own_w = WIDTH - 2 * steps if columns else WIDTH
        own, reread = (rows - 2 * steps) * own_w, rows * WIDTH / ((rows - 2 * steps) * own_w)
    stats = sass_stats(compiled.asm["cubin"], workdir)
    ops = stats.pop("ops")
    total = sum(ops.values())
    per_px_it = warps / (own * steps)  # warp instructions per pixel-iteration, per instruction
    warp_instr = total * per_px_it
    issue_rate = SM90["sms"] * SM90["schedulers"] * SM90["clock_hz"] / warp_instr  # pixel-iterations/s
    bytes_per_px_it = (40 * reread + 24) / steps  # read u, p, constants (the halo again), write u, p
    row = {**shape, **stats, "spill_loads": ops.get("LDL", 0), "spill_stores": ops.get("STL", 0),
           "warps_per_sm": warps_per_sm(stats["registers"], warps),
           "instructions": total, "warp_instructions_per_px_iteration": round(warp_instr, 2),
           "global_loads_per_px_iteration": round(ops.get("LDG", 0) * per_px_it, 3),
           "barriers": ops.get("BAR", 0), "shuffles": ops.get("SHFL", 0),
           "bytes_per_px_iteration": round(bytes_per_px_it, 1),
           "issue_ceiling_pairs_per_s": round(issue_rate / PX_ITERATIONS_PER_PAIR)}
    for name, bandwidth in BANDWIDTH.items():
        memory_rate = bandwidth / bytes_per_px_it
        row[f"memory_ceiling_pairs_per_s_{name}"] = round(memory_rate / PX_ITERATIONS_PER_PAIR)
        row[f"ceiling_pairs_per_s_{name}"] = round(min(issue_rate, memory_rate) / PX_ITERATIONS_PER_PAIR)
    row["top_ops"] = dict(ops.most_common(12))
    return row


def per_pixel_kernels(workdir: Path) -> dict:
    """The warp and the 5x5 median kernels (one pixel per lane at a time, as launched): registers,
    spills and warp instructions per pixel and call."""
    import flowkit.flow.triton_tvl1 as kernels

    warp_sig = {name: "*fp32" for name in ("u_ptr", "i0_ptr", "i1_ptr", "i1x_ptr", "i1y_ptr", "iw_ptr", "ng_ptr",
                                           "rc_ptr")}
    warp_sig.update({"h": "i32", "w": "i32", "gamma": "fp32", "stride_i0": "i32", "stride_i1": "i32",
                     "stride_grad": "i32", "C": "constexpr", "BLOCK": "constexpr"})
    median_sig = {"src": "*fp32", "dst": "*fp32", "h": "i32", "w": "i32", "stride_b": "i32", "nch": "i32",
                  "BLOCK": "constexpr"}
    out = {}
    for name, kernel, sig, consts, block in (
            ("warp", kernels._warp_kernel, warp_sig, {"C": 2}, kernels._WARP_BLOCK),
            ("median5", kernels._MEDIAN_KERNELS[5], median_sig, {}, kernels._MEDIAN_BLOCK)):
        compiled = compile_sm90(kernel, sig, {**consts, "BLOCK": block}, 4)
        stats = sass_stats(compiled.asm["cubin"], workdir)
        ops = stats.pop("ops")
        out[name] = {"block": block, "num_warps": 4, **stats, "warps_per_sm": warps_per_sm(stats["registers"], 4),
                     "instructions": sum(ops.values()),
                     "warp_instructions_per_px": round(sum(ops.values()) * 4 / block, 2),
                     "global_loads_per_px": round(ops.get("LDG", 0) * 4 / block, 2)}
    return out


def main(argv=None) -> None:
    import argparse
    import tempfile

    import triton

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--defaults-only", action="store_true", help="only the implementations' launch shapes")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET"):
        sys.exit("sass_model.py compiles kernels for a GPU: run it without TRITON_INTERPRET set")
    defaults = default_shapes()
    with tempfile.TemporaryDirectory() as tmp:
        out = {"what": "the inner kernel compiled for sm_90 on the CPU; ceilings are a model (see the docstring)",
               "triton": triton.__version__, "device_figures": {**SM90, "bandwidth_bytes_per_s": BANDWIDTH},
               "px_iterations_per_pair": PX_ITERATIONS_PER_PAIR,
               "defaults": {impl: inner_shape(shape, Path(tmp)) for impl, shape in defaults.items()},
               "wide_images": inner_shape({**defaults["triton-tiles"], "columns": True}, Path(tmp)),
               "per_pixel_kernels": per_pixel_kernels(Path(tmp))}
        if not args.defaults_only:
            out["shapes"] = [inner_shape(shape, Path(tmp)) for shape in SHAPES if shape not in defaults.values()]
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
