"""What every GPU result file records about its run: the commit, the software and the GPU's clocks.

A GPU machine gets a copy of the working tree, often without .git: set ``FLOWKIT_COMMIT`` in the
command (``FLOWKIT_COMMIT=$(git rev-parse HEAD)`` expanded here, before the command travels).
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLOCK_FIELDS = ("name", "driver_version", "clocks.sm", "clocks.mem", "clocks.max.sm", "clocks.max.mem",
                "power.limit")


def commit() -> str:
    """The checked-out commit: ``FLOWKIT_COMMIT``, else git, else "unknown"."""
    if os.environ.get("FLOWKIT_COMMIT"):
        return os.environ["FLOWKIT_COMMIT"]
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def gpu_clocks() -> dict:
    """The GPU's name, driver version, clocks (current and maximum, MHz) and power limit (W), from
    nvidia-smi, or {"error": why not}."""
    try:
        done = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(CLOCK_FIELDS)}", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": f"nvidia-smi: {exc}"}
    if done.returncode != 0:
        return {"error": f"nvidia-smi exited {done.returncode}: {done.stderr.strip()[:200]}"}
    first = done.stdout.strip().splitlines()[0]
    return dict(zip(CLOCK_FIELDS, (v.strip() for v in first.split(","))))


def provenance(device=None, **repeats: int) -> dict:
    """{"commit", "torch", "triton", "python", "device", "cuda", "gpu": clocks, "repeats"} for a
    torch ``device`` (None: CUDA when available); ``repeats`` names how often each figure was timed."""
    import torch

    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    out = {"commit": commit(), "torch": torch.__version__, "triton": triton_version,
           "python": platform.python_version(), "cpu_count": os.cpu_count(),
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
    if device.type == "cuda":
        out["cuda"] = torch.version.cuda
        out["gpu"] = gpu_clocks()
    if repeats:
        out["repeats"] = repeats
    return out
