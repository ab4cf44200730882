"""Why flowkit uses neither kornia nor numba: optical strain and the other CPU steps, timed.

Run:
    pytest benchmarks/bench_strain.py --benchmark-only -s \
        --benchmark-json=benchmarks/results/strain_kornia_cpu.json

Two questions, one file (about 50 s on 2 cores):

- kornia: ``test_strain_flowkit_vs_kornia`` computes the optical strain of the same (64, 2, 128, 128)
  float32 flows with ``flowkit.optical_strain`` (tensor slicing) and with ``kornia.filters.filter2d``
  (2x2 forward-difference kernels, ``padding="valid"``, then the last row and column replicated as
  flowkit does), checks that the two agree, and times them in alternating rounds (the machine may be
  shared: alternation spreads load changes over both). Medians and their ratio go to ``extra_info``.
  Skipped, with a reason, where kornia is not installed (it is no dependency of the project).
- numba: ``test_feature_step_cpu`` times each CPU step of SPEC 3-4 (strain, head motion, eye mask,
  ROI, and ``features_from_flow``, all four chained) on the same flows, and ``test_tvl1_cpu`` the
  TV-L1 solve that produces such flows (OpenCV, the reference, and the torch solver) on real face
  pairs. All at one thread, the layout of ``flowkit extract``'s OpenCV workers; per-pair medians
  go to ``extra_info``, and ``test_tvl1_cpu`` prints the share of a pair's CPU time that
  ``features_from_flow`` takes (measured in the same run).

Threads: ``STRAIN_BENCH_THREADS`` (default 1) for every case. More than one thread is only worth
measuring on an idle machine: torch's intra-op threads meet at every elementwise op, and on a busy
2-core machine ``optical_strain`` runs several times slower at 2 threads than at one. Every case
also keeps the process's CPU time per call (``*cpu*`` keys in
``extra_info``); it moves less with the load than wall time, but it moves too (caches and cores are
shared), so compare cases of one run, and rerun to see the spread. Quote medians, and ratios only
between cases of one run on one machine.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fixtures.faces import FACE_VIDEO, face_pairs, face_points  # noqa: E402
from flowkit.features.chain import features_from_flow  # noqa: E402
from flowkit.features.eye_mask import apply_eye_mask, eye_mask  # noqa: E402
from flowkit.features.head_motion import landmarks_as_int, remove_head_motion  # noqa: E402
from flowkit.features.roi import extract_roi  # noqa: E402
from flowkit.features.strain import optical_strain  # noqa: E402
from flowkit.flow import tvl1  # noqa: E402

BATCH = 64
SIZE = 128
SEED = 0
K = 6
TVL1_PAIRS = 8  # SPEC-default TV-L1 costs 0.3-0.9 s a pair at one thread: 8 pairs keep the file near 50 s
STRAIN_ROUNDS = 40
STEP_ROUNDS = 30
TVL1_ROUNDS = 3
THREADS = int(os.environ.get("STRAIN_BENCH_THREADS", "1"))
# Both sides do the same float32 subtractions; conv2d's 1*a + (-1)*b + 0*c + 0*d is a - b exactly in any
# summation order, so the values should be bit-identical. The tolerance only leaves room for a conv2d
# backend that rounds differently (Winograd, FFT): a few float32 ulps (eps 1.2e-7) on strains of order 1.
RTOL = ATOL = 1e-6

_MEDIANS: dict[str, tuple[float, float]] = {}  # (wall, CPU) seconds per pair, from the cases of this run


def _info(benchmark, **extra) -> None:
    benchmark.extra_info.update(
        device="cpu",
        cpu=platform.processor() or platform.machine(),
        cpu_count=os.cpu_count(),
        torch=torch.__version__,
        opencv=cv2.__version__,
        numpy=np.__version__,
        load_avg_1min=os.getloadavg()[0],
        **extra,
    )


class _Timer:
    """Calls ``fn`` and keeps the wall time (perf_counter) and this process's CPU time (process_time)
    of every call: on a shared machine the CPU time of a one-thread case barely moves with the load."""

    def __init__(self, fn):
        self.fn, self.wall, self.cpu = fn, [], []

    def __call__(self):
        w, c = time.perf_counter(), time.process_time()
        out = self.fn()
        self.cpu.append(time.process_time() - c)
        self.wall.append(time.perf_counter() - w)
        return out

    def clear(self) -> None:
        self.wall.clear()
        self.cpu.clear()

    def medians_ms(self) -> dict[str, float]:
        return {"wall": 1e3 * float(np.median(self.wall)), "cpu": 1e3 * float(np.median(self.cpu))}

    def min_ms(self) -> float:
        return 1e3 * min(self.wall)

    def wall_ms(self) -> list[float]:
        return [1e3 * t for t in self.wall]


def smooth_flows(batch: int = BATCH, size: int = SIZE, seed: int = SEED) -> torch.Tensor:
    """(batch, 2, size, size) float32 flows that look like TV-L1 output on a face, made on the CPU.

    Per sample: a global shift (head motion, sd 0.5 px), a smooth local field (9x9 normal
    samples upsampled bicubically, sd about 0.3 px: expressions) and fine noise (sd 0.02 px).
    """
    g = torch.Generator().manual_seed(seed)
    shift = 0.5 * torch.randn(batch, 2, 1, 1, generator=g)
    local = 0.3 * F.interpolate(torch.randn(batch, 2, 9, 9, generator=g), size=(size, size), mode="bicubic",
                                align_corners=True)
    noise = 0.02 * torch.randn(batch, 2, size, size, generator=g)
    return (shift + local + noise).contiguous()


# Forward differences as 2x2 correlation kernels (kornia's default behaviour="corr", anchor top-left with
# padding="valid"): out[y, x] = f[y, x] - f[y, x + 1] and f[y, x] - f[y + 1, x], as flowkit.features.strain.
_KX = torch.tensor([[[1.0, -1.0], [0.0, 0.0]]])
_KY = torch.tensor([[[1.0, 0.0], [-1.0, 0.0]]])


def kornia_strain(flow: torch.Tensor) -> torch.Tensor:
    """flowkit's optical strain written with ``kornia.filters.filter2d``: (B, 2, H, W) -> (B, H, W)."""
    from kornia.filters import filter2d

    dx = filter2d(flow, _KX, padding="valid")  # (B, 2, H-1, W-1): u_x, v_x
    dy = filter2d(flow, _KY, padding="valid")  # u_y, v_y
    u_x, v_x, u_y, v_y = dx[:, 0], dx[:, 1], dy[:, 0], dy[:, 1]
    e = torch.sqrt(u_x * u_x + v_y * v_y + 0.5 * (u_y + v_x) ** 2)
    return F.pad(e[:, None], (0, 1, 0, 1), mode="replicate")[:, 0]  # row H-1 / column W-1 copy H-2 / W-2


