"""Where does a pair's TV-L1 flow start to depend on its batch on CUDA? A bisection over the solver's loops.

``tools/gpu/engine_check.py`` found every single step of the torch solver batch-invariant on an
H200 (bitwise), yet a whole SPEC solve of a pair alone differs from the same pair in a batch of 8 by
up to 11.5 px (on the CPU it is bitwise equal). This runs the solve with one loop enabled at a time
(pyramid scales, warps, outer and inner iterations), for both implementations, and reports the
largest difference, so that the first configuration that differs names the culprit.

    python3 benchmarks/gpu_batch_bisect.py --out gpu_batch_bisect.json     # on a GPU machine
    python benchmarks/gpu_batch_bisect.py --out /tmp/bisect.json           # CPU: everything equal
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIGS = {
    "1 iteration": dict(nscales=1, warps=1, outer_iterations=1, inner_iterations=1),
    "inner 30": dict(nscales=1, warps=1, outer_iterations=1, inner_iterations=30),
    "outer 10 x inner 30": dict(nscales=1, warps=1, outer_iterations=10, inner_iterations=30),
    "warps 5, outer 1, inner 1": dict(nscales=1, warps=5, outer_iterations=1, inner_iterations=1),
    "scales 5, 1 iteration": dict(nscales=5, warps=1, outer_iterations=1, inner_iterations=1),
    "scales 5, inner 30": dict(nscales=5, warps=1, outer_iterations=1, inner_iterations=30),
    "no stopping (epsilon 0), SPEC loops": dict(epsilon=0.0),
    "SPEC defaults": {},
}


def main(argv=None) -> None:
    import torch

    from flowkit.flow.torch_tvl1 import resolve_impl, tvl1_torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_batch_bisect.json"))
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    g = torch.Generator().manual_seed(0)
    base = torch.rand(8, 136, 136, generator=g) * 255
    smooth = torch.nn.functional.avg_pool2d(base[:, None], 5, 1)[:, 0]  # (8, 132, 132), textured
    prev = smooth[:, 2:130, 2:130].round().to(torch.uint8).to(device)
    nxt = smooth[:, 3:131, 1:129].round().to(torch.uint8).to(device)
    fastest = resolve_impl("auto", device)  # a Triton impl on CUDA when triton loads
    impls = ["eager"] + ([fastest] if fastest != "eager" else [])
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools" / "gpu"))
    from provenance import provenance

    report = {**provenance(device, solves_per_config=1), "pairs": 8, "results": {}}
    for impl in impls:
        for name, params in CONFIGS.items():
            batch = tvl1_torch(prev, nxt, impl=impl, **params)
            alone = tvl1_torch(prev[:1], nxt[:1], impl=impl, **params)
            diff = (batch[:1] - alone).abs()
            report["results"][f"{impl}: {name}"] = {"equal": bool(diff.max() == 0), "max_abs_px": float(diff.max())}
            print(impl, name, report["results"][f"{impl}: {name}"], flush=True)
            args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
