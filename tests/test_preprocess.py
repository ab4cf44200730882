"""flowkit.features.head_motion, eye_mask, roi, features (SPEC 4) with hand-made inputs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from fixtures.faces import face_points
from flowkit.errors import FlowkitError
from flowkit.features.chain import FlowFeatures, features_from_flow
from flowkit.features.eye_mask import apply_eye_mask, eye_mask, eye_polygons
from flowkit.features.head_motion import landmarks_as_int, nose_patch, remove_head_motion
from flowkit.features.roi import extract_roi, roi_boxes


def test_landmarks_as_int_rounds_to_nearest():
    p = face_points()
    p[0] = (10.4, 10.6)
    q = landmarks_as_int(torch.from_numpy(p))
    assert q.dtype == np.int64 and tuple(q[0]) == (10, 11)
    with pytest.raises(FlowkitError, match=r"\(68, 2\)"):
        landmarks_as_int(np.zeros((67, 2)))
    p[3, 0] = np.nan
    with pytest.raises(FlowkitError, match="finite"):
        landmarks_as_int(p)


# --- 4.1 head motion -----------------------------------------------------------------------------


def test_head_motion_mean_removal(device):
    pts = face_points()  # landmark 28 at (64, 54)
    rng = np.random.default_rng(1)
    uve = rng.standard_normal((2, 3, 128, 128)).astype(np.float32)
    patch = uve[:, :, 49:60, 59:70]  # rows y28-5..y28+5, cols x28-5..x28+5
    mean = patch.mean(axis=(2, 3), keepdims=True)
    out = remove_head_motion(torch.from_numpy(uve).to(device), pts).cpu().numpy()
    np.testing.assert_allclose(out[:, :2], np.abs(uve[:, :2] - mean[:, :2]), atol=1e-6)
    np.testing.assert_allclose(out[:, 2], uve[:, 2] - mean[:, 2], atol=1e-6)
    assert (out[:, 2] < 0).any()  # no absolute value on e
    assert (out[:, :2] >= 0).all()


def test_head_motion_constant_shift_cancels():
    uve = torch.zeros(1, 3, 128, 128)
    uve[:, 0] = 2.5
    uve[:, 1] = -1.0
    uve[:, 2] = 0.3
    out = remove_head_motion(uve, face_points())
    assert out.abs().max() < 1e-6


def test_nose_patch_is_clipped_at_the_border():
    pts = face_points()
    assert nose_patch(pts) == (49, 60, 59, 70)
    pts[28] = (2, 125)
    assert nose_patch(pts) == (120, 128, 0, 8)
    pts[28] = (300, 300)
    with pytest.raises(FlowkitError, match="landmark 28"):
        nose_patch(pts)
    with pytest.raises(FlowkitError, match=r"\(B, 3, H, W\)"):
        remove_head_motion(torch.zeros(1, 2, 128, 128), face_points())


# --- 4.2 eye mask --------------------------------------------------------------------------------


def test_eye_polygons_offsets():
    left, right = eye_polygons(face_points())
    np.testing.assert_array_equal(left, [(19, 52), (40, 33), (46, 33), (67, 52), (46, 70), (40, 70)])
    np.testing.assert_array_equal(right, [(61, 52), (82, 33), (88, 33), (109, 52), (88, 70), (82, 70)])


def test_eye_mask_placement():
    m = eye_mask(face_points())
    assert m.shape == (128, 128) and m.dtype == bool
    assert m[52, 19] and m[52, 67] and m[52, 43] and m[34, 43] and m[69, 43]  # corners, centre, lids
    assert not m[52, 17] and not m[31, 43] and not m[72, 43]
    assert m[52, 109] and not m[52, 111]
    assert not m[90, 64] and not m[10, 10]  # mouth and elsewhere untouched
    # filled by cv2.fillPoly exactly
    ref = np.zeros((128, 128), np.uint8)
    for poly in eye_polygons(face_points()):
        cv2.fillPoly(ref, [poly], 1)
    np.testing.assert_array_equal(m, ref.astype(bool))


def test_eye_mask_clamped():
    p = face_points()
    p[36] = (5, 52)  # 5 - 15 < 0
    p[37:39, 1] = 10  # 10 - 15 < 0
    p[45] = (125, 52)  # 125 + 15 > 128
    left, right = eye_polygons(p)
    assert left.min() >= 0 and right.max() <= 128
    assert tuple(left[0]) == (0, 52) and tuple(left[1]) == (40, 0) and tuple(right[3]) == (128, 52)
    m = eye_mask(p)
    assert m[52, 0] and m[0, 40] and m[52, 127]


def test_apply_eye_mask(device):
    uve = torch.ones(2, 3, 128, 128, device=device)
    mask = eye_mask(face_points())
    out = apply_eye_mask(uve, mask)
    assert out.device == uve.device
    assert (out[:, :, torch.from_numpy(mask)] == 0).all()
    assert (out[:, :, torch.from_numpy(~mask)] == 1).all()
    with pytest.raises(FlowkitError, match="mask should have shape"):
        apply_eye_mask(uve, np.zeros((64, 64), bool))


# --- 4.3 ROI -------------------------------------------------------------------------------------


def test_roi_boxes_coordinates():
    eye, mouth = roi_boxes(face_points())
    # x17-12 .. x26+12, min(y19, y24)-12 .. max(y41, y46)+12
    assert eye == (22 - 12, 37 - 12, 106 + 12, 55 + 12)
    # x60-12 .. x64+12, y50-12 .. y57+12
    assert mouth == (50 - 12, 86 - 12, 78 + 12, 99 + 12)


def test_roi_boxes_clamped_and_empty():
    p = face_points()
    p[17, 0], p[26, 0], p[19, 1], p[24, 1] = 4, 122, 6, 8
    p[57, 1] = 125
    eye, mouth = roi_boxes(p)
    assert eye == (0, 0, 128, 67) and mouth[3] == 128
    p[60, 0], p[64, 0] = 140, 141
    with pytest.raises(FlowkitError, match="mouth ROI box"):
        roi_boxes(p)


@pytest.mark.parametrize("box_hw", [(42, 84), (21, 42), (30, 50), (17, 97), (55, 61), (1, 3)])
def test_interpolate_equals_cv2_resize(box_hw):
    """F.interpolate(bilinear, align_corners=False, antialias=False) == cv2.resize INTER_LINEAR.

    Up- and downscaling (84x42 -> 42x21 is OpenCV's exact-2x special case). Same formula
    (source x = (dx + 0.5) * in / out - 0.5, clamped at the border); both round that source
    position to float32, in different ways, so results may differ by one float32 ulp of a
    coordinate below 128 (7.6e-6) times the difference of two neighbour pixels (at most 6 for
    values in [-3, 3]): tolerance 5e-5.
    """
    h, w = box_hw
    rng = np.random.default_rng(h * 1000 + w)
    patch = rng.uniform(-3, 3, (h, w, 3)).astype(np.float32)
    ref = cv2.resize(patch, (42, 21), interpolation=cv2.INTER_LINEAR)
    ours = torch.nn.functional.interpolate(torch.from_numpy(patch).permute(2, 0, 1)[None], size=(21, 42),
                                           mode="bilinear", align_corners=False, antialias=False)
    np.testing.assert_allclose(ours[0].permute(1, 2, 0).numpy(), ref, atol=5e-5, rtol=0)


def test_extract_roi_against_cv2():
    """Tolerance 5e-5: see test_interpolate_equals_cv2_resize (values here are N(0, 1))."""
    rng = np.random.default_rng(3)
    uve = rng.standard_normal((2, 3, 128, 128)).astype(np.float32)
    pts = face_points()
    out = extract_roi(torch.from_numpy(uve), pts).numpy()
    assert out.shape == (2, 3, 42, 42)
    (ex0, ey0, ex1, ey1), (mx0, my0, mx1, my1) = roi_boxes(pts)
    for b in range(2):
        img = uve[b].transpose(1, 2, 0)
        np.testing.assert_allclose(out[b, :, :21].transpose(1, 2, 0), cv2.resize(img[ey0:ey1, ex0:ex1], (42, 21)),
                                   atol=5e-5)
        np.testing.assert_allclose(out[b, :, 21:].transpose(1, 2, 0), cv2.resize(img[my0:my1, mx0:mx1], (42, 21)),
                                   atol=5e-5)


# --- features ------------------------------------------------------------------------------------


def test_features_smoke(device):
    flow = torch.randn(4, 2, 128, 128, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).to(device)
    out = features_from_flow(flow, face_points())
    assert out.shape == (4, 3, 42, 42) and out.dtype == torch.float32 and out.device == flow.device
    np_out = features_from_flow(flow.cpu().numpy(), face_points())
    torch.testing.assert_close(np_out, out.cpu(), atol=1e-6, rtol=0)
    with_mask = features_from_flow(flow, face_points(), mask=eye_mask(face_points()))
    torch.testing.assert_close(with_mask, out)
    module = FlowFeatures(face_points()).to(device)
    assert module.mask.device == flow.device
    torch.testing.assert_close(module(flow), out)


def test_features_zero_flow_is_zero():
    assert features_from_flow(torch.zeros(1, 2, 128, 128), face_points()).abs().max() == 0


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(1, 2, 64, 64), r"\(B, 2, 128, 128\)"),
    (torch.zeros(2, 128, 128), r"\(B, 2, 128, 128\)"),
    (torch.zeros(1, 2, 128, 128, dtype=torch.int64), "floating"),
    ([[0.0]], "torch.Tensor or numpy"),
])
def test_features_exceptions(bad, match):
    with pytest.raises(FlowkitError, match=match):
        features_from_flow(bad, face_points())
