"""flowkit's dlib features against a plain transcription of the authors' released notebook.

The transcription below is test-only code written from reading genbing99/SoftNet-SpotME's
``Extraction_Preprocess.ipynb`` (cell indices as stored in the notebook's JSON, 0-based):

- cell 4: dlib's HOG detector (upsample 1) on the first frame, its rectangle sliced
  ``image[top:bottom, left:right]``, the colour crop resized to 128x128 and written as JPEG;
- cell 6: the crops read back with ``cv2.imread(name, 0)``;
- cell 18: landmarks on the first gray crop, OpenCV DualTVL1 at its defaults, u and v through
  ``cv2.cartToPolar`` and back (``pol2cart``), strain with pandas shifts, head motion removed
  with the 11x11 patch at landmark 28, both eyes masked, two ROIs resized to 42x21.

Both pipelines read the same PNG frames of the shared videos. Without ``as_released`` the two
round trips are left out on the transcription's side too (gray from cvtColor of the resized
colour crop, u and v taken as they come out of TV-L1); with it both are in. ``SOFTNet_Spotting.ipynb``
cell 16's per-sample min-max (``cv2.normalize`` NORM_MINMAX, per channel) is applied to both to
compare what the model sees.

Tolerance 1e-4: the transcription holds the features in float64 (as the notebook does), flowkit in
float32; with flow and strain of a few pixels at most, float32 rounding stays below 1e-5, so
1e-4 leaves room for summation order and fails on any pixel of crop difference (those move
features by 1e-2 and more).
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
import pytest

K = 6  # CAS(ME)^2 micro k
# (video, first frame, frames): a smile with head motion, and a nearly still face. Both first crops hold
# a face for dlib (the notebook would otherwise take the next crop's landmarks, flowkit the reference frame's).
CLIPS = (("WolfgangLanger_Pexels.mp4", 300, K + 2), ("single_face.mp4", 0, K + 2))  # (video, first frame, frames)
TOL = 1e-4


# ------------------------------------------------------------------ the transcription (test-only)
def _notebook_crops(frame_files: list[Path], jpeg_dir: Path | None, detector) -> np.ndarray:
    """Cells 4 and 6: crop every frame with the first frame's dlib rectangle; (T, 128, 128) uint8 gray.

    With ``jpeg_dir`` the crops go through JPEG files as in the notebook; without it, gray comes
    from cvtColor of the resized colour crop (the round trip left out).
    """
    crops = []
    for n, path in enumerate(frame_files):
        image = cv2.imread(str(path))
        if n == 0:  # cell 4 uses the first frame as the reference; the last rectangle found wins
            for face_rect in detector(image, 1):
                top, bottom, left, right = face_rect.top(), face_rect.bottom(), face_rect.left(), face_rect.right()
        face = cv2.resize(image[top:bottom, left:right], (128, 128))
        if jpeg_dir is None:
            crops.append(cv2.cvtColor(face, cv2.COLOR_BGR2GRAY))
        else:
            name = str(jpeg_dir / f"img{n + 1:03d}.jpg")
            cv2.imwrite(name, face)
            crops.append(cv2.imread(name, 0))  # cell 6
    return np.array(crops)


def _strain(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Cell 18's computeStrain: pandas forward differences, NaN edges forward-filled."""
    import pandas as pd

    u_x = u - pd.DataFrame(u).shift(-1, axis=1)
    v_y = v - pd.DataFrame(v).shift(-1, axis=0)
    u_y = u - pd.DataFrame(u).shift(-1, axis=0)
    v_x = v - pd.DataFrame(v).shift(-1, axis=1)
    return np.array(np.sqrt(u_x ** 2 + v_y ** 2 + 1 / 2 * (u_y + v_x) ** 2).ffill(axis=1).ffill(axis=0))


def _notebook_points(crops: np.ndarray, detector, predictor) -> dict:
    """Cell 18's landmark block on the first gray crop with a face: eye polygons, ROI corners, nose point."""
    reference = crops[0]
    detect = detector(reference, 1)
    next_img = 0
    while len(detect) == 0:
        next_img += 1
        reference = crops[next_img]
        detect = detector(reference, 1)
    shape = predictor(reference, detect[0])
    x = [shape.part(i).x for i in range(68)]
    y = [shape.part(i).y for i in range(68)]
    left_eye = [(max(x[36] - 15, 0), y[36]), (x[37], max(y[37] - 15, 0)), (x[38], max(y[38] - 15, 0)),
                (min(x[39] + 15, 128), y[39]), (x[40], min(y[40] + 15, 128)), (x[41], min(y[41] + 15, 128))]
    right_eye = [(max(x[42] - 15, 0), y[42]), (x[43], max(y[43] - 15, 0)), (x[44], max(y[44] - 15, 0)),
                 (min(x[45] + 15, 128), y[45]), (x[46], min(y[46] + 15, 128)), (x[47], min(y[47] + 15, 128))]
    eyes = (min(max(y[19] - 12, 0), max(y[24] - 12, 0)), max(min(y[41] + 12, 128), min(y[46] + 12, 128)),
            max(x[17] - 12, 0), min(x[26] + 12, 128))
    mouth = (max(y[50] - 12, 0), min(y[57] + 12, 128), max(x[60] - 12, 0), min(x[64] + 12, 128))
    return {"left_eye": left_eye, "right_eye": right_eye, "eyes": eyes, "mouth": mouth, "nose": (x[28], y[28])}


