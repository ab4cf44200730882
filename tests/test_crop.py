"""flowkit.face.crop: reference frame, face crop, landmarks on the crop (SPEC 1)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from flowkit.errors import FlowkitError
from flowkit.face.crop import clamp_box, crop_face, crop_landmarks, find_reference, points_to_crop
from flowkit.face.landmarks import Face
from flowkit.io.sources import open_source


class _Scripted:
    """Landmarker stub that finds a face only on the frames listed."""

    def __init__(self, hits):
        self.hits, self.calls = set(hits), 0
        self.face = Face((1, 2, 5, 6), np.zeros((68, 2)))

    def detect(self, image):
        self.calls += 1
        return self.face if self.calls - 1 in self.hits else None


def test_find_reference_first_face_and_stops():
    stub = _Scripted({3, 5})
    index, face = find_reference((np.zeros((8, 8, 3), np.uint8) for _ in range(10)), stub)
    assert index == 3 and face is stub.face and stub.calls == 4


def test_find_reference_no_face_message():
    with pytest.raises(FlowkitError, match="no face found in any of 4 frames of the input"):
        find_reference([np.zeros((8, 8, 3), np.uint8)] * 4, _Scripted(set()))


def test_no_face_video(data_dir, mp_landmarker):
    src = open_source(data_dir / "no_face.mp4")
    no_face = r"no face found in any of 95 frames of .*no_face\.mp4"
    with pytest.warns(UserWarning), pytest.raises(FlowkitError, match=no_face):
        find_reference(src, mp_landmarker)


def test_face_appears_later(data_dir, mp_landmarker):
    # frames 0..95 show a title without a face; MediaPipe at its 0.5 default threshold took a
    # letter of the title for a face at frame 90.
    index, face = find_reference(open_source(data_dir / "noface_face.mov"), mp_landmarker)
    assert index == 96
    x0, y0, x1, y1 = face.box
    assert 200 < x1 - x0 < 400 and 250 < (x0 + x1) / 2 < 650


def test_clamp_box():
    assert clamp_box((-5, -3, 20, 30), 10, 12) == (0, 0, 10, 12)
    assert clamp_box((2, 3, 6, 9), 10, 12) == (2, 3, 6, 9)


def test_crop_face_matches_cv2_and_clamps():
    """SPEC 1 as the released code does it: resize the colour crop, then make it gray."""
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    out = crop_face(frame, (10, 5, 50, 45))
    assert out.shape == (128, 128) and out.dtype == np.uint8

    def released(patch, size=128):
        return cv2.cvtColor(cv2.resize(patch, (size, size)), cv2.COLOR_BGR2GRAY)

    np.testing.assert_array_equal(out, released(frame[5:45, 10:50]))
    # the other order (gray, then resize) differs by a grey level in places: the order matters
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    assert np.abs(out.astype(int) - cv2.resize(gray[5:45, 10:50], (128, 128))).max() >= 1
    # a box over the border is cut to the image, not padded
    np.testing.assert_array_equal(crop_face(frame, (-10, -10, 30, 30)), released(frame[0:30, 0:30]))
    np.testing.assert_array_equal(crop_face(gray, (10, 5, 50, 45), size=64), cv2.resize(gray[5:45, 10:50], (64, 64)))
    with pytest.raises(FlowkitError, match="overlap"):
        crop_face(frame, (100, 100, 120, 120))
    with pytest.raises(FlowkitError, match="uint8"):
        crop_face(frame.astype(np.float32), (0, 0, 10, 10))


def test_jpeg_crop_equals_imwrite_imread(tmp_path):
    """``jpeg=True`` equals the released code's files: cv2.imwrite(.jpg) of the resized colour crop,
    then cv2.imread(..., 0) (Extraction_Preprocess.ipynb cells 4 and 6), to the grey level."""
    rng = np.random.default_rng(1)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8), (5, 5), 0)
    box = (20, 10, 100, 85)
    name = str(tmp_path / "img001.jpg")
    cv2.imwrite(name, cv2.resize(frame[10:85, 20:100], (128, 128)))
    np.testing.assert_array_equal(crop_face(frame, box, jpeg=True), cv2.imread(name, 0))
    assert not np.array_equal(crop_face(frame, box, jpeg=True), crop_face(frame, box))


def test_points_to_crop_follows_resize():
    # A bright pixel at (x, y) in the frame lands at the predicted crop position.
    frame = np.zeros((100, 100), np.uint8)
    frame[40, 30] = 255
    box = (20, 20, 84, 84)  # 64 px -> 128 px, scale 2
    crop = crop_face(frame, box)
    (px, py), = points_to_crop(np.array([[30.0, 40.0]]), box, frame.shape)
    assert (px, py) == (20.5, 40.5)  # (30 - 20 + 0.5) * 2 - 0.5
    ys, xs = np.nonzero(crop == crop.max())
    assert xs.mean() == pytest.approx(px) and ys.mean() == pytest.approx(py)


def test_crop_landmarks_fallback():
    ref = Face((10, 10, 74, 74), np.full((68, 2), 42.0))
    pts, redetected = crop_landmarks(_Scripted(set()), np.zeros((128, 128), np.uint8), reference=ref,
                                     frame_shape=(100, 100))
    assert not redetected and pts.shape == (68, 2) and pts.dtype == np.float32
    np.testing.assert_allclose(pts, (42 - 10 + 0.5) * 2 - 0.5)
    with pytest.raises(FlowkitError, match="cropped reference frame"):
        crop_landmarks(_Scripted(set()), np.zeros((128, 128), np.uint8))


def test_crop_landmarks_real_face(data_dir, mp_landmarker):
    src = open_source(data_dir / "single_face.mp4")
    index, face = find_reference(src, mp_landmarker)
    assert index == 0
    frame = next(iter(src))
    crop = crop_face(frame, face.box)
    pts, redetected = crop_landmarks(mp_landmarker, crop, reference=face, frame_shape=frame.shape)
    assert redetected and pts.shape == (68, 2)
    mapped = points_to_crop(face.points, face.box, frame.shape)
    # re-detection on the crop agrees with the frame's points mapped into the crop
    assert np.linalg.norm(pts - mapped, axis=1).mean() < 3.0
