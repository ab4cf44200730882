"""Test markers for the TV-L1 tests, and the face pairs of :mod:`fixtures.faces` they use."""

from __future__ import annotations

import pytest
import torch

from fixtures.faces import DATA_DIR, FACE_BOX, FACE_VIDEO, face_frames, face_pairs

__all__ = ["DATA_DIR", "DEVICES", "FACE_BOX", "FACE_VIDEO", "face_frames", "face_pairs", "needs_optflow", "needs_video"]


#: A test that needs the shared face video skips with a reason where it is absent (GPU machines).
needs_video = pytest.mark.skipif(not FACE_VIDEO.is_file(), reason=f"test video {FACE_VIDEO} is absent")


def _has_optflow() -> bool:
    import cv2

    return hasattr(cv2, "optflow")


#: A test that runs OpenCV's TV-L1 skips where cv2 has no contrib modules: GPU images often carry
#: opencv-python-headless.
needs_optflow = pytest.mark.skipif(not _has_optflow(), reason="cv2.optflow (opencv-contrib) is absent")

#: Torch devices: the CPU always, CUDA where present (marked, skipped with a reason); the ``device``
#: fixture of conftest.py runs a test on each.
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
