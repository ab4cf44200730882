"""End-to-end pairs/s of Triton launch shapes, on the 16 bench pairs: which shape becomes a default.

gpu_check.py's ``inner_kernel`` times the fused kernel alone, every pair going; this times whole
SPEC-default solves (stops, warps, medians, pyramid included) with each named launch shape put in
``tvl1_torch(launch=...)`` for its implementation, at B = 1024 and 4096, each ``--passes`` times (the first
pass of a shape also compiles what its warm-up did not). Per shape it reports pairs/s, the mean
end-point error against OpenCV on the bench pairs, and how far its flow lies from the first
shape's (largest difference, mean end-point distance, share of pixels more than 1 px apart).
``--compare`` implementations (default: eager) are solved once on the bench pairs and compared
with the first shape the same way, untimed: the spread that rounding alone gives, to read the
shapes' differences against. ``--shapes triton:block=512 triton:block=256`` compares two block sizes.

On a GPU machine, with the reference flows of make_gpu_refs.py beside the code (a few minutes):
    python3 tools/gpu/gpu_launch_shapes.py --out $OUT/launch_shapes.json
On the CPU, tiny and under Triton's interpreter, to exercise the code (a test does):
    python tools/gpu/gpu_launch_shapes.py --smoke --out /tmp/launch_shapes.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools" / "gpu"))  # gpu_check, provenance

#: "triton"'s default, then triton-strips' default, the strip shapes sass_model rates near it, and
#: the default reading each row one row ahead (prefetch=1).
SHAPES = ["triton:block=256", "triton-strips:steps=5,strip=32,num_warps=1",
          "triton-strips:steps=3,strip=32,num_warps=1", "triton-strips:steps=6,strip=32,num_warps=1",
          "triton-strips:steps=4,strip=64,num_warps=1", "triton-strips:steps=5,strip=64,num_warps=1",
          "triton-strips:steps=5,strip=32,num_warps=1,prefetch=1"]
SMOKE = dict(nscales=1, warps=1, outer_iterations=1, inner_iterations=3)
SMOKE_SHAPES = ["triton:block=256", "triton-strips:steps=3,strip=32,num_warps=1"]


def parse_shape(text: str) -> tuple[str, dict]:
    """ "impl:key=value,..." -> (impl, FusedInner's keyword arguments as ints)."""
    impl, _, args = text.partition(":")
    launch = {}
    for item in filter(None, args.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not value.isdigit():
            raise SystemExit(f"a launch shape should read impl:key=int,... got {text!r}")
        launch[key] = int(value)
    return impl, launch


def agreement(flow, first) -> dict:
    """How far (B, 2, H, W) flows lie from ``first``'s, pixel by pixel."""
    end_point = (flow - first).pow(2).sum(1).sqrt()
    return {"max_abs_vs_first_shape": float((flow - first).abs().max()),
            "epe_vs_first_shape_mean": round(float(end_point.mean()), 6),
            "share_over_1px_vs_first_shape": round(float((end_point > 1).float().mean()), 7)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refs", type=Path, default=ROOT / "tools" / "gpu" / "gpu_refs" / "flows.npz")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--shapes", nargs="+", help="impl:key=value,... (FusedInner arguments); default SHAPES")
    parser.add_argument("--batches", nargs="+", type=int, default=[1024, 4096])
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--compare", nargs="*", default=["eager"], help="impls compared untimed with the first shape")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to exercise the code on the CPU")
    args = parser.parse_args(argv)
    import torch

    if args.smoke and not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported
    from gpu_check import _epe, load_refs, repeated  # the GPU acceptance script (sys.path above)

    import flowkit.flow.torch_tvl1 as solver_mod

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    refs = load_refs(args.refs, args.smoke)
    bench = refs["group"] == "bench"
    if not bench.any():
        bench = np.ones(len(refs["group"]), bool)
    a, b = refs["prev"][bench], refs["nxt"][bench]
    opencv = None if refs["opencv"] is None else refs["opencv"][bench]
    params = SMOKE if args.smoke else {}
    batches, passes = ([2], 1) if args.smoke else (args.batches, args.passes)
    texts = args.shapes or (SMOKE_SHAPES if args.smoke else SHAPES)
    shapes = [parse_shape(text) for text in texts]
    from provenance import provenance

    out = {**provenance(device, passes=passes), "pairs": int(len(a)), "batches": batches, "shapes": {}}
    inputs = {n: (repeated(a, n, device), repeated(b, n, device)) for n in batches}  # made once, for every shape
    first = None
    for text, (impl, launch) in zip(texts, shapes):
        if impl not in solver_mod.TRITON_LAUNCH:
            raise SystemExit(f"impl should be one of {', '.join(solver_mod.TRITON_LAUNCH)}, got {impl!r}")
        try:
            row = {"impl": impl, **launch}
            solver_mod.tvl1_torch(torch.from_numpy(a[:2]).to(device), torch.from_numpy(b[:2]).to(device), impl=impl,
                                  launch=launch, **params)  # warm-up: compiles
            for _ in range(passes):
                for n, (ta, tb) in inputs.items():
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    start = time.perf_counter()
                    flow = solver_mod.tvl1_torch(ta, tb, impl=impl, launch=launch, **params)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    row.setdefault(f"B{n}_pairs_per_s", []).append(round(n / (time.perf_counter() - start), 1))
            if opencv is not None:
                m = min(len(flow), len(a))  # the batch's first pairs are the bench pairs
                row["epe_vs_opencv_mean"] = round(float(_epe(flow[:m].cpu().numpy(), opencv[:m]).mean()), 6)
            first = flow[:len(a)] if first is None else first  # the bench pairs (fewer in a smoke run)
            row.update(agreement(flow[:len(first)], first))
        except Exception as err:  # noqa: BLE001 - one shape failing must not lose the others
            row["error"] = f"{type(err).__name__}: {err}"
        out["shapes"][text] = row
        args.out.write_text(json.dumps(out, indent=1))  # kept shape by shape, in case the run is cut short
        print(text, json.dumps(row), file=sys.stderr)
    m = 0 if first is None else len(first)
    ta, tb = torch.from_numpy(a[:m]).to(device), torch.from_numpy(b[:m]).to(device)
    for impl in args.compare if first is not None else []:
        flow = solver_mod.tvl1_torch(ta, tb, impl=impl, **params)
        out.setdefault("compare", {})[impl] = agreement(flow, first)
        args.out.write_text(json.dumps(out, indent=1))
        print(impl, json.dumps(out["compare"][impl]), file=sys.stderr)


if __name__ == "__main__":
    main()