@pytest.fixture
def threads(request):
    """Set torch's and OpenCV's thread counts for one case and restore them after it."""
    before_torch, before_cv = torch.get_num_threads(), cv2.getNumThreads()
    n = request.param
    torch.set_num_threads(n)
    cv2.setNumThreads(n)
    yield n
    torch.set_num_threads(before_torch)
    cv2.setNumThreads(before_cv)


@pytest.mark.parametrize("threads", [THREADS], indirect=True)
def test_strain_flowkit_vs_kornia(benchmark, threads):
    kornia = pytest.importorskip("kornia", reason="kornia is not installed (no dependency: this case re-measures "
                                                  "the claim in flowkit/features/strain.py)")
    flow = smooth_flows()
    ours_e, kornia_e = optical_strain(flow), kornia_strain(flow)
    torch.testing.assert_close(kornia_e, ours_e, rtol=RTOL, atol=ATOL)
    max_abs_diff = float((kornia_e - ours_e).abs().max())

    ours_t, kornia_t = _Timer(lambda: optical_strain(flow)), _Timer(lambda: kornia_strain(flow))

    def measure_both():
        for _ in range(STRAIN_ROUNDS):
            ours_t()
            kornia_t()

    ours_t(), kornia_t()  # warm-up: allocator, conv2d's first call
    ours_t.clear(), kornia_t.clear()
    load_before = os.getloadavg()[0]
    benchmark.pedantic(measure_both, rounds=1, iterations=1, warmup_rounds=0)
    ours, kornia_ = ours_t.medians_ms(), kornia_t.medians_ms()
    ratio = {clock: kornia_[clock] / ours[clock] for clock in ("wall", "cpu")}
    _info(benchmark, batch=BATCH, shape=list(flow.shape), torch_threads=threads, kornia=kornia.__version__,
          rounds=STRAIN_ROUNDS, flowkit_ms_median=ours["wall"], kornia_ms_median=kornia_["wall"],
          kornia_over_flowkit=ratio["wall"], flowkit_cpu_ms_median=ours["cpu"], kornia_cpu_ms_median=kornia_["cpu"],
          kornia_over_flowkit_cpu=ratio["cpu"], max_abs_diff=max_abs_diff, rtol=RTOL, atol=ATOL,
          strain_max=float(ours_e.max()), flowkit_ms_rounds=ours_t.wall_ms(), kornia_ms_rounds=kornia_t.wall_ms(),
          flowkit_ms_min=ours_t.min_ms(), kornia_ms_min=kornia_t.min_ms(),
          kornia_over_flowkit_min=kornia_t.min_ms() / ours_t.min_ms(), load_avg_1min_before=load_before)
    print(f"\noptical strain {tuple(flow.shape)} float32, {threads} thread(s), median of {STRAIN_ROUNDS} alternating "
          f"rounds: flowkit {ours['wall']:.2f} ms, kornia filter2d {kornia_['wall']:.2f} ms, ratio "
          f"{ratio['wall']:.1f}x (CPU time {ours['cpu']:.2f} vs {kornia_['cpu']:.2f} ms, {ratio['cpu']:.1f}x; fastest "
          f"rounds {ours_t.min_ms():.2f} vs {kornia_t.min_ms():.2f} ms, {kornia_t.min_ms() / ours_t.min_ms():.1f}x); "
          f"max |diff| {max_abs_diff:.1e} (tolerance {ATOL:g} abs + {RTOL:g} rel); kornia {kornia.__version__}, "
          f"load {load_before:.2f} -> {os.getloadavg()[0]:.2f}")


