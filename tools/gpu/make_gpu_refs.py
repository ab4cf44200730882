"""Reference flows for tools/gpu/gpu_check.py, made on the CPU (needs cv2.optflow and the video).

The GPU machines have neither OpenCV's contrib module nor the shared data, so their inputs
travel as one file: the 128x128 face crops of ``WolfgangLanger_Pexels.mp4`` for pairs (i, i + k)
every 16th start at k = 6 and k = 18 (30 + 29 pairs) and the 16 pairs of benchmarks/bench_flow.py
(k = 6, starts 0, 3, ..., 45), with OpenCV's DualTVL1 flow and the CPU torch solver's flow of
each, SPEC-default parameters. The flows are stored as float32 with their bytes shuffled
(exponents together), which compresses them about twice as well as plain float32.

Run (about two minutes on 2 cores):
    python tools/gpu/make_gpu_refs.py [--out tools/gpu/gpu_refs/flows.npz]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from fixtures.faces import FACE_VIDEO, face_frames, face_pairs  # noqa: E402
from flowkit.flow.opencv_tvl1 import tvl1_opencv  # noqa: E402
from flowkit.flow.torch_tvl1 import tvl1_torch  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "gpu_refs" / "flows.npz"
N_FRAMES = 472
STEP = 16
BENCH_STARTS = tuple(range(0, 48, 3))  # bench_flow.py's CPU_PAIRS windows


def shuffle_bytes(a: np.ndarray) -> np.ndarray:
    """float32 (...) -> uint8 (4, ...): byte planes, the layout gpu_check's ``unshuffle_bytes`` reads."""
    return np.moveaxis(np.ascontiguousarray(a, dtype="<f4").view(np.uint8).reshape(*a.shape, 4), -1, 0).copy()


def _groups():
    yield "k6", 6, tuple(range(0, N_FRAMES - 6, STEP))
    yield "k18", 18, tuple(range(0, N_FRAMES - 18, STEP))
    yield "bench", 6, BENCH_STARTS


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent)
    return done.stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    if not FACE_VIDEO.is_file():
        sys.exit(f"the test video {FACE_VIDEO} should exist, got none")
    face_frames(N_FRAMES)
    prev, nxt, group, ks, starts = [], [], [], [], []
    for name, k, group_starts in _groups():
        a, b = face_pairs(k, group_starts)
        prev.append(a)
        nxt.append(b)
        group += [name] * len(group_starts)
        ks += [k] * len(group_starts)
        starts += list(group_starts)
    prev, nxt = np.concatenate(prev), np.concatenate(nxt)
    print(f"{len(prev)} pairs: OpenCV ...", file=sys.stderr)
    ref_cv = tvl1_opencv(prev, nxt)
    print("CPU torch ...", file=sys.stderr, flush=True)
    chunks = range(0, len(prev), 16)
    ref_torch = np.concatenate([tvl1_torch(torch.from_numpy(prev[i : i + 16]), torch.from_numpy(nxt[i : i + 16]))
                                for i in chunks])
    meta = {"video": FACE_VIDEO.name, "tvl1": "SPEC defaults", "opencv": cv2.__version__, "torch": torch.__version__,
            "numpy": np.__version__, "python": platform.python_version(), "cpu": platform.machine(),
            "commit": _commit(), "layout": "opencv/torch_cpu: uint8 (4, N, 2, 128, 128) byte planes of float32"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, prev=prev, nxt=nxt, group=np.array(group), k=np.array(ks), start=np.array(starts),
                        opencv=shuffle_bytes(ref_cv), torch_cpu=shuffle_bytes(ref_torch), meta=json.dumps(meta))
    epe = np.sqrt(((ref_torch - ref_cv) ** 2).sum(1)).mean(axis=(1, 2))
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB); CPU torch vs OpenCV EPE mean "
          f"{epe.mean():.4f} max {epe.max():.4f}", file=sys.stderr)


if __name__ == "__main__":
    main()
