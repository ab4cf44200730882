"""The Triton kernels (the CUDA fast path of the torch TV-L1 solver) against the eager path.

Without a GPU the kernels run on CPU tensors in Triton's interpreter: TRITON_INTERPRET=1 is set
while ``flowkit.flow.triton_tvl1`` is imported (Triton reads it when a kernel is decorated) and
restored at once, so no other test sees it. The interpreter runs programs one by one in numpy, so
cases are small: a few iterations on images of a few hundred pixels.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np
import pytest
import torch

if importlib.util.find_spec("triton") is None:
    pytest.skip("the gpu extra (triton) is not installed", allow_module_level=True)

ON_CUDA = torch.cuda.is_available()
# Triton reads TRITON_INTERPRET when it decorates a kernel, its own library's included (at
# `import triton`), and again in imports it makes lazily at a first launch: it is set while
# triton and the kernels are imported, and again around each test of this module (fixture below).
INTERPRET = not ON_CUDA and "triton" not in sys.modules
_previous = os.environ.get("TRITON_INTERPRET")
if INTERPRET:
    os.environ["TRITON_INTERPRET"] = "1"
try:
    from flowkit.flow import triton_tvl1  # noqa: E402
finally:
    if _previous is None:
        os.environ.pop("TRITON_INTERPRET", None)
    else:
        os.environ["TRITON_INTERPRET"] = _previous

import cv2  # noqa: E402
from flow_fixtures import face_pairs, needs_optflow, needs_video  # noqa: E402

import flowkit.flow.torch_tvl1 as solver_mod  # noqa: E402
from flowkit.flow.median import median_blur_torch  # noqa: E402
from flowkit.flow.opencv_tvl1 import tvl1_opencv  # noqa: E402
from flowkit.flow.params import TVL1Params  # noqa: E402
from flowkit.flow.torch_tvl1 import tvl1_torch  # noqa: E402

DEVICE = "cuda" if ON_CUDA else "cpu"
pytestmark = pytest.mark.skipif(
    not ON_CUDA and not triton_tvl1.interpreted(),
    reason="triton was imported without TRITON_INTERPRET=1 before this module (no GPU to run it on)",
)


@pytest.fixture(autouse=True)
def _interpreter(monkeypatch):
    if INTERPRET:
        monkeypatch.setenv("TRITON_INTERPRET", "1")


SMALL = dict(nscales=2, warps=1, outer_iterations=2, inner_iterations=3)


def _textures(b=2, h=21, w=26, seed=0):
    """Smooth random frames and copies shifted by about a pixel: (prev, nxt) (b, h, w) float32."""
    rng = np.random.default_rng(seed)
    noise = rng.random((b, h + 8, w + 8)).astype(np.float32) * 255
    smooth = np.stack([cv2.GaussianBlur(n, (0, 0), 1.5) for n in noise])
    prev, nxt = smooth[:, 4 : 4 + h, 4 : 4 + w], smooth[:, 5 : 5 + h, 3 : 3 + w]
    return torch.from_numpy(prev.copy()).to(DEVICE), torch.from_numpy(nxt.copy()).to(DEVICE)


def _state(c=2, b=2, h=17, w=23, seed=1):
    """A solver, the warp constants and a random (u, px, py) state, as mid-solve."""
    g = torch.Generator().manual_seed(seed)
    p = TVL1Params(gamma=0.1 if c == 3 else 0.0)
    solver = solver_mod._Solver(p, "masked")
    i0, i1 = (torch.rand(b, h, w, generator=g) * 255 for _ in range(2))
    u = torch.randn(b, c, h, w, generator=g)
    px, py = (torch.randn(b, c, h, w, generator=g) * 0.2 for _ in range(2))
    consts = solver.warp(i0, i1, *solver_mod.centered_gradient(i1), u)
    move = lambda ts: tuple(t.to(DEVICE).contiguous() for t in ts)  # noqa: E731
    return solver, move((u, px, py)), move(consts)


@pytest.mark.parametrize("ksize", [3, 5])
def test_median_kernel_matches_cv2_bitwise(ksize):
    rng = np.random.default_rng(ksize)
    img = rng.normal(0, 2, (2, 3, 19, 22)).astype(np.float32)
    img[0, 1] = rng.integers(-2, 3, (19, 22))  # ties
    t = torch.from_numpy(img).to(DEVICE)
    ref = np.stack([[cv2.medianBlur(c, ksize) for c in pair] for pair in img[:, :2]])
    # The solver filters u[:, :2] of a 3-channel flow: a strided channel slice.
    out = triton_tvl1.median_blur_triton(t[:, :2], ksize).cpu().numpy()
    np.testing.assert_array_equal(out.view(np.int32), ref.view(np.int32))


def _fused(solver, **launch):
    return triton_tvl1.FusedInner(l_t=solver.l_t, theta=solver.p.theta, taut=solver.taut, **launch)


# Launch shapes of the fused kernel. The test images have 17 rows of 23 pixels: tiles of 4 and 8
# rows cut them into several tiles, each reading its neighbours' edge rows, over 32 columns of
# which 9 lie outside the image. Tiles 8 wide (2 steps) and 16 wide (3 steps) cut the rows too:
# into 6 column tiles of 4 columns their own and 3 of 10, each reading its neighbours' edge columns.
# Strips 16 wide (3 steps) cut the rows into 3 strips of 10 columns their own; strips 64 wide take
# whole rows.
LAUNCHES = {"blocks": {}, "blocks_2_steps": {"steps": 2}, "tiles_1_step": {"rows": 4},
            "tiles_2_steps": {"steps": 2, "rows": 8}, "tiles_3_steps": {"steps": 3, "rows": 8},
            "column_tiles_2_steps": {"steps": 2, "rows": 8, "tile_width": 8},
            "column_tiles_3_steps": {"steps": 3, "rows": 8, "tile_width": 16},
            "strips_3_steps": {"steps": 3, "strip": 16}, "strips_4_steps_one_strip": {"steps": 4, "strip": 64},
            "strips_3_steps_prefetch": {"steps": 3, "strip": 16, "prefetch": True}}


@pytest.mark.parametrize("launch", ["blocks", "blocks_2_steps", "tiles_2_steps"])
@pytest.mark.parametrize("channels", [2, 3])
@pytest.mark.parametrize("iterations", [1, 4])
def test_fused_iterations_match_eager(channels, iterations, launch):
    solver, state, consts = _state(c=channels)
    eager = tuple(t.clone() for t in state)
    active = None
    for _ in range(iterations):
        err = solver.iterate(*eager, consts, active)
        going = (err > 1e-12).view(-1, 1, 1, 1)
        active = going if active is None else active & going
    mask = _fused(solver, **LAUNCHES[launch]).run(state, consts, 1e-12, iterations)
    # float32 rounding only: FMA contraction, sqrt(x*x + y*y) for hypot, another sum order of
    # the error. Values are ~1; after 4 iterations the differences are ~1e-7.
    for a, b in zip(state, eager):
        torch.testing.assert_close(a, b, rtol=0, atol=2e-6)
    assert mask.equal(active)


@pytest.mark.parametrize("launch", ["blocks", "blocks_2_steps", "tiles_2_steps", "strips_3_steps"])
def test_stopped_pairs_are_frozen(launch):
    solver, state, consts = _state()
    before = tuple(t.clone() for t in state)
    fused = _fused(solver, **LAUNCHES[launch])
    # An epsilon no change can pass: every pair stops after its first iteration, as in eager
    # "masked" mode, whose first iteration still updates.
    one = tuple(t.clone() for t in state)
    fused.run(one, consts, float("inf"), 1)
    mask = fused.run(state, consts, float("inf"), 3)
    assert not mask.any()
    for a, b, c in zip(state, one, before):
        assert a.equal(b) and not a.equal(c)


def _staggered_state(iterations: int, channels: int = 2):
    """A state whose three pairs meet the stopping rule after different inner iterations: (solver,
    state, consts, eps, the iteration after which each pair stops (or None))."""
    solver, state, consts = _state(c=channels, b=3)
    for t in state:  # states scaled apart: the changes fall below eps after iterations 3, 4 and 7
        t *= torch.tensor([0.3, 1.0, 3.0], device=t.device).view(3, 1, 1, 1)
    probe = tuple(t.clone() for t in state)
    errors = torch.stack([solver.iterate(*probe, consts) for _ in range(iterations)]).cpu()  # (iterations, 3)
    eps = float(errors[:, 1].median()) * (1 + 1e-4)  # not a tie: sums in another order round apart ~1e-7
    below = errors <= eps
    stops = [int(col.nonzero()[0]) + 1 if col.any() else None for col in below.T]
    return solver, state, consts, eps, stops


# Each tile shape with both channel counts; the strips (~10 s a case in the interpreter, which runs
# their row loop in Python) with one each.
SHAPE_CASES = [(launch, channels) for launch in ("blocks_2_steps", "tiles_1_step", "tiles_2_steps", "tiles_3_steps",
                                                  "column_tiles_2_steps", "column_tiles_3_steps")
               for channels in (2, 3)] + [("strips_3_steps", 2), ("strips_4_steps_one_strip", 3),
                                          ("strips_3_steps_prefetch", 2)]


@pytest.mark.parametrize(("launch", "channels"), SHAPE_CASES)
def test_launch_shapes_equal_one_step_blocks(launch, channels):
    iterations = 7
    solver, state, consts, eps, stops = _staggered_state(iterations, channels)
    steps = LAUNCHES[launch].get("steps", 1)
    # The case must stop pairs apart, one of them inside a multi-step launch (its last steps are
    # then applied again), or it tests little.
    assert len(set(stops)) == 3, stops
    assert steps == 1 or any(s is not None and s % steps for s in stops), stops
    one = tuple(t.clone() for t in state)
    mask_one = _fused(solver).run(one, consts, eps, iterations)
    mask_many = _fused(solver, **LAUNCHES[launch]).run(state, consts, eps, iterations)
    assert mask_many.equal(mask_one)
    assert mask_one.view(-1).tolist() == [s is None for s in stops]
    _assert_same_state(state, one)


def _assert_same_state(state, other):
    """Two launch shapes' (u, px, py) after the same iterations."""
    for a, b in zip(state, other):
        if INTERPRET:  # numpy evaluates both kernels' identical expressions alike
            assert a.equal(b)
        else:  # the compiler may contract a multiply-add differently in another kernel
            torch.testing.assert_close(a, b, rtol=0, atol=2e-6)


