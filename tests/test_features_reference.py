"""Acceptance test: features_from_flow against an independent NumPy/OpenCV transcription of SPEC 3-4.

On a real video (../shared/data/WolfgangLanger_Pexels.mp4): reference frame and crop with
MediaPipe (SPEC 1), TV-L1 flow of a few window pairs with OpenCV's DualTVL1 at its defaults
(= SPEC 2 defaults), then the features two ways from the same flow and landmarks.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from flowkit.face.crop import crop_face, crop_landmarks, find_reference
from flowkit.features.chain import features_from_flow
from flowkit.io.sources import open_source

K = 6  # CAS(ME)^2 micro k
STARTS = (0, 150, 300)


def spec_features(u: np.ndarray, v: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """SPEC sections 3 and 4, written directly from the text. u, v (128, 128) float32 -> (3, 42, 42)."""
    x = [int(round(float(a))) for a in landmarks[:, 0]]
    y = [int(round(float(a))) for a in landmarks[:, 1]]
    # 3. optical strain, forward differences, rows/cols 0..126, then copy row/col 126 to 127
    du_dx = -np.diff(u, axis=1)  # u[y, x] - u[y, x+1], shape (128, 127)
    dv_dx = -np.diff(v, axis=1)
    du_dy = -np.diff(u, axis=0)  # u[y, x] - u[y+1, x], shape (127, 128)
    dv_dy = -np.diff(v, axis=0)
    e = np.empty((128, 128), np.float32)
    e[:127, :127] = np.sqrt(du_dx[:127] ** 2 + dv_dy[:, :127] ** 2 + 0.5 * (du_dy[:, :127] + dv_dx[:127]) ** 2)
    e[:127, 127] = e[:127, 126]
    e[127, :] = e[126, :]
    img = np.dstack([u, v, e]).astype(np.float32)  # (128, 128, 3), as the released code holds it
    # 4.1 global head motion: 11x11 patch around landmark 28
    patch = img[y[28] - 5:y[28] + 6, x[28] - 5:x[28] + 6]
    img[:, :, 0] = np.abs(img[:, :, 0] - patch[:, :, 0].mean())
    img[:, :, 1] = np.abs(img[:, :, 1] - patch[:, :, 1].mean())
    img[:, :, 2] = img[:, :, 2] - patch[:, :, 2].mean()
    # 4.2 eye masking
    left = [(x[36] - 15, y[36]), (x[37], y[37] - 15), (x[38], y[38] - 15), (x[39] + 15, y[39]),
            (x[40], y[40] + 15), (x[41], y[41] + 15)]
    right = [(x[42] - 15, y[42]), (x[43], y[43] - 15), (x[44], y[44] - 15), (x[45] + 15, y[45]),
             (x[46], y[46] + 15), (x[47], y[47] + 15)]
    for poly in (left, right):
        cv2.fillPoly(img, [np.clip(np.array(poly, np.int32), 0, 128)], 0)
    # 4.3 ROI: eye-and-brow box and mouth box, clamped, each resized to 42 wide x 21 tall
    c = lambda a: min(max(a, 0), 128)  # noqa: E731
    eye = img[c(min(y[19], y[24]) - 12):c(max(y[41], y[46]) + 12), c(x[17] - 12):c(x[26] + 12)]
    mouth = img[c(y[50] - 12):c(y[57] + 12), c(x[60] - 12):c(x[64] + 12)]
    out = np.zeros((42, 42, 3), np.float32)
    out[:21] = cv2.resize(eye, (42, 21), interpolation=cv2.INTER_LINEAR)
    out[21:] = cv2.resize(mouth, (42, 21), interpolation=cv2.INTER_LINEAR)
    return out.transpose(2, 0, 1)


@pytest.fixture(scope="module")
def windows(data_dir, mp_landmarker):
    src = open_source(data_dir / "WolfgangLanger_Pexels.mp4")
    index, face = find_reference(src, mp_landmarker)
    wanted = {i + d for i in STARTS for d in (0, K)} | {index}
    crops, reference_frame = {}, None
    for i, frame in enumerate(src):
        if i == index:
            reference_frame = frame
        if i in wanted:
            crops[i] = crop_face(frame, face.box)
        if i >= max(wanted):
            break
    points, redetected = crop_landmarks(mp_landmarker, crops[index], reference=face, frame_shape=reference_frame.shape)
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()  # OpenCV defaults = SPEC 2
    flows = np.stack([tvl1.calc(crops[i], crops[i + K], None).transpose(2, 0, 1) for i in STARTS])
    return index, redetected, points, flows.astype(np.float32)


def test_reference_frame_and_crop_landmarks(windows):
    index, redetected, points, flows = windows
    assert index == 0 and redetected
    assert points.shape == (68, 2)
    # brows, eyes, nose and mouth lie inside the crop (the jaw may not: dlib-like boxes cut the chin)
    assert (points[17:] >= 0).all() and (points[17:] < 128).all()
    assert flows.shape == (len(STARTS), 2, 128, 128) and np.abs(flows).max() > 0.1


def test_features_match_spec_transcription(windows):
    """Max abs difference <= 1e-4.

    Both sides are float32. They differ by the order of float32 reductions (patch means: torch vs
    NumPy pairwise sums, ~1e-7 relative) and by how torch and OpenCV round the bilinear sample
    positions (~1e-5 times the local pixel difference, see test_preprocess); flow and strain
    values here are a few pixels at most, so 1e-4 bounds both with margin while any indexing,
    sign or order mistake gives errors of order 0.01-1.
    """
    _, _, points, flows = windows
    ours = features_from_flow(torch.from_numpy(flows), points).numpy()
    ref = np.stack([spec_features(f[0], f[1], points) for f in flows])
    diff = np.abs(ours - ref).max()
    print(f"max abs difference features_from_flow vs SPEC transcription: {diff:.3g}")
    assert ours.shape == ref.shape == (len(STARTS), 3, 42, 42)
    assert diff <= 1e-4
    # the features are not trivially zero: masking and ROI kept real motion
    assert np.abs(ref).max() > 0.05
