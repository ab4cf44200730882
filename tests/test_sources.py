"""flowkit.io.sources: frame reading and input discovery."""

from __future__ import annotations

import shutil
import warnings

import cv2
import numpy as np
import pytest

from flowkit.errors import FlowkitError
from flowkit.io.sources import (
    ImageFolderSource,
    VideoFileSource,
    discover_videos,
    natural_key,
    open_source,
)


def _write(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def test_natural_key_orders_numbers_by_value():
    names = ["img10.jpg", "img2.jpg", "img1.jpg", "img100.jpg", "IMG3.jpg"]
    assert sorted(names, key=natural_key) == ["img1.jpg", "img2.jpg", "IMG3.jpg", "img10.jpg", "img100.jpg"]
    assert sorted(["006_1_0010.jpg", "006_1_0009.jpg"], key=natural_key)[0] == "006_1_0009.jpg"


def test_image_folder_natural_order_and_formats(tmp_path):
    h, w = 6, 8
    gray = np.full((h, w), 10, np.uint8)
    bgr = np.zeros((h, w, 3), np.uint8)
    bgr[..., 0], bgr[..., 1], bgr[..., 2] = 1, 2, 3
    bgra = np.dstack([bgr + 20, np.full((h, w), 7, np.uint8)])
    deep = np.full((h, w), 257 * 200, np.uint16)
    deep_color = np.zeros((h, w, 3), np.uint16)
    deep_color[..., 2] = 65535
    _write(tmp_path / "img10.png", deep_color)
    _write(tmp_path / "img2.png", bgr)
    _write(tmp_path / "img1.png", gray)
    _write(tmp_path / "img3.png", bgra)
    _write(tmp_path / "img4.png", deep)
    (tmp_path / "notes.txt").write_text("ignored")
    src = open_source(tmp_path, fps=30.0)
    assert isinstance(src, ImageFolderSource)
    assert src.n_frames == 5 and src.fps == 30.0
    assert [f.name for f in src.files] == ["img1.png", "img2.png", "img3.png", "img4.png", "img10.png"]
    frames = list(src)
    for f in frames:
        assert f.shape == (h, w, 3) and f.dtype == np.uint8
    assert np.all(frames[0] == 10)
    assert tuple(frames[1][0, 0]) == (1, 2, 3)
    assert tuple(frames[2][0, 0]) == (21, 22, 23)  # alpha dropped
    assert np.all(frames[3] == 200)  # 16-bit / 257
    assert tuple(frames[4][0, 0]) == (0, 0, 255)
    assert open_source(tmp_path).fps is None


def test_image_folder_errors(tmp_path):
    with pytest.raises(FlowkitError, match="should contain"):
        open_source(tmp_path)
    _write(tmp_path / "a1.jpg", np.zeros((4, 4, 3), np.uint8))
    _write(tmp_path / "a2.jpg", np.zeros((5, 4, 3), np.uint8))
    with pytest.raises(FlowkitError, match="should all have size"):
        list(open_source(tmp_path))
    (tmp_path / "a2.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(FlowkitError, match="a2.jpg"):
        list(open_source(tmp_path))


def test_unreadable_paths(tmp_path):
    with pytest.raises(FlowkitError, match="should exist"):
        open_source(tmp_path / "missing.mp4")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(FlowkitError, match="video file"):
        open_source(tmp_path / "x.txt")
    (tmp_path / "garbage.mp4").write_bytes(b"\x00" * 1000)
    with pytest.raises(FlowkitError, match="could not be opened|decodable"):
        open_source(tmp_path / "garbage.mp4")
    with pytest.raises(FlowkitError, match="should exist"):
        discover_videos(tmp_path / "nowhere")


def test_video_file(data_dir):
    src = open_source(data_dir / "single_face.mp4")
    assert isinstance(src, VideoFileSource)
    assert src.fps == pytest.approx(30.0, abs=0.01)
    frames = list(src)
    assert len(frames) == src.n_frames == 72
    assert frames[0].shape == (360, 640, 3) and frames[0].dtype == np.uint8


def test_video_header_count_is_not_trusted(data_dir):
    src = open_source(data_dir / "no_face.mp4")
    with pytest.warns(UserWarning, match="only 95"):
        n = sum(1 for _ in src)
    assert n == 95 and src.n_frames == 98


def test_truncated_video_stops_with_warning_or_clear_error(data_dir, tmp_path):
    data = (data_dir / "single_face.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    try:
        src = open_source(cut)
    except FlowkitError as exc:  # the container index is in the lost half
        assert "cut.mp4" in str(exc)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        n = sum(1 for _ in src)
    assert 0 < n < 72
    assert any("could be decoded" in str(w.message) for w in caught)


def test_truncated_avi_stops_at_last_decodable_frame(tmp_path):
    path = tmp_path / "full.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(20):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    src = open_source(cut)
    assert src.n_frames == 20
    with pytest.warns(UserWarning, match="could be decoded"):
        n = sum(1 for _ in src)
    assert 0 < n < 20


def test_discover_single_video_and_tree(data_dir, tmp_path):
    [vi] = discover_videos(data_dir / "single_face.mp4")
    assert vi.video_id == "single_face" and vi.subject == "single_face"
    (tmp_path / "a" / "b").mkdir(parents=True)
    shutil.copy(data_dir / "single_face.mp4", tmp_path / "a" / "clip one.mp4")
    shutil.copy(data_dir / "single_face.mp4", tmp_path / "a" / "b" / "clip.MOV")
    _write(tmp_path / "seq" / "f2.png", np.zeros((4, 4), np.uint8))
    _write(tmp_path / ".hidden" / "f1.png", np.zeros((4, 4), np.uint8))
    found = discover_videos(tmp_path)
    assert [v.video_id for v in found] == ["a_clip_one", "a_b_clip", "seq"]
    assert found == discover_videos(tmp_path)
    assert all("/" not in v.video_id for v in found)


def test_discover_casme2_layout(tmp_path):
    img = np.zeros((4, 4, 3), np.uint8)
    layout = [("s15", "15_0101disgustingteeth"), ("s16", "16_0101disgustingteeth"), ("s15", "15_0102eatingworms")]
    for subject, video in layout:
        for i in (1, 2, 10):
            _write(tmp_path / "rawpic" / subject / video / f"img{i}.jpg", img)
    found = discover_videos(tmp_path)
    assert [(v.video_id, v.subject) for v in found] == [
        ("s15_15_0101disgustingteeth", "s15"),
        ("s15_15_0102eatingworms", "s15"),
        ("s16_16_0101disgustingteeth", "s16"),
    ]
    assert [f.name for f in open_source(found[0].path).files] == ["img1.jpg", "img2.jpg", "img10.jpg"]
    # pointing at rawpic or at one subject gives the same ids
    assert [v.video_id for v in discover_videos(tmp_path / "rawpic" / "s15")] == [v.video_id for v in found[:2]]


def test_discover_samm_layout(tmp_path):
    img = np.zeros((4, 4), np.uint8)
    for video in ("006_1", "006_2", "011_3"):
        for i in (9, 10):
            _write(tmp_path / "SAMM_longvideos" / video / f"{video}_{i:04d}.jpg", img)
    found = discover_videos(tmp_path)
    assert [(v.video_id, v.subject) for v in found] == [("006_1", "006"), ("006_2", "006"), ("011_3", "011")]
    [one] = discover_videos(tmp_path / "SAMM_longvideos" / "011_3")
    assert (one.video_id, one.subject) == ("011_3", "011")


def test_discover_unique_ids(tmp_path):
    img = np.zeros((4, 4), np.uint8)
    _write(tmp_path / "x" / "a_b" / "1.png", img)
    _write(tmp_path / "y" / "a_b" / "1.png", img)
    ids = [v.video_id for v in discover_videos(tmp_path)]
    assert ids == ["a_b", "a_b_2"]
