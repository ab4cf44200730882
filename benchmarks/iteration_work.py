"""Inner-iteration work per pair under OpenCV's stopping rule, counted on the CPU (no timing).

The GPU solver runs the inner iterations of each outer iteration on every pair still going at its
start ("masked": a pair that stops mid-way is frozen, its work wasted) and drops stopped pairs
between outer iterations. This counts, per pair, the pixel-iterations of the inner update:

- ``no_stop``: every iteration at every level (the stopping rule never met);
- ``executed``: what the masked solver runs, so what the GPU pays;
- ``needed``: the iterations before each pair stops, what skipping stopped pairs inside an outer
  iteration would leave.

With ``--pairs-per-s`` (a measured GPU rate) and ``--bytes-per-px`` (the kernel's unique traffic
per pixel-iteration, ``benchmarks/cost_model.py``), it prints the memory traffic that rate implies.
Input: the face pairs of ``benchmarks/make_gpu_refs.py`` (groups k6, k18 and the 16 "bench" pairs
that ``gpu_check.py`` times).

    python benchmarks/iteration_work.py [--refs benchmarks/gpu_refs/flows.npz] [--pairs-per-s 1007 --bytes-per-px 64]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import flowkit.flow.torch_tvl1 as solver_module
from flowkit.flow.params import TVL1Params
from flowkit.flow.pyramid import pyramid_sizes
from flowkit.flow.torch_tvl1 import tvl1_torch

REFS = Path(__file__).resolve().parent / "gpu_refs" / "flows.npz"


def count_work(prev: np.ndarray, nxt: np.ndarray) -> dict:
    """Pixel-iterations per pair (no_stop, executed, needed) for one batch at SPEC defaults."""
    counts = {"executed": 0, "needed": 0}
    iterate = solver_module._Solver.iterate

    def counted(solver, u, *rest):  # _Solver.iterate(u, px, py, consts[, active])
        n, _, h, w = u.shape
        active = rest[3] if len(rest) > 3 else None
        counts["executed"] += n * h * w
        counts["needed"] += (n if active is None else int(active.sum())) * h * w
        return iterate(solver, u, *rest)

    solver_module._Solver.iterate = counted
    try:
        tvl1_torch(torch.from_numpy(prev).float(), torch.from_numpy(nxt).float(), early_stop="masked", impl="eager")
    finally:
        solver_module._Solver.iterate = iterate
    b, h, w = prev.shape
    p = TVL1Params()
    levels = sum(hh * ww for hh, ww in pyramid_sizes(h, w, p.nscales, p.scale_step))
    no_stop = levels * p.warps * p.outer_iterations * p.inner_iterations
    return {"pairs": b, "no_stop": no_stop, "executed": counts["executed"] / b, "needed": counts["needed"] / b}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refs", type=Path, default=REFS)
    parser.add_argument("--pairs-per-s", type=float)
    parser.add_argument("--bytes-per-px", type=float, default=64.0)
    args = parser.parse_args()
    refs = np.load(args.refs)
    torch.set_num_threads(2)
    out = {}
    for group in sorted(set(refs["group"].tolist())):
        sel = refs["group"] == group
        row = count_work(refs["prev"][sel], refs["nxt"][sel])
        row["executed_share_of_no_stop"] = row["executed"] / row["no_stop"]
        row["wasted_share_of_executed"] = 1 - row["needed"] / row["executed"]
        if args.pairs_per_s:
            row["implied_bytes_per_s"] = row["executed"] * args.bytes_per_px * args.pairs_per_s
        out[group] = row
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
