"""Work per pair under OpenCV's stopping rule, counted on the CPU (no timing), and the memory
traffic it implies for each implementation.

The GPU solver runs the inner iterations of each outer iteration on the pairs still going at its
start and drops stopped pairs between outer iterations. This counts, per pair, the
pixel-iterations of the inner update:

- ``no_stop``: every iteration at every level (the stopping rule never met);
- ``executed``: what eager's masked mode runs (a pair that stops mid-way is frozen, its work
  wasted);
- ``needed``: the iterations before each pair stops, what the Triton kernels run (a stopped
  pair's programs return at once);

and the pixels of the phases around them: ``warp`` (25 warps at SPEC defaults), ``median`` (one
per outer iteration), ``selected`` and ``written_back`` (the compactions). ``budget`` turns these
into bytes per pair per implementation with benchmarks/results/cost_model.json's bytes per pixel,
and into the pairs/s a memory-bound solve would reach at datasheet bandwidths (a model).
``launch_shapes`` does the same for every launch shape of benchmarks/results/sass_model_sm90.json,
with the work a stop inside a multi-step launch wastes and the issue limit of its instructions;
``stopped_after`` is how many pair-outer-iterations stopped after each inner iteration.

With ``--pairs-per-s`` (a measured GPU rate) and ``--bytes-per-px`` (the kernel's unique traffic
per pixel-iteration), it prints the memory traffic that rate implies.
Input: the face pairs of ``tools/gpu/make_gpu_refs.py`` (groups k6, k18 and the 16 "bench" pairs
that ``gpu_check.py`` times).

    python tools/kernels/iteration_work.py [--refs tools/gpu/gpu_refs/flows.npz] [--pairs-per-s 1007 --bytes-per-px 64]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from sass_model import BANDWIDTH, SM90  # the datasheet figures of the SASS model, beside this script

import flowkit.flow.torch_tvl1 as solver_module
from flowkit.flow.params import TVL1Params
from flowkit.flow.pyramid import pyramid_sizes
from flowkit.flow.torch_tvl1 import tvl1_torch

REFS = Path(__file__).resolve().parents[1] / "tools" / "gpu" / "gpu_refs" / "flows.npz"
COST = Path(__file__).resolve().parent / "results" / "cost_model.json"
SASS = Path(__file__).resolve().parent / "results" / "sass_model_sm90.json"


def count_work(prev: np.ndarray, nxt: np.ndarray) -> dict:
    """Pixels each phase of a batch's solve at SPEC defaults touches, per pair: the inner
    iterations (no_stop, executed, needed) and the warps, medians and compactions around them."""
    counts = {"executed": 0, "needed": 0, "warp": 0, "median": 0, "selected": 0, "written_back": 0}
    stops: list[tuple[int, int, int | None]] = []  # per pair and outer iteration: (h, w, iteration it stopped after)
    errors: list[torch.Tensor] = []  # the current outer iteration's (n,) errors, one per inner iteration
    solver_cls, working_cls = solver_module._Solver, solver_module._Working
    originals = (solver_cls.iterate, solver_cls.warp, solver_module._median, working_cls.drop,
                 working_cls.write_back, solver_module._inner_iterations)
    iterate, warp, median, drop, write_back, inner_iterations = originals

    def px(t: torch.Tensor) -> int:
        return t.shape[0] * t.shape[-2] * t.shape[-1]

    def counted_iterate(solver, u, *rest):  # _Solver.iterate(u, px, py, consts[, active])
        active = rest[3] if len(rest) > 3 else None
        counts["executed"] += px(u)
        counts["needed"] += px(u) if active is None else int(active.sum()) * u.shape[-2] * u.shape[-1]
        err = iterate(solver, u, *rest)
        errors.append(err.clone())
        return err

    def counted_inner_iterations(solver, work, scaled_eps):
        errors.clear()
        out = inner_iterations(solver, work, scaled_eps)
        below = torch.stack(errors) <= scaled_eps  # (iterations, n)
        h, w = work.state[0].shape[-2:]
        stops.extend((h, w, int(col.nonzero()[0]) + 1 if col.any() else None) for col in below.T)
        return out

    def counted_warp(solver, *frames_and_flow):  # _Solver.warp(i0, i1, i1x, i1y, u)
        counts["warp"] += px(frames_and_flow[-1])
        return warp(solver, *frames_and_flow)

    def counted_median(solver, u):
        counts["median"] += px(u)
        return median(solver, u)

    def counted_drop(work, keep):
        done = drop(work, keep)
        counts["selected"] += px(work.state[0])
        return done

    def counted_write_back(work):
        if work.idx is not None:
            counts["written_back"] += px(work.state[0])
        return write_back(work)

    solver_cls.iterate, solver_cls.warp, solver_module._median = counted_iterate, counted_warp, counted_median
    working_cls.drop, working_cls.write_back = counted_drop, counted_write_back
    solver_module._inner_iterations = counted_inner_iterations
    try:
        tvl1_torch(torch.from_numpy(prev).float(), torch.from_numpy(nxt).float(), early_stop="masked", impl="eager")
    finally:
        (solver_cls.iterate, solver_cls.warp, solver_module._median, working_cls.drop, working_cls.write_back,
         solver_module._inner_iterations) = originals
    b, h, w = prev.shape
    p = TVL1Params()
    levels = sum(hh * ww for hh, ww in pyramid_sizes(h, w, p.nscales, p.scale_step))
    no_stop = levels * p.warps * p.outer_iterations * p.inner_iterations
    return {"pairs": b, "no_stop": no_stop, **{k: v / b for k, v in counts.items()}, "stops": stops}


def budget(row: dict, cost: dict) -> dict:
    """Bytes per pair of each phase, per implementation, from cost_model.json's bytes per pixel
    (the compactions: index_select of u, p and the constants in and out, 80 B, and index_copy of
    u, p back, 48 B, with C = 2). The Triton kernels skip stopped pairs, so they pay "needed";
    eager's masked mode pays "executed". Memory-bound pairs/s at the datasheet bandwidths."""
    inner, median, warp = cost["inner_iteration"], cost["median"], cost["warp"]
    shapes = {"eager": ("executed", inner["old_eager"], median["eager"], warp["eager"]),
              "triton": ("needed", inner["new_triton"], median["triton"], warp["triton"]),
              "triton-tiles": ("needed", inner["new_triton_tiles"], median["triton"], warp["triton"]),
              "triton-strips": ("needed", inner["new_triton_strips"], median["triton"], warp["triton"])}
    out = {}
    for impl, (paid, it, med, wp) in shapes.items():
        phases = {"inner": row[paid] * it["bytes_per_px"], "warp": row["warp"] * wp["bytes_per_px"],
                  "median": row["median"] * med["bytes_per_px"],
                  "compaction": row["selected"] * 80 + row["written_back"] * 48}
        total = sum(phases.values())
        out[impl] = {"bytes_per_pair": round(total), "shares": {k: round(v / total, 3) for k, v in phases.items()},
                     **{f"memory_bound_pairs_per_s_{name}": round(bw / total) for name, bw in BANDWIDTH.items()}}
    return out


