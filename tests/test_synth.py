"""Synthetic benchmark: layout, annotations, discovery ids, determinism and drawn motion."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from flowkit.errors import FlowkitError
from flowkit.io.sources import discover_videos
from flowkit.synth import DEFAULT_DATA_DIR, make_synthetic_dataset

SHARED_MODEL = Path(__file__).resolve().parents[2] / "shared" / "models" / "face_landmarker.task"

pytestmark = pytest.mark.skipif(
    not (DEFAULT_DATA_DIR / "single_face.mp4").is_file()
    or not (os.environ.get("FLOWKIT_MEDIAPIPE_MODEL") or SHARED_MODEL.is_file()),
    reason="needs ../shared/data face videos and a MediaPipe face_landmarker.task",
)

SMALL = dict(subjects=2, videos_per_subject=1, seconds=5.0, fps=15.0, size=128, macro_per_video=1,
             micro_per_video=1, macro_seconds=(0.8, 1.0), micro_seconds=(0.3, 0.4))


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    if "FLOWKIT_MEDIAPIPE_MODEL" not in os.environ:
        os.environ["FLOWKIT_MEDIAPIPE_MODEL"] = str(SHARED_MODEL)
    out = tmp_path_factory.mktemp("synth")
    return out, make_synthetic_dataset(out, seed=3, **SMALL)


def test_layout_and_annotations(synth):
    out, intervals = synth
    rows = list(csv.DictReader(open(out / "annotations.csv", encoding="utf-8")))
    assert list(rows[0]) == ["video", "subject", "onset", "apex", "offset", "type"]
    assert len(rows) == len(intervals) == 4
    for row, it in zip(rows, intervals):
        assert int(row["onset"]) == it.onset + 1 and int(row["offset"]) == it.offset + 1
        assert it.onset <= it.apex <= it.offset < 75
    assert {r["type"] for r in rows} == {"macro", "micro"}
    found = {v.video_id: v.subject for v in discover_videos(out)}
    assert found == {"sub01_v1": "sub01", "sub02_v1": "sub02"}
    assert {r["video"] for r in rows} <= set(found)
    assert len(list((out / "sub01_v1").glob("*.png"))) == 75


def test_events_move_pixels(synth):
    out, intervals = synth
    it = next(i for i in intervals if i.type == "macro" and i.video == "sub01_v1")
    before = cv2.imread(str(out / it.video / f"frame_{it.onset + 1:05d}.png"), cv2.IMREAD_GRAYSCALE).astype(float)
    apex = cv2.imread(str(out / it.video / f"frame_{it.apex + 1:05d}.png"), cv2.IMREAD_GRAYSCALE).astype(float)
    # Apex vs onset differs much more than sensor noise (sigma 1.5, mean |diff| about 1.7).
    assert np.abs(apex - before).mean() > 2.0


def test_same_seed_same_frames(synth, tmp_path):
    out, intervals = synth
    again = make_synthetic_dataset(tmp_path, seed=3, **SMALL)
    assert again == intervals
    a = cv2.imread(str(out / "sub02_v1" / "frame_00030.png"))
    b = cv2.imread(str(tmp_path / "sub02_v1" / "frame_00030.png"))
    np.testing.assert_array_equal(a, b)


def test_bad_arguments(tmp_path):
    with pytest.raises(FlowkitError, match="room"):
        make_synthetic_dataset(tmp_path, seconds=2.0)
    with pytest.raises(FlowkitError, match="among"):
        make_synthetic_dataset(tmp_path, wobble=3)
    with pytest.raises(FlowkitError, match="should be >= 1"):
        make_synthetic_dataset(tmp_path, subjects=0)


def test_astronaut_when_the_data_folder_is_absent(tmp_path, monkeypatch):
    """Outside this checkout (no ../shared/data) the faces come from scikit-image's astronaut; the
    landmarker must find that face, or synth would fail for a newcomer."""
    pytest.importorskip("skimage", reason="scikit-image (the demo extra) is not installed")
    monkeypatch.setenv("FLOWKIT_MEDIAPIPE_MODEL", os.environ.get("FLOWKIT_MEDIAPIPE_MODEL", str(SHARED_MODEL)))
    out = tmp_path / "synth"
    intervals = make_synthetic_dataset(out, seed=1, data_dir=tmp_path / "no_such_folder", **SMALL)
    assert {iv.subject for iv in intervals} == {"sub01", "sub02"}
    assert [v.video_id for v in discover_videos(out)] == ["sub01_v1", "sub02_v1"]


def test_no_faces_anywhere_is_a_clear_error(tmp_path, monkeypatch):
    import flowkit.synth as synth_mod

    monkeypatch.setattr(synth_mod, "_astronaut", lambda: [])
    with pytest.raises(FlowkitError, match="install scikit-image"):
        make_synthetic_dataset(tmp_path / "out", data_dir=tmp_path / "no_such_folder", **SMALL)
