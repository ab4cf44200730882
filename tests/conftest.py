"""Shared fixtures: the ../shared folder (test videos, MediaPipe model) and landmarkers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = (REPO_ROOT / ".." / "shared").resolve()
MEDIAPIPE_MODEL = SHARED_DIR / "models" / "face_landmarker.task"
if str(REPO_ROOT) not in sys.path:  # fixtures/ (shared with the benchmarks) under a bare `pytest` too
    sys.path.insert(0, str(REPO_ROOT))

from flow_fixtures import DEVICES  # noqa: E402 - after the path above: it imports fixtures/

# Tests never download: point the project at the shared copy of the model when it is there.
if MEDIAPIPE_MODEL.is_file():
    os.environ.setdefault("FLOWKIT_MEDIAPIPE_MODEL", str(MEDIAPIPE_MODEL))


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """The torch device a test runs on: the CPU always, CUDA where present (marked ``cuda``,
    skipped with a reason without one). A test takes it by naming ``device``."""
    return request.param


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` relative to the repository root; skips when it is absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"shared test data folder {SHARED_DIR} is absent")
    return SHARED_DIR


@pytest.fixture(scope="session")
def data_dir(shared_dir) -> Path:
    d = shared_dir / "data"
    if not d.is_dir():
        pytest.skip(f"shared test videos folder {d} is absent")
    return d


@pytest.fixture(scope="session")
def mediapipe_model(shared_dir) -> Path:
    if not MEDIAPIPE_MODEL.is_file():
        pytest.skip(f"MediaPipe model {MEDIAPIPE_MODEL} is absent")
    return MEDIAPIPE_MODEL


@pytest.fixture(scope="session")
def mp_landmarker(mediapipe_model):
    pytest.importorskip("mediapipe")
    from flowkit.face.landmarks.mediapipe_backend import MediaPipeLandmarker

    lm = MediaPipeLandmarker(mediapipe_model)
    yield lm
    lm.close()


@pytest.fixture(scope="session")
def dlib_landmarker():
    pytest.importorskip("dlib", reason="the dlib extra is not installed")
    from flowkit.face.landmarks.dlib_backend import DlibLandmarker

    return DlibLandmarker()