def test_launch_shape_arguments_are_checked():
    solver, _, _ = _state()
    with pytest.raises(ValueError, match="strip should be a power of two > 2 \\* steps = 10, got 8"):
        _fused(solver, steps=5, strip=8)
    with pytest.raises(ValueError, match="rows and strip are two layouts"):
        _fused(solver, rows=8, strip=16)
    with pytest.raises(ValueError, match="prefetch is an option of strips"):
        _fused(solver, prefetch=True)


@pytest.mark.parametrize(("h", "w"), [(1, 1), (7, 1), (2, 3), (5, 12)])
def test_strips_on_small_and_narrow_images_equal_one_step_blocks(h, w):
    # Strips 8 wide with 3 steps own 2 columns each: one strip wider than the image, or 6 strips
    # on 12 columns; rows fewer than the steps in flight.
    solver, state, consts = _state(h=h, w=w)
    one = tuple(t.clone() for t in state)
    mask_one = _fused(solver).run(one, consts, 1e-12, 4)
    mask_strips = _fused(solver, steps=3, strip=8).run(state, consts, 1e-12, 4)
    assert mask_strips.equal(mask_one)
    _assert_same_state(state, one)


@pytest.mark.parametrize("impl", ["triton", "triton-tiles", "triton-strips"])
def test_solve_matches_eager(impl):
    prev, nxt = _textures()
    eager = tvl1_torch(prev, nxt, impl="eager", early_stop="masked", **SMALL)
    fused = tvl1_torch(prev, nxt, impl=impl, **SMALL)
    # Six inner iterations, two medians, one resize: rounding stays ~1e-6 px.
    torch.testing.assert_close(fused, eager, rtol=0, atol=1e-4)