def _steps():
    """Each CPU step of SPEC 3-4 with the input it gets inside ``features_from_flow``."""
    flow = smooth_flows()
    points = landmarks_as_int(face_points())
    uve = torch.cat([flow, optical_strain(flow)[:, None]], dim=1)
    return {
        "strain": lambda: optical_strain(flow),
        "head_motion": lambda: remove_head_motion(uve, points),
        "eye_mask": lambda: apply_eye_mask(uve, eye_mask(points, SIZE)),  # mask built per call, as with mask=None
        "roi": lambda: extract_roi(uve, points),
        "features_from_flow": lambda: features_from_flow(flow, points),
    }


@pytest.mark.parametrize("threads", [THREADS], indirect=True)
@pytest.mark.parametrize("step", ["strain", "head_motion", "eye_mask", "roi", "features_from_flow"])
def test_feature_step_cpu(benchmark, step, threads):
    timer = _Timer(_steps()[step])
    for _ in range(2):  # warm-up, not kept
        timer()
    timer.clear()
    out = benchmark.pedantic(timer, rounds=STEP_ROUNDS, iterations=1, warmup_rounds=0)
    assert out.shape[0] == BATCH and torch.isfinite(out).all()
    median, cpu = benchmark.stats.stats.median, timer.medians_ms()["cpu"] / 1e3
    _MEDIANS[step] = (median / BATCH, cpu / BATCH)
    _info(benchmark, step=step, batch=BATCH, torch_threads=threads, ms_median=1e3 * median,
          ms_per_pair_median=1e3 * median / BATCH, cpu_ms_median=1e3 * cpu, cpu_ms_per_pair_median=1e3 * cpu / BATCH)
    print(f"\n{step}, batch {BATCH}, {threads} thread(s): median {1e3 * median:.2f} ms = {1e3 * median / BATCH:.3f} "
          f"ms/pair (CPU time {1e3 * cpu / BATCH:.3f} ms/pair)")


