"""End-to-end pairs/s of impl "triton" with blocks of 512 pixels against 256, on the 16 bench pairs.

gpu_check.py's inner_kernel section found blocks of 256 faster for the kernel alone on an H200;
this checks the whole solve at B = 1024 and 4096, each size twice, and that the flows are equal.
On a GPU machine, with benchmarks/gpu_refs carried:  python3 benchmarks/gpu_triton_block.py OUT.json
"""

import json
import sys
import time

import numpy as np
import torch

sys.path.insert(0, ".")
import flowkit.flow.torch_tvl1 as tt  # noqa: E402

z = np.load("benchmarks/gpu_refs/flows.npz")
bench = z["group"].astype(str) == "bench"
a, b = z["prev"][bench], z["nxt"][bench]
out = {"device": torch.cuda.get_device_name()}
flows = {}
for block in (512, 256, 512, 256):
    tt.TRITON_LAUNCH["triton"] = {"block": block}
    tt.tvl1_torch(torch.from_numpy(a[:2]).cuda(), torch.from_numpy(b[:2]).cuda(), impl="triton")
    for n in (1024, 4096):
        ta = torch.from_numpy(np.tile(a, (n // len(a), 1, 1))).cuda()
        tb = torch.from_numpy(np.tile(b, (n // len(b), 1, 1))).cuda()
        torch.cuda.synchronize()
        t = time.perf_counter()
        f = tt.tvl1_torch(ta, tb, impl="triton")
        torch.cuda.synchronize()
        s = time.perf_counter() - t
        out.setdefault(f"block{block}_B{n}_pairs_per_s", []).append(round(n / s, 1))
        flows[block] = f
out["max_abs_256_vs_512"] = float((flows[256] - flows[512]).abs().max())
print(json.dumps(out))
json.dump(out, open(sys.argv[1], "w"), indent=1)