def _notebook_window(img1, img2, pts: dict, *, polar: bool) -> np.ndarray:
    """Cell 18's per-window body: (42, 42, 3) float64."""
    flow = cv2.optflow.DualTVL1OpticalFlow_create().calc(img1, img2, None)
    if polar:
        magnitude, angle = cv2.cartToPolar(flow[..., 0], flow[..., 1])
        u, v = magnitude * np.cos(angle), magnitude * np.sin(angle)
    else:
        u, v = flow[..., 0], flow[..., 1]
    final = np.zeros((128, 128, 3))
    final[:, :, 0], final[:, :, 1], final[:, :, 2] = u, v, _strain(u, v)
    x61, y61 = pts["nose"]
    nose = final[y61 - 5:y61 + 6, x61 - 5:x61 + 6]
    final[:, :, 0] = abs(final[:, :, 0] - nose[:, :, 0].mean())
    final[:, :, 1] = abs(final[:, :, 1] - nose[:, :, 1].mean())
    final[:, :, 2] = final[:, :, 2] - nose[:, :, 2].mean()
    cv2.fillPoly(final, [np.array(pts["left_eye"])], 0)
    cv2.fillPoly(final, [np.array(pts["right_eye"])], 0)
    out = np.zeros((42, 42, 3))
    y0, y1, x0, x1 = pts["eyes"]
    out[:21] = cv2.resize(final[y0:y1, x0:x1, :], (42, 21))
    y0, y1, x0, x1 = pts["mouth"]
    out[21:] = cv2.resize(final[y0:y1, x0:x1, :], (42, 21))
    return out


@functools.lru_cache(maxsize=1)
def _dlib_models():
    """Cell 4's face detector and 68-point predictor, loaded once for the module."""
    import dlib

    from flowkit.face.landmarks.dlib_backend import shape_predictor_path

    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(shape_predictor_path()))


def notebook_features(frame_files: list[Path], *, as_released: bool, work: Path) -> np.ndarray:
    """Cells 4, 6 and 18 on one clip: (T - K, 3, 42, 42) float64."""
    detector, predictor = _dlib_models()
    crops = _notebook_crops(frame_files, work if as_released else None, detector)
    pts = _notebook_points(crops, detector, predictor)
    windows = [_notebook_window(crops[i], crops[i + K], pts, polar=as_released) for i in range(len(crops) - K)]
    return np.stack(windows).transpose(0, 3, 1, 2)


def minmax(features: np.ndarray) -> np.ndarray:
    """SOFTNet_Spotting.ipynb cell 16's normalize: cv2.normalize NORM_MINMAX per sample and channel."""
    out = np.empty(features.shape, np.float64)
    for n, sample in enumerate(features):
        for c in range(3):
            out[n, c] = cv2.normalize(np.asarray(sample[c], np.float64), None, alpha=0, beta=1,
                                      norm_type=cv2.NORM_MINMAX)
    return out


# ------------------------------------------------------------------ the comparison
@pytest.fixture(scope="module")
def clips(data_dir, tmp_path_factory) -> list[tuple[Path, list[Path]]]:
    """Each clip's frames as PNG files (what both pipelines read)."""
    pytest.importorskip("dlib", reason="the dlib extra is not installed")
    from flowkit.io.sources import open_source

    out = []
    for name, first, count in CLIPS:
        folder = tmp_path_factory.mktemp("frames") / Path(name).stem
        folder.mkdir()
        files = []
        for i, frame in enumerate(open_source(data_dir / name)):
            if i >= first + count:
                break
            if i >= first:
                files.append(folder / f"{i - first + 1:04d}.png")
                cv2.imwrite(str(files[-1]), frame)
        out.append((folder, files))
    return out


