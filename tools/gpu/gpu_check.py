"""One-shot GPU check of the torch TV-L1 solver: accuracy, determinism, speed and memory, as JSON.

GPU time comes in runs of at most 10 minutes, on machines with torch and numpy but no OpenCV
contrib, no zarr and no network, so everything it needs travels in one file made on the CPU by
tools/gpu/make_gpu_refs.py (OpenCV's and the CPU torch solver's flows for 75 face pairs). In one
run it writes, for each implementation ("eager", and when triton loads "triton", "triton-tiles" and
"triton-strips"):

- ``accuracy``: end-point error (EPE) per pair against OpenCV and against the CPU torch solver,
  with summaries per group (k6, k18, bench);
- ``determinism``: whether a second solve is bitwise equal, and B=1 against in-batch results;
- ``median``: time of the median step alone, old (unfold + torch.median) against the selection
  network (eager) and the Triton kernel;
- ``warp``: time of the warp step alone, eager against the Triton kernel, and their difference;
- ``throughput``: pairs/s at B = 64, 256, 1024, 4096 (SPEC defaults; a size whose predicted time
  does not fit the remaining budget is skipped and says so), with the peak memory per pixel;
- ``inner_kernel``: the fused inner kernel alone, every pair going (no stop), for 1, 2 and 3
  inner iterations per launch and several block sizes: time per iteration and pair, the DRAM
  bandwidth that implies from the bytes the kernel must move (64 B per pixel and launch with
  C = 2), and the compiled kernel's registers and spills. It says whether the kernel runs at the
  memory floor and which launch shape to make the default; the strip shapes, several steps per
  launch with warp shuffles, are the candidates for >= 2,000 pairs/s on an H100. Then the Triton
  implementations' launches on 8 images of 1088 x 2040, which triton-tiles cuts into column tiles
  and triton-strips into strips, and their differences from triton;
- ``profile``: the top kernels of one solve (B = 64 eager, B = 1024 Triton), with their launch
  counts and time shares.

The JSON is rewritten after every section, so a run cut short keeps what it measured.

Run on a GPU (see README, "Measuring on a GPU"):
    python tools/gpu/gpu_check.py --refs tools/gpu/gpu_refs/flows.npz --out gpu_check.json
and on the CPU, with tiny sizes, to exercise the code (tests/test_flow_torch.py does):
    python tools/gpu/gpu_check.py --smoke --out /tmp/gpu_check_smoke.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # provenance
sys.path.insert(1, str(ROOT / "tools" / "kernels"))  # sass_model.py, the kernels' instruction model
SPEC: dict = {}  # SPEC 2 defaults
SMOKE = dict(nscales=1, warps=1, outer_iterations=1, inner_iterations=2)
BATCHES = (64, 256, 1024, 4096)


def _setup_triton_for_cpu(smoke: bool) -> None:
    # On the CPU the Triton kernels run in Triton's interpreter, which must be chosen before
    # triton is imported.
    import torch

    if smoke and not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")


def unshuffle_bytes(planes: np.ndarray) -> np.ndarray:
    """uint8 (4, ...) byte planes (make_gpu_refs.shuffle_bytes) -> float32 (...)."""
    return np.ascontiguousarray(np.moveaxis(planes, 0, -1)).view("<f4")[..., 0]


def load_refs(path: Path | None, smoke: bool) -> dict:
    """The reference pairs and flows; synthetic pairs without flows when there is no file."""
    if path is not None and path.is_file():
        z = np.load(path)
        refs = {"prev": z["prev"], "nxt": z["nxt"], "group": z["group"].astype(str),
                "opencv": unshuffle_bytes(z["opencv"]), "torch_cpu": unshuffle_bytes(z["torch_cpu"]),
                "meta": json.loads(str(z["meta"]))}
    else:
        rng = np.random.default_rng(0)
        base = rng.integers(0, 256, (8, 40, 40)).astype(np.float32)
        smooth = (base + np.roll(base, 1, 1) + np.roll(base, 1, 2) + np.roll(base, (1, 1), (1, 2))) / 4
        refs = {"prev": smooth[:, 4:36, 4:36].astype(np.uint8), "nxt": smooth[:, 5:37, 3:35].astype(np.uint8),
                "group": np.array(["synthetic"] * 8), "opencv": None, "torch_cpu": None, "meta": {"synthetic": True}}
    if smoke:  # tiny: 4 pairs, 24x24 crops (the flows cropped too: their EPE means nothing then)
        crop = lambda a: None if a is None else a[:4, ..., :24, :24]  # noqa: E731
        refs = {k: (crop(v) if k not in ("meta", "group") else v) for k, v in refs.items()}
        refs["group"] = refs["group"][:4]
    return refs


class Check:
    """Runs the sections against a time budget and keeps the report."""

    def __init__(self, args):
        import torch

        self.torch = torch
        self.args = args
        self.t0 = time.perf_counter()
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.params = SMOKE if args.smoke else SPEC
        self.report: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "smoke": args.smoke,
                             "params": self.params or "SPEC defaults", "sections_seconds": {}}
        from flowkit.flow.torch_tvl1 import TRITON_LAUNCH, resolve_impl

        self.impls = ["eager"]
        try:
            if resolve_impl("triton", self.device) == "triton":
                self.impls += list(TRITON_LAUNCH)
        except Exception as err:  # noqa: BLE001 - a report, not a crash: say why triton is out
            self.report["triton_unavailable"] = str(err)

    def left(self) -> float:
        return self.args.budget_s - (time.perf_counter() - self.t0)

    def sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def solve(self, prev, nxt, impl: str):
        from flowkit.flow.torch_tvl1 import tvl1_torch

        return tvl1_torch(prev, nxt, impl=impl, **self.params)

    def timed(self, fn) -> float:
        self.sync()
        start = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - start

    def save(self) -> None:
        self.report["elapsed_s"] = round(time.perf_counter() - self.t0, 2)
        tmp = self.args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.report, indent=2))
        tmp.replace(self.args.out)

    def per_impl(self, fn, impls=None) -> dict:
        """{impl: fn(impl)} over the implementations (``impls``, default all, in that order); one
        that raises is reported, not fatal."""
        out = {}
        for impl in self.impls if impls is None else impls:
            try:
                out[impl] = fn(impl)
            except Exception as err:  # noqa: BLE001 - one implementation failing must not lose the others
                out[impl] = {"error": f"{type(err).__name__}: {err}"}
        return out

    def section(self, name: str, fn) -> None:
        start = time.perf_counter()
        try:
            self.report[name] = fn()
        except Exception as err:  # noqa: BLE001 - one failing section must not lose the others
            self.report[name] = {"error": f"{type(err).__name__}: {err}"}
        self.report["sections_seconds"][name] = round(time.perf_counter() - start, 2)
        self.save()
        print(f"{name}: {self.report['sections_seconds'][name]} s", file=sys.stderr)


def repeated(frames: np.ndarray, n: int, device):
    """The first n of ``frames`` (m, H, W) repeated over and over, as a tensor on ``device``."""
    import torch

    return torch.from_numpy(np.tile(frames, (-(-n // len(frames)), 1, 1))[:n]).to(device)


def _epe(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(((a - b) ** 2).sum(1)).mean(axis=(1, 2))


def _summary(x: np.ndarray, groups: np.ndarray) -> dict:
    return {g: {"mean": float(x[groups == g].mean()), "max": float(x[groups == g].max())} for g in np.unique(groups)}


#: Timed runs per figure, after a first (compiling) run: the median is kept.
REPEATS = {"median": 5, "warp": 5, "throughput": 1, "inner_kernel": 3}


def environment(check: Check) -> dict:
    from provenance import provenance

    return {**provenance(check.device, **REPEATS), "numpy": np.__version__, "impls": check.impls,
            "machine": platform.machine()}


def accuracy(check: Check, refs: dict) -> dict:
    torch = check.torch
    prev = torch.from_numpy(refs["prev"]).to(check.device)
    nxt = torch.from_numpy(refs["nxt"]).to(check.device)

    def one(impl: str) -> dict:
        flow = check.solve(prev, nxt, impl).cpu().numpy()
        row = {}
        for ref in ("opencv", "torch_cpu"):
            if refs[ref] is not None:
                e = _epe(flow, refs[ref])
                row[f"epe_vs_{ref}"] = {"per_pair": e.round(6).tolist(), "by_group": _summary(e, refs["group"])}
        return row

    return {"pairs": int(len(prev)), "groups": refs["group"].tolist(), **check.per_impl(one)}


def determinism(check: Check, refs: dict) -> dict:
    torch = check.torch
    n = min(8, len(refs["prev"]))
    prev = torch.from_numpy(refs["prev"][:n]).to(check.device)
    nxt = torch.from_numpy(refs["nxt"][:n]).to(check.device)

    def one(impl: str) -> dict:
        first, again = check.solve(prev, nxt, impl), check.solve(prev, nxt, impl)
        alone = torch.cat([check.solve(prev[i : i + 1], nxt[i : i + 1], impl) for i in range(min(n, 3))])
        in_batch = first[: len(alone)]
        return {"repeat_bitwise_equal": bool(first.equal(again)),
                "b1_vs_batch_bitwise_equal": bool(alone.equal(in_batch)),
                "b1_vs_batch_max_abs_px": float((alone - in_batch).abs().max())}

    return check.per_impl(one)


def _old_median(x, ksize: int = 5):
    import torch.nn.functional as F

    b, c, h, w = x.shape
    r = ksize // 2
    padded = F.pad(x, (r, r, r, r), mode="replicate")
    return padded.unfold(2, ksize, 1).unfold(3, ksize, 1).reshape(b, c, h, w, ksize * ksize).median(dim=-1).values


def median_timing(check: Check) -> dict:
    from flowkit.flow.median import median_blur_torch

    torch = check.torch
    b, side = (4, 24) if check.args.smoke else (256, 128)
    g = torch.Generator().manual_seed(0)
    flow = torch.randn(b, 2, side, side, generator=g).to(check.device)
    fns = {"old_unfold_median": _old_median, "eager_network": lambda x: median_blur_torch(x, 5)}
    if "triton" in check.impls:
        from flowkit.flow.triton_tvl1 import median_blur_triton

        fns["triton"] = lambda x: median_blur_triton(x, 5)
    ref = fns["eager_network"](flow)
    out = {"batch": b, "size": side}
    for name, fn in fns.items():
        same = bool(fn(flow).equal(ref))
        times = [check.timed(lambda f=fn: f(flow)) for _ in range(REPEATS["median"])]
        out[name] = {"median_ms": round(float(np.median(times)) * 1e3, 3), "equal_to_network": same}
    return out


def warp_timing(check: Check) -> dict:
    """The warp step alone (bicubic remap of I1 and its gradient, then the constants), eager
    against the Triton kernel, on B random 128x128 pairs and flows of a few pixels."""
    if "triton" not in check.impls:
        return {"skipped": "triton does not load"}
    from flowkit.flow.params import TVL1Params
    from flowkit.flow.torch_tvl1 import _Solver, centered_gradient

    torch = check.torch
    b, side = (4, 24) if check.args.smoke else (256, 128)
    g = torch.Generator().manual_seed(0)
    i0, i1 = (torch.rand(b, side, side, generator=g).to(check.device) * 255 for _ in range(2))
    u = (torch.randn(b, 2, side, side, generator=g) * 3).to(check.device)
    i1x, i1y = centered_gradient(i1)
    out = {"batch": b, "size": side}
    results = {}
    for impl in ("eager", "triton"):
        solver = _Solver(TVL1Params(), "masked", False, impl)
        results[impl] = solver.warp(i0, i1, i1x, i1y, u)
        times = [check.timed(lambda s=solver: s.warp(i0, i1, i1x, i1y, u)) for _ in range(REPEATS["warp"])]
        out[impl] = {"median_ms": round(float(np.median(times)) * 1e3, 3)}
    pairs = zip(results["triton"], results["eager"])
    out["triton"]["max_abs_vs_eager"] = [float((a - r).abs().max()) for a, r in pairs]
    return out


def throughput(check: Check, refs: dict) -> dict:
    torch = check.torch
    bench = refs["group"] == "bench"
    if not bench.any():
        bench = np.ones(len(refs["group"]), bool)
    a, b = refs["prev"][bench], refs["nxt"][bench]
    batches = (2, 4) if check.args.smoke else BATCHES

    def one(impl: str) -> list:
        rows, rate = [], None
        check.solve(torch.from_numpy(a[:2]).to(check.device), torch.from_numpy(b[:2]).to(check.device), impl)  # warm-up
        for n in batches:
            if rate is not None and n / rate > check.left() - 30:
                rows.append({"batch": n, "skipped": f"predicted {n / rate:.0f} s, {check.left():.0f} s left"})
                continue
            ta, tb = repeated(a, n, check.device), repeated(b, n, check.device)
            if check.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            seconds = check.timed(lambda: check.solve(ta, tb, impl))
            rate = n / seconds
            row = {"batch": n, "seconds": round(seconds, 3), "pairs_per_s": round(rate, 1)}
            if check.device.type == "cuda":
                peak = torch.cuda.max_memory_allocated() - base
                row["peak_bytes_per_px"] = round(peak / (n * ta.shape[1] * ta.shape[2]), 1)
            rows.append(row)
        return rows

    return check.per_impl(one)


#: Launch shapes the inner_kernel section times after the Triton implementations' defaults
#: (``sass_model.default_shapes``): the alternatives benchmarks/sass_model.py ranks (steps per
#: launch, and block pixels, tile rows or strip columns, and warps).
OTHER_SHAPES = [
    {"steps": 1, "block": 512, "num_warps": 4}, {"steps": 1, "block": 128, "num_warps": 4},
    {"steps": 2, "block": 128, "num_warps": 4}, {"steps": 2, "rows": 16, "num_warps": 8},
    {"steps": 2, "rows": 16, "num_warps": 16}, {"steps": 3, "rows": 16, "num_warps": 8},
    {"steps": 2, "rows": 8, "num_warps": 4}, {"steps": 3, "rows": 32, "num_warps": 32},
    {"steps": 1, "rows": 16, "num_warps": 8},
    {"steps": 3, "strip": 32, "num_warps": 1}, {"steps": 6, "strip": 32, "num_warps": 1},
    {"steps": 4, "strip": 64, "num_warps": 1}, {"steps": 5, "strip": 64, "num_warps": 1},
    {"steps": 8, "strip": 64, "num_warps": 2}, {"steps": 5, "strip": 32, "num_warps": 1, "prefetch": True},
]
SMOKE_SHAPES = [{"steps": 1, "block": 512, "num_warps": 4}, {"steps": 2, "rows": 8, "num_warps": 4},
                {"steps": 2, "strip": 32, "num_warps": 1}]


#: The wide-image case: SAMM-LV's frames (1088 x 2040), 8 of them, about the pixels of 1,024 crops.
WIDE = (8, 1088, 2040)
SMOKE_WIDE = (1, 12, 150)


def _inner_case(check: Check, solver, n: int, h: int, w: int) -> tuple:
    """A random mid-solve case on the device: ((u, px, py) each (n, 2, h, w), the warp constants)."""
    from flowkit.flow.torch_tvl1 import centered_gradient

    torch = check.torch
    g = torch.Generator().manual_seed(0)
    i0, i1 = (torch.rand(n, h, w, generator=g).to(check.device) * 255 for _ in range(2))
    state = (torch.randn(n, 2, h, w, generator=g).to(check.device),
             *(torch.randn(n, 2, h, w, generator=g).to(check.device) * 0.2 for _ in range(2)))
    return state, solver.warp(i0, i1, *centered_gradient(i1), state[0])


def stepping_bytes(launches: list) -> int:
    """Bytes read and written by the inner launches of a ``count_launches`` log that step the state:
    each is followed by the stop kernel. The redo launches of ``_settle`` (inner launches not
    followed by a stop) move only the pairs that stopped inside a launch, none when every pair goes.

    >>> stepping_bytes([("inner2", 10, 5), ("stop", 1, 1), ("inner1", 7, 3), ("inner1", 7, 3), ("settle", 4, 4)])
    15
    """
    return sum(read + written for (name, read, written), after in zip(launches, launches[1:])
               if name.startswith("inner") and after[0] == "stop")


def _time_launch(check: Check, solver, launch: dict, case: tuple, iterations: int) -> tuple[dict, tuple | None]:
    """The fused inner kernel of ``launch`` (FusedInner's arguments) on ``case``, every pair going:
    timed ``REPEATS["inner_kernel"]`` times after a first (compiling) run, the median kept. Returns
    (its row, the state it ends in; None if it failed).

    ``implied_dram_gb_per_s`` counts the bytes of the launches that step the state (each followed by
    the stop kernel), not the redo launches of ``_settle``: with every pair going they find no
    pair to redo and move nothing, though each is declared with a whole step's bytes."""
    from flowkit.flow.triton_tvl1 import FusedInner, count_launches

    state0, consts = case
    n, _, h, w = state0[0].shape
    fused = FusedInner(l_t=solver.l_t, theta=solver.p.theta, taut=solver.taut, **launch)
    try:
        with count_launches() as launches:  # the first run compiles; its bytes as cost_model counts them
            fused.run(tuple(t.clone() for t in state0), consts, -1.0, iterations)
        times = []
        for _ in range(REPEATS["inner_kernel"]):
            state = tuple(t.clone() for t in state0)
            times.append(check.timed(lambda f=fused, s=state: f.run(s, consts, -1.0, iterations)))
    except Exception as err:  # noqa: BLE001 - one launch shape that fails to compile must not end the section
        return {**launch, "error": f"{type(err).__name__}: {err}"}, None
    per_iteration = float(np.median(times)) / iterations
    moved = stepping_bytes(launches) / iterations
    return {**launch, "us_per_iteration": round(per_iteration * 1e6, 2),
            "ns_per_pair_iteration": round(per_iteration / n * 1e9, 3),
            "ps_per_px_iteration": round(per_iteration / (n * h * w) * 1e12, 2),
            "implied_dram_gb_per_s": round(moved / per_iteration / 1e9, 1),
            "registers": getattr(fused.compiled, "n_regs", None),
            "spills": getattr(fused.compiled, "n_spills", None)}, state


def _max_abs(a: tuple, b: tuple) -> float:
    return float(max((x - y).abs().max() for x, y in zip(a, b)))


def inner_kernel(check: Check) -> dict:
    """The fused inner kernel alone: 30 iterations (one outer iteration) on n random 128x128 states
    with every pair going, per launch shape. Then the Triton implementations' launches on images
    wider than a tile (``wide_images``: triton-tiles on column tiles, triton-strips on many strips),
    their flows compared with triton's."""
    if "triton" not in check.impls:
        return {"skipped": "triton does not load"}
    from sass_model import default_shapes

    from flowkit.flow.params import TVL1Params
    from flowkit.flow.torch_tvl1 import TRITON_LAUNCH, _Solver

    n, side, iterations = (2, 24, 2) if check.args.smoke else (1024, 128, 30)
    solver = _Solver(TVL1Params(), "masked")
    case = _inner_case(check, solver, n, side, side)
    reference = None
    rows = []
    for shape in SMOKE_SHAPES if check.args.smoke else [*default_shapes().values(), *OTHER_SHAPES]:
        if check.left() < 60:
            rows.append({**shape, "skipped": "budget"})
            continue
        row, state = _time_launch(check, solver, shape, case, iterations)
        if state is not None:
            reference = state if reference is None else reference
            row["max_abs_vs_first_shape"] = _max_abs(state, reference)
        rows.append(row)
    del case, reference
    n_wide, h, w = SMOKE_WIDE if check.args.smoke else WIDE
    wide = {"pairs": n_wide, "height": h, "width": w, "rows": []}
    if check.left() < 60:
        wide["skipped"] = "budget"
    else:
        case = _inner_case(check, solver, n_wide, h, w)
        states = {}
        for impl, launch in TRITON_LAUNCH.items():
            row, states[impl] = _time_launch(check, solver, launch, case, iterations)
            wide["rows"].append({"impl": impl, **row})
        for impl, name in (("triton-tiles", "tiles_max_abs_vs_blocks"), ("triton-strips", "strips_max_abs_vs_blocks")):
            if states[impl] is not None and states["triton"] is not None:
                wide[name] = _max_abs(states[impl], states["triton"])
    return {"pairs": n, "size": side, "iterations": iterations,
            "note": "the time includes the stop kernel after each launch and the settle copy", "rows": rows,
            "wide_images": wide}


#: How much slower a solve runs under the profiler. On an H200, eager's B = 64 solve took
#: 3.1 s untraced and about 110 s traced: 35x, rounded up.
PROFILER_SLOWDOWN = 40


def profile(check: Check, refs: dict) -> dict:
    """The top kernels of one solve per implementation: the Triton paths first, then eager, whose
    trace is the longest (about 100 s at B = 64); one predicted to overrun the budget is skipped."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    n = 4 if check.args.smoke else 64
    cuda = check.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])

    def one(impl: str) -> dict:
        # Eager launches ~4,000 kernels a pair, too many to trace at a large batch; the Triton
        # paths are profiled where their throughput is measured, so the shares mean the same.
        m = n if impl == "eager" or check.args.smoke else 1024
        rows = check.report.get("throughput", {}).get(impl)
        untraced = [r["seconds"] for r in rows or () if isinstance(r, dict) and r.get("batch") == m and "seconds" in r]
        if untraced and PROFILER_SLOWDOWN * untraced[0] > check.left():
            return {"batch": m, "skipped": f"predicted {PROFILER_SLOWDOWN * untraced[0]:.0f} s traced, "
                                           f"{check.left():.0f} s left"}
        pa, pb = repeated(refs["prev"], m, check.device), repeated(refs["nxt"], m, check.device)
        with torch_profile(activities=activities) as prof:
            check.solve(pa, pb, impl)
            check.sync()
        events = [e for e in prof.key_averages() if (e.device_type.name == "CUDA") == cuda]
        key = "device_time_total" if cuda else "self_cpu_time_total"
        total = sum(getattr(e, key) for e in events) or 1
        top = sorted(events, key=lambda e: getattr(e, key), reverse=True)[:12]
        return {"batch": m, "kernels_launched": int(sum(e.count for e in events)),
                "top": [{"name": e.key[:80], "count": int(e.count), "share": round(getattr(e, key) / total, 4)}
                        for e in top]}

    return check.per_impl(one, sorted(check.impls, key=lambda impl: impl == "eager"))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refs", type=Path, default=ROOT / "tools" / "gpu" / "gpu_refs" / "flows.npz")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to exercise the code on the CPU")
    parser.add_argument("--budget-s", type=float, default=540.0, help="stop starting new work after this")
    args = parser.parse_args(argv)
    _setup_triton_for_cpu(args.smoke)
    refs = load_refs(args.refs, args.smoke)
    check = Check(args)
    check.report["refs"] = refs["meta"]
    check.section("environment", lambda: environment(check))
    check.section("accuracy", lambda: accuracy(check, refs))
    check.section("determinism", lambda: determinism(check, refs))
    check.section("median", lambda: median_timing(check))
    check.section("warp", lambda: warp_timing(check))
    check.section("throughput", lambda: throughput(check, refs))
    check.section("inner_kernel", lambda: inner_kernel(check))
    check.section("profile", lambda: profile(check, refs))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
