"""Real face frame pairs for the TV-L1 tests and benchmarks (128x128 gray crops)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = (REPO_ROOT / ".." / "shared" / "data").resolve()
FACE_VIDEO = DATA_DIR / "WolfgangLanger_Pexels.mp4"
# A fixed box around the face in the 640x360 frames (x0, y0, x1, y1), checked by eye.
FACE_BOX = (320, 70, 550, 300)


@lru_cache(maxsize=4)
def face_frames(n: int = 60, size: int = 128) -> np.ndarray:
    """The first ``n`` frames of the face video: (n, size, size) uint8 gray crops."""
    import cv2

    cap = cv2.VideoCapture(str(FACE_VIDEO))
    frames = []
    x0, y0, x1, y1 = FACE_BOX
    while len(frames) < n:
        ok, frame = cap.read()
        if not ok:
            break
        gray = cv2.cvtColor(frame[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
        frames.append(cv2.resize(gray, (size, size), interpolation=cv2.INTER_LINEAR))
    cap.release()
    if len(frames) < n:
        raise RuntimeError(f"{FACE_VIDEO} should have {n} frames, got {len(frames)}")
    return np.stack(frames)


def face_pairs(k: int, starts: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (frame i, frame i + k) for i in ``starts``: two (B, 128, 128) uint8 arrays."""
    frames = face_frames(max(starts) + k + 1)
    idx = np.asarray(starts)
    return frames[idx].copy(), frames[idx + k].copy()


#: A test that needs the shared face video skips with a reason where it is absent (GPU machines).
needs_video = pytest.mark.skipif(not FACE_VIDEO.is_file(), reason=f"test video {FACE_VIDEO} is absent")


def _has_optflow() -> bool:
    import cv2

    return hasattr(cv2, "optflow")


#: A test that runs OpenCV's TV-L1 skips where cv2 has no contrib modules: GPU images often carry
#: opencv-python-headless.
needs_optflow = pytest.mark.skipif(not _has_optflow(), reason="cv2.optflow (opencv-contrib) is absent")

#: Torch devices for parametrised tests: the CPU always, CUDA where present (marked, skipped with a reason).
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
        ],
    ),
]
