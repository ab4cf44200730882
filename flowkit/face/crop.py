"""SPEC section 1: reference frame, face box and the 128x128 gray face crop."""

from __future__ import annotations

from typing import Iterable

import cv2
import numpy as np

from flowkit.errors import FlowkitError
from flowkit.face.landmarks.face import Face

__all__ = ["CROP_CONVENTION", "find_reference", "clamp_box", "crop_face", "jpeg_round_trip", "points_to_crop",
           "crop_landmarks"]

#: The crop convention a store records per video: the released code's (Extraction_Preprocess.ipynb,
#: cells 4 and 6): dlib's box sliced ``image[top:bottom, left:right]``, the colour crop resized to
#: 128x128, then made gray. Stores without it were made with the box one pixel larger and gray made
#: before the resize; resuming them is refused.
CROP_CONVENTION = "released-slice-resize-gray"


def find_reference(frames: Iterable[np.ndarray], landmarker) -> tuple[int, Face]:
    """The first frame in which ``landmarker`` finds a face.

    Args:
        frames: (H, W, 3) uint8 BGR frames, e.g. a :class:`flowkit.io.sources.FrameSource`
            (its ``.path`` is used in the error message).
        landmarker: an object with ``.detect(image_bgr) -> Face | None``.

    Returns:
        (index, face): 0-based index of that frame and its :class:`Face`.

    Raises:
        FlowkitError: no frame holds a face.
    """
    n = 0
    for index, frame in enumerate(frames):
        n += 1
        face = landmarker.detect(frame)
        if face is not None:
            return index, face
    where = getattr(frames, "path", None)
    raise FlowkitError(f"no face found in any of {n} frames of {where if where is not None else 'the input'}")


def clamp_box(box, width: int, height: int) -> tuple[int, int, int, int]:
    """Clip (x0, y0, x1, y1), x1/y1 exclusive, to an image of ``width`` x ``height``."""
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, x1 = min(max(x0, 0), width), min(max(x1, 0), width)
    y0, y1 = min(max(y0, 0), height), min(max(y1, 0), height)
    return x0, y0, x1, y1


def crop_face(frame: np.ndarray, box, size: int = 128, *, jpeg: bool = False) -> np.ndarray:
    """Crop ``box`` from ``frame``, resize it to ``size`` x ``size``, then make it gray.

    The order follows the released code (SPEC 1): the colour crop is resized (``cv2.resize``,
    INTER_LINEAR, OpenCV's default), then converted with ``cv2.cvtColor`` BGR2GRAY.

    Args:
        frame: (H, W, 3) uint8 BGR or (H, W) uint8 gray.
        box: (x0, y0, x1, y1) ints, x1/y1 exclusive. The part outside the image is cut off
            (no padding), so a box that overhangs the border is stretched to the square.
        size: side of the output.
        jpeg: the released code's round trip instead of cvtColor: the resized colour crop is
            encoded as JPEG at OpenCV's default quality and decoded in gray
            (:func:`jpeg_round_trip`).

    Returns:
        (size, size) uint8 gray.
    """
    if frame.dtype != np.uint8 or frame.ndim not in (2, 3):
        raise FlowkitError(f"frame should be (H, W, 3) or (H, W) uint8, got {frame.shape} {frame.dtype}")
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = clamp_box(box, w, h)
    if x1 <= x0 or y1 <= y0:
        raise FlowkitError(f"face box should overlap the {w}x{h} frame, got {tuple(box)}")
    patch = cv2.resize(frame[y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_LINEAR)
    if jpeg:
        return jpeg_round_trip(patch)
    if patch.ndim == 3:
        patch = cv2.cvtColor(patch, cv2.COLOR_BGR2GRAY)
    return patch


def jpeg_round_trip(image: np.ndarray) -> np.ndarray:
    """(S, S, 3) BGR or (S, S) gray uint8 through JPEG and back in gray: (S, S) uint8.

    The released code writes each crop with ``cv2.imwrite(name.jpg)`` (OpenCV's default
    quality) and reads it back with ``cv2.imread(name, 0)``; the same encoder and decoder run
    here in memory (``cv2.imencode`` / ``cv2.imdecode``), without files.
    """
    ok, buf = cv2.imencode(".jpg", image)
    if not ok:
        raise FlowkitError(f"crop should encode as JPEG, got a failure for shape {image.shape}")
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)


def points_to_crop(points: np.ndarray, box, frame_shape, size: int = 128) -> np.ndarray:
    """Map (N, 2) (x, y) frame points into the coordinates of :func:`crop_face`'s output.

    Uses the same clamped box and the pixel-centre convention of cv2.resize:
    x_crop = (x - x0 + 0.5) * size / width - 0.5. Returns (N, 2) float32.
    """
    h, w = frame_shape[:2]
    x0, y0, x1, y1 = clamp_box(box, w, h)
    pts = np.asarray(points, dtype=np.float64)
    scale = np.array([size / (x1 - x0), size / (y1 - y0)])
    return ((pts - [x0, y0] + 0.5) * scale - 0.5).astype(np.float32)


def crop_landmarks(landmarker, crop: np.ndarray, *, reference: Face | None = None,
                   frame_shape=None) -> tuple[np.ndarray, bool]:
    """The 68 landmarks on the first cropped frame (SPEC 1: found again on the 128x128 crop).

    Args:
        landmarker: ``.detect(image) -> Face | None``.
        crop: (S, S) uint8 gray or (S, S, 3) BGR, the output of :func:`crop_face`.
        reference: the reference frame's :class:`Face`. When detection on the crop fails,
            its points are mapped into crop coordinates with :func:`points_to_crop` instead.
        frame_shape: (H, W) of the reference frame, needed with ``reference``.

    Returns:
        (points, redetected): (68, 2) float32 (x, y) in crop pixels, and True when they come
        from detection on the crop, False for the fallback.

    Raises:
        FlowkitError: no face on the crop and no reference to fall back to.
    """
    if crop.ndim == 2:
        image = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
    else:
        image = crop
    face = landmarker.detect(image)
    if face is not None:
        return face.points.astype(np.float32), True
    if reference is None or frame_shape is None:
        raise FlowkitError("a face should be found on the cropped reference frame, "
                           "got none and no reference to fall back to")
    return points_to_crop(reference.points, reference.box, frame_shape, size=crop.shape[0]), False
