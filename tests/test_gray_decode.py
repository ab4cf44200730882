"""Grayscale images stay gray in the units' decoders: the crops are the bits of decoding to BGR
and converting, for grayscale JPEGs, 16-bit grayscale PNGs and (unchanged) colour JPEGs."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from flowkit.face.crop import crop_face
from flowkit.io.sources import read_image_files

VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "WolfgangLanger_Pexels.mp4"
BOX = (200, 40, 440, 320)


def _frames(n: int = 4) -> list[np.ndarray]:
    """Face frames of the shared video where present, else smooth random colour frames (640x360)."""
    if VIDEO.is_file():
        cap = cv2.VideoCapture(str(VIDEO))
        frames = [cap.read()[1] for _ in range(n)]
        cap.release()
        if all(f is not None for f in frames):
            return frames
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1, (n, 360, 640, 3)).astype(np.float32)
    return [cv2.normalize(cv2.GaussianBlur(f, (0, 0), 4), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
            for f in noise]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("gray")
    out = {"gray_jpeg": [], "colour_jpeg": [], "gray16_png": []}
    for i, frame in enumerate(_frames()):
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        for kind, image, name in (("gray_jpeg", gray, f"g{i}.jpg"), ("colour_jpeg", frame, f"c{i}.jpg"),
                                  ("gray16_png", gray.astype(np.uint16) * 257 + i, f"p{i}.png")):
            cv2.imwrite(str(root / name), image)
            out[kind].append(str(root / name))
    return out


@pytest.mark.parametrize("kind", ["gray_jpeg", "gray16_png", "colour_jpeg"])
def test_gray_frames_crop_to_the_bits_of_bgr_frames(files, kind):
    kept = list(read_image_files(files[kind], keep_gray=True))
    bgr = list(read_image_files(files[kind]))
    assert [i for i, _ in kept] == [i for i, _ in bgr] == list(range(len(files[kind])))
    for path, (_, a), (_, b) in zip(files[kind], kept, bgr):
        assert b.ndim == 3 and a.ndim == (3 if kind == "colour_jpeg" else 2)
        if kind == "gray_jpeg":  # what the decoder keeps is libjpeg's own gray decode
            np.testing.assert_array_equal(a, cv2.imread(path, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION))
        np.testing.assert_array_equal(crop_face(a, BOX), crop_face(b, BOX))


def test_a_grayscale_decode_of_a_colour_jpeg_is_not_its_bgr_decode_converted(files):
    """Why colour JPEGs keep their colour decode: libjpeg's gray output is the Y plane, which differs
    from converting the decoded BGR by rounding (on the shared face video: up to 4 grey levels)."""
    if not VIDEO.is_file():
        pytest.skip(f"{VIDEO} is absent: the synthetic frames happen to decode to the same gray")
    differs = 0
    for f in files["colour_jpeg"]:
        gray = cv2.imread(f, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)
        converted = cv2.cvtColor(cv2.imread(f, cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2GRAY)
        differs += int(not np.array_equal(gray, converted))
    assert differs > 0


def test_a_sequence_mixing_sizes_still_fails_with_gray_frames(files, tmp_path):
    from flowkit.errors import FlowkitError

    small = tmp_path / "small.jpg"
    cv2.imwrite(str(small), np.zeros((10, 12), np.uint8))
    with pytest.raises(FlowkitError, match="should all have size 640x360, got 12x10"):
        list(read_image_files([files["gray_jpeg"][0], str(small)], keep_gray=True))
