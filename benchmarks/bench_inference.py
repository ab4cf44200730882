"""SOFTNet inference throughput (windows/s) and parameter count (Table 3).

Run: ``pytest benchmarks/bench_inference.py --benchmark-only``. Each case stores its batch and
median windows/s in ``extra_info``; add ``--benchmark-json=FILE`` to keep them with the machine
metadata from ``benchmarks/conftest.py`` (torch version, device, commit).
"""

from __future__ import annotations

import pytest
import torch

from spotnet import SOFTNet, count_parameters

TABLE3_PARAMS_M = 0.3148

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.cuda,
                                pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch", [1, 64, 512])
def test_inference_windows_per_second(benchmark, device, batch):
    torch.manual_seed(0)
    x = torch.rand(batch, 3, 42, 42).to(device)  # random data made on the CPU, then moved
    model = SOFTNet().to(device).eval()

    def infer():
        with torch.inference_mode():
            y = model(x)
        if device == "cuda":
            torch.cuda.synchronize()  # inside the timed region: count the kernels, not the launch
        return y

    infer()  # warm-up: allocator, cuDNN algorithm choice
    y = benchmark(infer)
    assert y.shape == (batch,)
    median_s = benchmark.stats.stats.median
    benchmark.extra_info.update(batch=batch, device=device, windows_per_s_median=batch / median_s)
    print(f"\nSOFTNet {device} batch {batch}: median {batch / median_s:,.0f} windows/s")


def test_parameter_count_vs_table3(benchmark):
    n = benchmark(count_parameters, SOFTNet())
    benchmark.extra_info.update(n_params=n, n_params_m=round(n / 1e6, 4), table3_m=TABLE3_PARAMS_M)
    print(f"\nSOFTNet parameters: {n:,} = {n / 1e6:.4f} M (Table 3: {TABLE3_PARAMS_M} M)")
    assert n == 314_817 and round(n / 1e6, 4) == TABLE3_PARAMS_M