def launch_shapes(row: dict, sass: dict, other_bytes: float) -> list:
    """Per launch shape of the fused kernel (the sass model's), what a pair costs once stops inside
    a launch are paid for: a pair that stops after inner iteration t computes to the end of its
    launch, then has t mod steps steps applied again one by one. Bytes as sass_model counts them
    (state and constants once per launch, a tile's edge rows or a strip's edge columns again),
    instructions from its SASS;
    the predicted rate is the slower of the issue and the memory limit, the phases around the
    inner iterations (``other_bytes``) added to the memory (a model)."""
    from flowkit.flow.triton_tvl1 import FusedInner

    iterations = TVL1Params().inner_iterations
    instructions_per_s = SM90["sms"] * SM90["schedulers"] * SM90["clock_hz"]  # warp instructions issued
    out = []
    for shape in [*sass["defaults"].values(), *sass["shapes"]]:
        steps = shape["steps"]
        fused = FusedInner(l_t=1.0, theta=1.0, taut=1.0, steps=steps, rows=shape.get("rows"), strip=shape.get("strip"),
                           prefetch=shape.get("prefetch", False))
        computed = moved = 0.0
        for h, w, stop in row["stops"]:
            hw = h * w
            reread = {k: fused.read_share(k, h, w) for k in (1, steps)}
            t = iterations if stop is None else stop
            launches = -(-t // steps)
            redo = t % steps if stop is not None else 0
            computed += hw * (launches * steps + redo)
            moved += hw * (launches * (40 * reread[steps] + 24) + redo * (40 * reread[1] + 24))
        pairs = row["pairs"]
        computed, moved = computed / pairs, moved / pairs
        issue_s = computed * shape["warp_instructions_per_px_iteration"] / instructions_per_s
        entry = {k: shape[k] for k in ("steps", "block", "rows", "strip", "num_warps", "prefetch") if k in shape}
        entry.update({"px_iterations_computed": round(computed), "inner_bytes": round(moved),
                      "spills": shape["stack_bytes"] > 0})
        for name, bandwidth in BANDWIDTH.items():
            entry[f"model_pairs_per_s_{name}"] = round(1 / max(issue_s, (moved + other_bytes) / bandwidth))
        out.append(entry)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refs", type=Path, default=REFS)
    parser.add_argument("--pairs-per-s", type=float)
    parser.add_argument("--bytes-per-px", type=float, default=64.0)
    args = parser.parse_args()
    refs = np.load(args.refs)
    cost = json.loads(COST.read_text())
    sass = json.loads(SASS.read_text())
    torch.set_num_threads(2)
    out = {}
    for group in sorted(set(refs["group"].tolist())):
        sel = refs["group"] == group
        row = count_work(refs["prev"][sel], refs["nxt"][sel])
        row["executed_share_of_no_stop"] = row["executed"] / row["no_stop"]
        row["wasted_share_of_executed"] = 1 - row["needed"] / row["executed"]
        if args.pairs_per_s:
            row["implied_bytes_per_s"] = row["executed"] * args.bytes_per_px * args.pairs_per_s
        row["budget"] = budget(row, cost)
        triton = row["budget"]["triton"]
        other = triton["bytes_per_pair"] * (1 - triton["shares"]["inner"])
        row["launch_shapes"] = launch_shapes(row, sass, other)
        row["stopped_after"] = dict(sorted(Counter(t for _, _, t in row.pop("stops") if t is not None).items()))
        out[group] = row
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
