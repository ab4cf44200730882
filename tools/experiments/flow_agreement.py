"""How closely the torch TV-L1 solver follows OpenCV on every part of a face video, next to how
closely OpenCV follows itself.

For pairs (i, i + k) of the 128x128 face crops of WolfgangLanger_Pexels.mp4 (every ``STEP``-th
start, k = 6 and 18, SPEC-default parameters) it reports the mean end-point error (EPE) of:

- torch vs OpenCV;
- OpenCV on the same pair with the first frame perturbed by uniform noise of +-1e-3 grey levels
  vs OpenCV on the clean pair: OpenCV's own sensitivity, the floor that any float32
  re-implementation with another operation order meets.

Run (about 2 minutes on 2 cores):
    python tools/experiments/flow_agreement.py [STEP] > benchmarks/results/flow_agreement_cpu.json
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from fixtures.faces import FACE_VIDEO, face_frames, face_pairs  # noqa: E402
from flowkit.flow.opencv_tvl1 import tvl1_opencv  # noqa: E402
from flowkit.flow.torch_tvl1 import tvl1_torch  # noqa: E402

N_FRAMES = 472  # frames of the video


def epe(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean end-point error per pair of two (B, 2, H, W) flows: (B,)."""
    return np.sqrt(((a - b) ** 2).sum(1)).mean(axis=(1, 2))


def opencv_float(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """OpenCV TV-L1 on float frames in 0-255 (OpenCV scales float input by 255, hence the / 255)."""
    solver = cv2.optflow.DualTVL1OpticalFlow_create()
    return np.stack([solver.calc(a / 255, b / 255, None).transpose(2, 0, 1) for a, b in zip(prev, nxt)])


def summary(x: np.ndarray) -> dict:
    return {"mean": float(x.mean()), "median": float(np.median(x)), "max": float(x.max()),
            "share_above_0.05": float((x > 0.05).mean())}


def main() -> None:
    step = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    torch.set_num_threads(os.cpu_count() or 1)
    face_frames(N_FRAMES)  # fails loudly if the video is shorter
    rng = np.random.default_rng(0)
    out = {"video": FACE_VIDEO.name, "step": step, "tvl1": "SPEC defaults", "opencv": cv2.__version__,
           "torch": torch.__version__, "cpu": platform.machine(), "results": {}}
    for k in (6, 18):
        starts = tuple(range(0, N_FRAMES - k, step))
        a, b = face_pairs(k, starts)
        ref = tvl1_opencv(a, b)
        ours = tvl1_torch(torch.from_numpy(a), torch.from_numpy(b)).numpy()
        noisy = a.astype(np.float32) + rng.uniform(-1e-3, 1e-3, a.shape).astype(np.float32)
        perturbed = opencv_float(noisy, b.astype(np.float32))
        torch_vs_cv, cv_vs_cv = epe(ours, ref), epe(perturbed, ref)
        out["results"][f"k{k}"] = {
            "pairs": len(starts),
            "mean_flow_magnitude_px": float(np.sqrt((ref ** 2).sum(1)).mean()),
            "torch_vs_opencv_epe": summary(torch_vs_cv),
            "opencv_perturbed_vs_opencv_epe": summary(cv_vs_cv),
            "per_pair_torch_vs_opencv": torch_vs_cv.round(5).tolist(),
            "per_pair_opencv_perturbed": cv_vs_cv.round(5).tolist(),
        }
        print(f"k={k}: {len(starts)} pairs; EPE torch vs OpenCV mean {torch_vs_cv.mean():.4f}; OpenCV "
              f"perturbed vs OpenCV mean {cv_vs_cv.mean():.4f}", file=sys.stderr)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
