"""The package-level API that the README shows, run as written (with a reduced TV-L1 for speed)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch

import flowkit
import spotnet


def test_flowkit_exports_resolve():
    for name in flowkit.__all__:
        assert getattr(flowkit, name) is not None, name
    assert set(flowkit.__all__) <= set(dir(flowkit))


def test_import_flowkit_is_cheap():
    # The exports are lazy: importing the package must not pull in torch or cv2.
    code = "import sys, flowkit; print('torch' in sys.modules, 'cv2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_spotnet_exports_resolve():
    for name in spotnet.__all__:
        assert getattr(spotnet, name) is not None, name
    assert set(spotnet.__all__) <= set(dir(spotnet))


def test_import_spotnet_and_evaluation_is_cheap():
    # spotnet is lazy like flowkit; `spotnet evaluate` only needs the evaluation module, no torch.
    code = ("import sys, spotnet, spotnet.evaluation, cli.entry; "
            "print('torch' in sys.modules, 'h5py' in sys.modules, 'zarr' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "False"]


def test_readme_api_example():
    rng = np.random.default_rng(0)
    prev = rng.integers(0, 256, (2, 128, 128), dtype=np.uint8)
    nxt = np.roll(prev, 1, axis=2)  # everything moves 1 px right
    flow = flowkit.tvl1(prev, nxt, nscales=2, warps=1)
    assert flow.shape == (2, 2, 128, 128)
    # TV-L1's flow maps prev to nxt: a 1 px shift to the right is u = +1 away from the border.
    assert abs(float(np.median(flow[:, 0, 20:-20, 20:-20])) - 1.0) < 0.1
    landmarks = np.stack(np.meshgrid(np.linspace(20, 108, 17), np.linspace(30, 100, 4)), -1)
    landmarks = landmarks.reshape(-1, 2)[:68].astype(np.float32)
    feats = flowkit.features_from_flow(flow, landmarks)
    assert feats.shape == (2, 3, 42, 42)
    model = spotnet.SOFTNet().eval()
    with torch.no_grad():
        scores = model(spotnet.minmax_normalize(feats))
    assert scores.shape == (2,) and torch.isfinite(scores).all()
    assert spotnet.spot_intervals(scores.numpy(), k=6) == []  # 2 windows: too short to smooth
    intervals = spotnet.spot_intervals(rng.random(200), k=6)
    assert intervals and all(0 <= it.start <= it.end < 200 for it in intervals)


def test_readme_gpu_test_command_names_every_module_with_cuda_tests():
    # The GPU image lacks zarr, so the GPU runbook (CONTRIBUTING.md, docs/) names the modules to collect
    # instead of `tests/`; a module that gains a CUDA test must join every copy of that list or it never runs.
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    pages = [root / "README.md", root / "CONTRIBUTING.md", *sorted((root / "docs").glob("*.md"))]
    commands = []
    for page in pages:
        lines = page.read_text().splitlines()
        for start in (i for i, line in enumerate(lines) if "python3 -m pytest -q -m cuda" in line):
            command = lines[start]
            while command.endswith("\\"):
                start += 1
                command = command[:-1] + lines[start]
            commands.append(command)
    assert commands, "the GPU runbook should give the CUDA test command"
    with_cuda = {
        f"tests/{path.name}"
        for path in (root / "tests").glob("test_*.py")
        # a marker, DEVICES parametrising, or the conftest `device` fixture (the CPU and CUDA)
        if re.search(r"@pytest\.mark\.cuda|\bDEVICES\)|def test_\w+\([^)]*\bdevice\b", path.read_text())
    }
    for command in commands:
        named = {word for word in command.split() if word.startswith("tests/test_")}
        assert with_cuda and with_cuda <= named, sorted(with_cuda - named)