def _frame_pairs(n: int = TVL1_PAIRS) -> tuple[np.ndarray, np.ndarray, str]:
    """``n`` real 128x128 face pairs (i, i + K) of the shared video (the first pairs that
    bench_flow.py uses); where it is absent, smooth random texture shifted by a smooth field."""
    if FACE_VIDEO.is_file():
        a, b = face_pairs(K, tuple(int(s) for s in np.arange(n) * 3))
        return a, b, f"{FACE_VIDEO.name} pairs (i, i+{K})"
    rng = np.random.default_rng(SEED)
    tex = np.stack([cv2.GaussianBlur(rng.uniform(0, 255, (SIZE, SIZE)).astype(np.float32), (0, 0), 2)
                    for _ in range(n)])
    tex = (tex - tex.min()) / (np.ptp(tex) + 1e-6) * 255
    flow = smooth_flows(n, SIZE, SEED + 1).numpy()
    gy, gx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    nxt = np.stack([cv2.remap(t, gx - f[0], gy - f[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
                    for t, f in zip(tex, flow)])
    return tex.astype(np.uint8), np.clip(nxt, 0, 255).astype(np.uint8), "smooth random texture (no face video)"


@pytest.mark.parametrize("threads", [THREADS], indirect=True)
@pytest.mark.parametrize("backend", ["opencv", "torch"])
def test_tvl1_cpu(benchmark, backend, threads):
    a, b, frames = _frame_pairs()
    if backend == "torch":
        a, b = torch.from_numpy(a), torch.from_numpy(b)  # one batch of TVL1_PAIRS
    timer = _Timer(lambda: tvl1(a, b, backend=backend))
    flow = benchmark.pedantic(timer, rounds=TVL1_ROUNDS, iterations=1, warmup_rounds=0)
    assert tuple(flow.shape) == (TVL1_PAIRS, 2, SIZE, SIZE)
    wall = benchmark.stats.stats.median / TVL1_PAIRS
    cpu = timer.medians_ms()["cpu"] / 1e3 / TVL1_PAIRS
    feats = _MEDIANS.get("features_from_flow")  # (wall, cpu) seconds per pair, this run
    share = None if feats is None else {"wall": feats[0] / (feats[0] + wall), "cpu": feats[1] / (feats[1] + cpu)}
    _info(benchmark, backend=backend, tvl1="SPEC defaults", pairs=TVL1_PAIRS, frames=frames, threads=threads,
          ms_per_pair_median=1e3 * wall, pairs_per_s_median=1 / wall, cpu_ms_per_pair_median=1e3 * cpu,
          features_ms_per_pair_median=None if feats is None else 1e3 * feats[0],
          features_cpu_ms_per_pair_median=None if feats is None else 1e3 * feats[1],
          features_share_of_pair=None if share is None else share["wall"],
          features_share_of_pair_cpu=None if share is None else share["cpu"])
    tail = ("" if share is None else
            f"; features_from_flow {1e3 * feats[0]:.3f} ms/pair = {100 * share['wall']:.3f}% of TV-L1 + features "
            f"(CPU time {1e3 * feats[1]:.3f} vs {1e3 * cpu:.1f} ms/pair: {100 * share['cpu']:.3f}%)")
    print(f"\nTV-L1 {backend}, {TVL1_PAIRS} pairs, {threads} thread(s): median {1e3 * wall:.1f} ms/pair{tail}")
