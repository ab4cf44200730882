"""Table 3: every backbone's parameters and inference time over the same windows, in one run.

Run: ``pytest benchmarks/bench_table3.py --benchmark-only -s``. Each case scores the same fixed
set of (3, 42, 42) windows (random, made on the CPU with a fixed seed, then moved) with one
registered backbone (spotnet.models), in batches, under ``torch.inference_mode``, with the CPU
threads the product uses for it (spotnet.inference.cpu_threads). ``extra_info`` keeps the
parameter count, the median time, windows/s, the ratio of its time to SOFTNet's measured in the
same run, and the paper's ratio.

Window counts. CAS(ME)^2 has about 430,000 frames in 98 videos, so its macro windows (k = 18)
number about 430,000 - 98 * 18 = 428,236: that is the set the paper times. On CUDA the benchmark
scores all of them; on the CPU a ResNet-50 would need most of an hour for that, so it scores the
first 4,096 (batches are full either way, so the time per window, and the ratios, do not depend
on the count) and also reports the time projected to the full set at the measured rate.
"""

from __future__ import annotations

import pytest
import torch

from spotnet.inference import cpu_threads, model_threads
from spotnet.models import build_model, get_spec

CASME2_MACRO_WINDOWS = 430_000 - 98 * 18
WINDOWS = {"cpu": 4_096, "cuda": CASME2_MACRO_WINDOWS}
BATCH = {"cpu": 256, "cuda": 4_096}
#: Table 3 of the paper: inference seconds on CAS(ME)^2 macro.
TABLE3_SECONDS = {"softnet": 2.78, "mobilenet_v2": 10.17, "resnet18": 9.32, "resnet50": 22.22, "vgg16": 8.27}
ORDER = ["softnet", "mobilenet_v2", "resnet18", "resnet50", "vgg16"]

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.cuda,
                                pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]),
]

_softnet_seconds: dict[str, float] = {}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ORDER)  # softnet first: the others' ratios need its time
def test_table3_inference(benchmark, name, device):
    n, batch = WINDOWS[device], BATCH[device]
    torch.manual_seed(0)
    windows = torch.rand(min(n, batch * 4), 3, 42, 42)  # reused cyclically: the same data for every model
    windows = windows.to(device)
    model = build_model(name).to(device).eval()
    spec = get_spec(name)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == spec.n_params

    def run():
        with torch.inference_mode():
            for start in range(0, n, batch):
                i = (start // batch) % (len(windows) // batch)
                model(windows[i * batch:(i + 1) * batch][: n - start])
        if device == "cuda":
            torch.cuda.synchronize()  # inside the timed region

    with model_threads(cpu_threads([model]) if device == "cpu" else None):
        threads = torch.get_num_threads()
        with torch.inference_mode():
            model(windows[:batch])  # warm-up: allocator, cuDNN algorithm choice
        benchmark.pedantic(run, rounds=3, warmup_rounds=0)
    seconds = benchmark.stats.stats.median
    if name == "softnet":
        _softnet_seconds[device] = seconds
    ratio = seconds / _softnet_seconds[device] if device in _softnet_seconds else None
    paper_ratio = TABLE3_SECONDS[name] / TABLE3_SECONDS["softnet"]
    benchmark.extra_info.update(
        backbone=name, device=device, windows=n, batch=batch, n_params=n_params,
        table3_params_m=spec.table3_params_m, seconds_median=seconds, windows_per_s=n / seconds,
        projected_seconds_casme2_macro=seconds * CASME2_MACRO_WINDOWS / n, ratio_to_softnet=ratio,
        table3_seconds=TABLE3_SECONDS[name], table3_ratio_to_softnet=paper_ratio,
        torch_threads=threads)
    print(f"\n{name:13} {device}: {n_params / 1e6:8.4f} M params (Table 3: {spec.table3_params_m}), "
          f"{seconds:7.3f} s for {n:,} windows, {n / seconds:9,.0f} windows/s, "
          f"x{ratio if ratio else float('nan'):.2f} SOFTNet (paper x{paper_ratio:.2f})")
