"""The selection-network median (the GPU path of ``median_blur``) against ``cv2.medianBlur``."""

from __future__ import annotations

import zlib

import cv2
import numpy as np
import pytest
import torch
from flow_fixtures import face_pairs, needs_optflow, needs_video

from flowkit.flow.median import median_blur, median_blur_torch, median_network, sorting_network
from flowkit.flow.opencv_tvl1 import tvl1_opencv


@pytest.fixture
def deterministic():
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(before)


def _reference(img: np.ndarray, ksize: int) -> np.ndarray:
    return np.stack([[cv2.medianBlur(np.ascontiguousarray(c), ksize) for c in pair] for pair in img])


def _assert_bitwise(out: torch.Tensor, ref: np.ndarray) -> None:
    np.testing.assert_array_equal(out.cpu().numpy().view(np.int32), ref.view(np.int32))


def _wire_bits(n_wires: int) -> list[np.ndarray]:
    """Wire i over all 2**n_wires 0-1 inputs, 64 inputs per uint64 word: input x has bit i."""
    words = 1 << max(n_wires - 6, 0)
    word_index = np.arange(words, dtype=np.uint64)
    wires = []
    for i in range(n_wires):
        if i < 6:
            lane = sum(1 << x for x in range(64) if (x >> i) & 1)
            wires.append(np.full(words, lane, dtype=np.uint64))
        else:
            ones = (word_index >> np.uint64(i - 6)) & np.uint64(1)
            wires.append(ones * np.uint64(0xFFFFFFFFFFFFFFFF))
    return wires


@pytest.mark.parametrize("ksize", [3, 5])
def test_network_selects_the_median_of_every_0_1_window(ksize):
    # The 0-1 principle: a comparator network that selects the median of every 0-1 input
    # selects it for every real input. All 2**25 windows for 5x5, 64 per machine word.
    n = ksize * ksize
    w = _wire_bits(n)  # wire c * ksize + r = row r of column c, as median_blur_torch lays them out
    for c in range(ksize):
        for i, j in sorting_network(ksize):
            a, b = c * ksize + i, c * ksize + j
            w[a], w[b] = w[a] & w[b], w[a] | w[b]
    for i, j, keep_min, keep_max in median_network(ksize):
        lo, hi = w[i] & w[j], w[i] | w[j]
        w[i], w[j] = (lo if keep_min else None), (hi if keep_max else None)
    # Ground truth: the median of a 0-1 window is 1 iff more than half of its values are 1.
    if n < 16:
        truth = np.array([bin(x).count("1") > n // 2 for x in range(1 << n)])
        got = np.unpackbits(w[n // 2].view(np.uint8), bitorder="little").astype(bool)[: 1 << n]
        np.testing.assert_array_equal(got, truth)
    else:
        total = [np.zeros_like(w[0]) for _ in range(5)]  # a bit-sliced 5-bit counter of the ones
        for x in _wire_bits(n):
            carry = x
            for k in range(5):
                total[k], carry = total[k] ^ carry, total[k] & carry
        # count >= 13 = 0b01101: bit4, or bit3 and bit2 and (bit1 or bit0)
        majority = total[4] | (total[3] & total[2] & (total[1] | total[0]))
        np.testing.assert_array_equal(w[n // 2], majority)


def test_network_sizes():
    # 85 comparators (146 min/max) after the shared column sort: fewer than a full 25-sort.
    assert len(median_network(5)) == 85 and len(sorting_network(5)) == 9
    assert sum(lo + hi for _, _, lo, hi in median_network(5)) == 146


@pytest.mark.parametrize("ksize", [3, 5])
@pytest.mark.parametrize("kind", ["normal", "ties", "wide"])
@pytest.mark.parametrize("shape", [(2, 2, 23, 31), (1, 2, 4, 3), (1, 1, 1, 1)])
def test_matches_cv2_bitwise(device, ksize, kind, shape, deterministic):
    rng = np.random.default_rng(zlib.crc32(repr((ksize, kind, shape)).encode()))
    if kind == "ties":  # many equal values per window
        img = rng.integers(-2, 3, shape).astype(np.float32)
    elif kind == "wide":  # magnitudes from 1e-30 to 1e30, both signs
        img = (rng.choice([-1, 1], shape) * 10.0 ** rng.uniform(-30, 30, shape)).astype(np.float32)
    else:
        img = rng.normal(0, 2, shape).astype(np.float32)
    out = median_blur_torch(torch.from_numpy(img).to(device), ksize)
    assert out.shape == img.shape and out.is_contiguous()
    _assert_bitwise(out, _reference(img, ksize))


@needs_video
@needs_optflow
@pytest.mark.parametrize("k", [6, 18])
def test_matches_cv2_on_real_flows(device, k, deterministic):
    a, b = face_pairs(k, (0, 40))
    flow = tvl1_opencv(a, b, nscales=3, warps=2)  # (2, 2, 128, 128) float32
    t = torch.from_numpy(flow).to(device)
    _assert_bitwise(median_blur_torch(t, 5), _reference(flow, 5))
    # The channel slice the solver filters, u[:, :2] of a 3-channel (gamma) flow.
    three = torch.cat((t, t[:, :1]), 1)
    _assert_bitwise(median_blur_torch(three[:, :2], 5), _reference(flow, 5))


def test_signed_zeros_equal_in_value():
    # A window with both +0.0 and -0.0 has median 0 of either sign, by the order of the
    # comparisons (OpenCV's network is another). The sign of a zero reaches no later value of the
    # solver (it only adds, multiplies and divides by non-zero numbers), so only values must agree.
    rng = np.random.default_rng(5)
    img = np.where(rng.random((1, 2, 16, 16)) < 0.5, np.float32(-0.0), np.float32(0.0))
    np.testing.assert_array_equal(median_blur_torch(torch.from_numpy(img), 5).numpy(), _reference(img, 5))


def test_cpu_dispatch_uses_cv2():
    img = np.random.default_rng(0).normal(size=(1, 2, 9, 9)).astype(np.float32)
    _assert_bitwise(median_blur(torch.from_numpy(img), 5), _reference(img, 5))