def test_wide_images_solve_on_column_tiles():
    # 150 columns: level 0 is wider than a tile (128) and runs on two column tiles of the default
    # launch, level 1 (120 columns) on whole rows. One pair, one outer iteration: the interpreter
    # runs a 16 x 128 tile at ~0.1 s a launch.
    prev, nxt = _textures(b=1, h=12, w=150)
    params = dict(SMALL, outer_iterations=1)
    eager = tvl1_torch(prev, nxt, impl="eager", early_stop="masked", **params)
    tiles = tvl1_torch(prev, nxt, impl="triton-tiles", **params)
    torch.testing.assert_close(tiles, eager, rtol=0, atol=1e-4)  # as test_solve_matches_eager


def test_deterministic_and_batch_independent():
    prev, nxt = _textures(b=3)
    first = tvl1_torch(prev, nxt, impl="triton", **SMALL)
    again = tvl1_torch(prev, nxt, impl="triton", **SMALL)
    assert first.equal(again)  # no atomics: the error sums run in a fixed order
    alone = tvl1_torch(prev[1:2], nxt[1:2], impl="triton", **SMALL)
    # The kernels are per pair; only the pyramid's batched matmuls may round differently.
    torch.testing.assert_close(alone, first[1:2], rtol=0, atol=1e-5)


def test_impl_choice():
    assert solver_mod.resolve_impl("auto", DEVICE) == ("triton-strips" if ON_CUDA else "eager")
    assert solver_mod.resolve_impl("triton", DEVICE) == "triton"
    assert solver_mod.resolve_impl("triton-tiles", DEVICE) == "triton-tiles"
    assert solver_mod.resolve_impl("triton-strips", DEVICE) == "triton-strips"
    prev, nxt = _textures(b=1)
    with pytest.raises(Exception, match="early_stop should be 'auto' or 'masked'"):
        tvl1_torch(prev, nxt, impl="triton", early_stop="compact", **SMALL)


