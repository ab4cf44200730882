"""OpenCV TV-L1 backend, the ``tvl1`` dispatcher and backend resolution."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from flow_fixtures import needs_optflow

import flowkit.flow.backend as backend_mod
from flowkit.errors import FlowkitError
from flowkit.flow import TVL1Params, available_backends, resolve_backend, tvl1
from flowkit.flow.opencv_cuda import opencv_cuda_available
from flowkit.flow.opencv_tvl1 import tvl1_opencv

FAST = dict(nscales=2, warps=1, outer_iterations=2, inner_iterations=5)


def _frames(b=2, h=32, w=40, seed=0):
    rng = np.random.default_rng(seed)
    shape = (b, h, w)
    return rng.integers(0, 256, shape, dtype=np.uint8), rng.integers(0, 256, shape, dtype=np.uint8)


@needs_optflow
def test_params_defaults_are_opencv_defaults():
    import cv2

    p = TVL1Params()
    ref = cv2.optflow.DualTVL1OpticalFlow_create()
    assert p.tau == ref.getTau() and p.lambda_ == ref.getLambda() and p.theta == ref.getTheta()
    assert p.nscales == ref.getScalesNumber() and p.warps == ref.getWarpingsNumber()
    assert p.epsilon == ref.getEpsilon() and p.gamma == ref.getGamma()
    assert p.inner_iterations == ref.getInnerIterations()
    assert p.outer_iterations == ref.getOuterIterations()
    assert p.scale_step == ref.getScaleStep() and p.median_filtering == ref.getMedianFiltering()
    assert p.to_dict()["lambda_"] == 0.15
    with pytest.raises(Exception):
        p.tau = 1.0  # frozen


@needs_optflow
def test_opencv_shape_dtype_and_single_pair():
    a, b = _frames()
    out = tvl1_opencv(a, b, **FAST)
    assert out.shape == (2, 2, 32, 40) and out.dtype == np.float32
    one = tvl1_opencv(a[0], b[0], **FAST)
    assert one.shape == (1, 2, 32, 40)
    # One solver object is reused over the batch; it keeps no state between pairs.
    np.testing.assert_array_equal(one[0], out[0])


@needs_optflow
def test_opencv_channel_order_is_u_then_v():
    # A horizontal shift by +2 px: u is about +2 in the interior and v about 0.
    rng = np.random.default_rng(1)
    import cv2

    base = cv2.GaussianBlur(rng.integers(0, 256, (64, 64)).astype(np.uint8), (5, 5), 1.5)
    nxt = np.roll(base, 2, axis=1)
    flow = tvl1_opencv(base, nxt)[0, :, 16:-16, 16:-16]
    assert abs(float(np.median(flow[0])) - 2.0) < 0.2
    assert abs(float(np.median(flow[1]))) < 0.2


@pytest.mark.parametrize(
    "prev, nxt, match",
    [
        (np.zeros((2, 8, 8), np.uint8), np.zeros((2, 8, 9), np.uint8), "same shape"),
        (np.zeros((1, 1, 8, 8), np.uint8), np.zeros((1, 1, 8, 8), np.uint8), r"\(B, H, W\)"),
        (np.zeros((2, 8, 8), np.float32), np.zeros((2, 8, 8), np.float32), "uint8"),
    ],
)
def test_opencv_bad_input(prev, nxt, match):
    with pytest.raises(FlowkitError, match=match):
        tvl1_opencv(prev, nxt)


def test_unknown_parameter():
    a, b = _frames()
    with pytest.raises(FlowkitError, match="unknown"):
        tvl1(a, b, lamda=0.1)


@needs_optflow
def test_tvl1_dispatch_numpy_and_torch():
    a, b = _frames()
    ref = tvl1(a, b, **FAST)
    assert isinstance(ref, np.ndarray) and ref.shape == (2, 2, 32, 40)
    out_np = tvl1(a, b, backend="torch", **FAST)
    assert isinstance(out_np, np.ndarray) and out_np.shape == (2, 2, 32, 40)
    out_t = tvl1(torch.from_numpy(a), torch.from_numpy(b), backend="torch", **FAST)
    assert isinstance(out_t, torch.Tensor) and out_t.device.type == "cpu"
    # Tensors into the OpenCV backend come back as numpy.
    assert isinstance(tvl1(torch.from_numpy(a), torch.from_numpy(b), **FAST), np.ndarray)


def test_available_backends():
    names = available_backends()
    assert names[:2] == ["opencv", "torch"]
    assert ("opencv-cuda" in names) == opencv_cuda_available()


def test_resolve_backend_names():
    assert resolve_backend("opencv") == ("opencv", None)
    assert resolve_backend("auto") == ("opencv", None)
    assert resolve_backend("torch") == ("torch", torch.device("cpu"))
    assert resolve_backend("auto", device="cpu") == ("torch", torch.device("cpu"))
    expected = "backend should be one of auto, opencv, torch, opencv-cuda, got 'tvl2'"
    with pytest.raises(FlowkitError, match=expected):
        resolve_backend("tvl2")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback without CUDA")
def test_gpu_without_cuda_warns_once_and_falls_back(monkeypatch):
    monkeypatch.setattr(backend_mod, "_warned_no_cuda", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert resolve_backend("auto", gpu=True) == ("opencv", None)
        assert resolve_backend("auto", gpu=True) == ("opencv", None)
    assert sum("no CUDA device" in str(w.message) for w in caught) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_device_without_cuda_is_a_clear_error():
    with pytest.raises(FlowkitError, match="no CUDA device"):
        resolve_backend("torch", device="cuda")


@pytest.mark.skipif(opencv_cuda_available(), reason="checks the error without cv2.cuda")
def test_opencv_cuda_absent_is_a_clear_error():
    with pytest.raises(FlowkitError, match="opencv-cuda"):
        resolve_backend("opencv-cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_picks_torch_on_cuda():
    name, dev = resolve_backend("auto", gpu=True)
    assert name == "torch" and dev.type == "cuda"


def test_gpu_with_the_cpu_only_backend_is_a_clear_error():
    with pytest.raises(FlowkitError, match="gpu=True should come with backend 'auto'"):
        resolve_backend("opencv", gpu=True)


def test_gpu_selection_when_cuda_is_reported(monkeypatch):
    """The choice logic of ``--gpu`` without a GPU: pretend torch sees CUDA (no tensor is made)."""
    monkeypatch.setattr(backend_mod, "_torch_cuda", lambda: True)
    assert resolve_backend("auto", gpu=True) == ("torch", torch.device("cuda"))
    assert resolve_backend("torch", device="cuda:1", gpu=True) == ("torch", torch.device("cuda:1"))


def test_pairs_per_batch_from_free_memory():
    from flowkit.flow.memory import BYTES_PER_PIXEL, pairs_per_batch

    per_pair = BYTES_PER_PIXEL * 128 * 128  # 5.0 MiB
    assert pairs_per_batch(free_bytes=100 * per_pair) == 50  # half the free memory by default
    assert pairs_per_batch(free_bytes=100 * per_pair, fraction=1.0) == 100
    assert pairs_per_batch(free_bytes=80 * 2**30) == 4096  # an idle H100: the cap
    assert pairs_per_batch(free_bytes=0) == 1
    with pytest.raises(FlowkitError, match="CUDA device"):
        pairs_per_batch("cpu")
    with pytest.raises(FlowkitError, match="fraction"):
        pairs_per_batch(free_bytes=1, fraction=0)