@pytest.mark.parametrize("as_released", [False, True], ids=["default", "as-released"])
def test_dlib_features_equal_the_notebook(clips, tmp_path, as_released):
    from flowkit.io.store import FeatureStore
    from flowkit.pipeline.extract import extract

    for folder, files in clips:
        store = tmp_path / f"{folder.name}.zarr"
        # The default is called without the option, as a user would.
        report = extract([folder], store, ks=[K], landmark_backend="dlib", flow_backend="opencv", workers=1,
                         progress=False, **({"as_released": True} if as_released else {}))
        assert report.ok, report.summary()
        with FeatureStore(store) as fs:
            (vid,) = fs.videos()
            ours = np.asarray(fs.features(vid, K)[:], np.float64)
            recorded = fs.video_attrs(vid).get("as_released")
        work = tmp_path / f"{folder.name}_jpeg"
        work.mkdir()
        theirs = notebook_features(files, as_released=as_released, work=work)
        assert ours.shape == theirs.shape == (len(files) - K, 3, 42, 42)
        assert np.abs(ours - theirs).max() < TOL, folder.name
        assert np.abs(minmax(ours) - minmax(theirs)).max() < TOL, folder.name
        assert recorded is as_released


def test_round_trips_change_the_features(clips, tmp_path):
    """The two modes differ (else the as-released case would test nothing)."""
    folder, files = clips[1]
    a = notebook_features(files[:K + 1], as_released=False, work=tmp_path)
    b = notebook_features(files[:K + 1], as_released=True, work=tmp_path)
    assert np.abs(minmax(a) - minmax(b)).mean() > 1e-3


def test_resuming_another_crop_record_is_refused(clips, tmp_path):
    """A store records its crop convention and ``as_released`` per video; a run with other ones (or
    on a store made before the convention was recorded) refuses the video in one line."""
    from flowkit.io.store import FeatureStore
    from flowkit.pipeline.extract import TEST_TVL1, extract

    folder, _ = clips[1]
    store = tmp_path / "s.zarr"
    kwargs = dict(ks=[K], landmark_backend="dlib", flow_backend="opencv", workers=1, progress=False,
                  flow_params=dict(TEST_TVL1))
    assert extract([folder], store, **kwargs).ok
    refused = extract([folder], store, **kwargs, as_released=True)
    (video,) = refused.videos
    assert video.status == "failed" and "\n" not in video.message
    assert "as_released=False, got 'released-slice-resize-gray' and as_released=True" in video.message
    with FeatureStore(store, mode="a") as fs:  # a store made before the convention was recorded
        fs.root["videos"][video.video_id].attrs.pop("crop_convention")
    old = extract([folder], store, **kwargs)
    assert old.videos[0].status == "failed" and "older: box 1 px larger" in old.videos[0].message


def test_torch_solver_round_trips_on_the_host():
    """With ``as_released`` the torch solver's flow goes through the same cartToPolar round trip,
    on the host, and comes back on the solver's device."""
    import torch

    from flowkit.flow.polar import polar_round_trip
    from flowkit.pipeline.extract import TEST_TVL1, resolve_settings

    rng = np.random.default_rng(0)
    prev = cv2.GaussianBlur(rng.integers(0, 256, (2, 32, 32), dtype=np.uint8).transpose(1, 2, 0), (5, 5), 0)
    prev = np.ascontiguousarray(prev.transpose(2, 0, 1))
    nxt = np.roll(prev, 1, axis=2)
    plain = resolve_settings(flow_backend="torch", device="cpu", flow_params=dict(TEST_TVL1))
    released = resolve_settings(flow_backend="torch", device="cpu", flow_params=dict(TEST_TVL1), as_released=True)
    raw, back = plain.solve(prev, nxt), released.solve(prev, nxt)
    assert isinstance(back, torch.Tensor) and back.device == raw.device
    np.testing.assert_array_equal(back.numpy(), polar_round_trip(raw.numpy()))
    assert not np.array_equal(back.numpy(), raw.numpy())


def test_spot_extracts_as_the_checkpoints_record(tmp_path, monkeypatch):
    """``spotnet spot`` on a video extracts with the checkpoints' ``as_released`` unless told otherwise."""
    from spotnet import spot as spot_module
    from spotnet.checkpoint import save_model
    from spotnet.model import SOFTNet

    ckpt = tmp_path / "m.pt"
    save_model(SOFTNet(), ckpt, metadata={"expression": "micro", "type": "micro", "k": K, "as_released": True})
    seen = []
    monkeypatch.setattr(spot_module, "_extract_and_spot",
                        lambda *a, extract_options, **kw: seen.append(extract_options) or spot_module.SpotReport())
    source = tmp_path / "video_folder"
    source.mkdir()
    spot_module.spot_report(ckpt, source)
    spot_module.spot_report(ckpt, source, as_released=False)
    assert [o["as_released"] for o in seen] == [True, False]