@pytest.mark.slow
@needs_video
@needs_optflow
@pytest.mark.parametrize("impl", ["triton", "triton-tiles"])
def test_full_size_face_pair_matches_opencv(impl):
    # 128x128, SPEC's 5-level pyramid; fewer iterations than SPEC (the interpreter takes ~0.05 s
    # a launch), the same for OpenCV. SPEC-default solves on many pairs: tools/gpu/gpu_check.py.
    a, b = face_pairs(6, (0,))
    params = dict(warps=1, outer_iterations=2, inner_iterations=10)
    out = tvl1_torch(torch.from_numpy(a).to(DEVICE), torch.from_numpy(b).to(DEVICE), impl=impl, **params)
    ref = tvl1_opencv(a, b, **params)
    epe = np.sqrt(((out.cpu().numpy() - ref) ** 2).sum(1)).mean()
    assert epe <= 0.05  # the bound of test_matches_opencv_on_faces; measured ~5e-6 px


@pytest.mark.slow
@needs_video
@needs_optflow
def test_full_size_face_pair_on_strips_matches_opencv(monkeypatch):
    # As above for "triton-strips", with fewer iterations still: the interpreter walks a strip's
    # rows in Python (~8 s a launch of 5 steps on 128 x 128). In the interpreter one strip as wide
    # as the image (a narrower one would cost a launch per strip); several strips are
    # test_launch_shapes_equal_one_step_blocks's case, and the GPU runs the default.
    if INTERPRET:
        monkeypatch.setitem(solver_mod.TRITON_LAUNCH, "triton-strips", {"steps": 5, "strip": 256, "num_warps": 1})
    a, b = face_pairs(6, (0,))
    params = dict(warps=1, outer_iterations=1, inner_iterations=5)
    out = tvl1_torch(torch.from_numpy(a).to(DEVICE), torch.from_numpy(b).to(DEVICE), impl="triton-strips", **params)
    ref = tvl1_opencv(a, b, **params)
    epe = np.sqrt(((out.cpu().numpy() - ref) ** 2).sum(1)).mean()
    assert epe <= 0.05  # the bound of test_matches_opencv_on_faces


@pytest.mark.parametrize("gamma", [0.0, 0.1])
def test_warp_kernel_matches_eager(gamma):
    solver = solver_mod._Solver(TVL1Params(gamma=gamma), "masked")
    g = torch.Generator().manual_seed(3)
    b, h, w = 3, 17, 23
    i0, i1 = (torch.rand(b, h, w, generator=g) * 255 for _ in range(2))
    u = torch.randn(b, 3 if gamma else 2, h, w, generator=g) * 3
    u[0, :2] *= 5  # maps far outside the image: taps on the zero border, and the clamp
    i1x, i1y = solver_mod.centered_gradient(i1)
    i0, i1, i1x, i1y, u = (t.to(DEVICE) for t in (i0, i1, i1x, i1y, u))
    frames = torch.stack((i0, i1), 1)  # the pyramid's layout: each frame a channel view
    i0, i1 = frames[:, 0], frames[:, 1]
    ref = solver.warp(i0, i1, i1x, i1y, u)
    out = triton_tvl1.warp_triton(i0, i1, i1x, i1y, u, gamma=gamma)
    if INTERPRET:  # numpy: the eager remap's operations in the same order
        for a, r in zip(out, ref):
            assert a.equal(r)
        return
    (iw, neg_grad, rho_c), (ref_iw, ref_neg_grad, ref_rho_c) = out, ref
    # FMA contraction of 16 taps of values up to ~255: float32 rounding ~1e-4, bound 1e-3.
    torch.testing.assert_close(iw, ref_iw, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(rho_c, ref_rho_c, rtol=1e-5, atol=1e-3)
    # -|grad|^2 squares those gradients: an error e in each moves it by up to 2 (|gx| + |gy|) e + 2 e^2
    # (on an H200, 0.053 where |grad|^2 ~ 1e4, which the 1e-3 bound above did not allow).
    e = 1e-3
    bound = 2 * ref_iw[:, :2].abs().sum(1, keepdim=True) * e + 2 * e * e
    assert ((neg_grad - ref_neg_grad).abs() <= bound).all(), float((neg_grad - ref_neg_grad).abs().max())


def test_median_network_matches_the_eager_one():
    flow = torch.randn(1, 2, 12, 13).to(DEVICE)
    assert triton_tvl1.median_blur_triton(flow, 5).equal(median_blur_torch(flow, 5))
