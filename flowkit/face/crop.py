"""SPEC section 1: reference frame, face box and the 128x128 gray face crop."""

from __future__ import annotations

from typing import Iterable

import cv2
import numpy as np

from flowkit.errors import FlowkitError
from flowkit.face.landmarks.face import Face

__all__ = ["find_reference", "clamp_box", "crop_face", "points_to_crop", "crop_landmarks"]


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


def crop_face(frame: np.ndarray, box, size: int = 128) -> np.ndarray:
    """Crop ``box`` from ``frame``, convert to gray and resize to ``size`` x ``size``.

    Args:
        frame: (H, W, 3) uint8 BGR or (H, W) uint8 gray.
        box: (x0, y0, x1, y1) ints, x1/y1 exclusive. The part outside the image is cut off
            (no padding), so a box that overhangs the border is stretched to the square.
        size: side of the output.

    Returns:
        (size, size) uint8 gray, resized with ``cv2.resize`` INTER_LINEAR (OpenCV's default).
    """
    if frame.dtype != np.uint8 or frame.ndim not in (2, 3):
        raise FlowkitError(f"frame should be (H, W, 3) or (H, W) uint8, got {frame.shape} {frame.dtype}")
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = clamp_box(box, w, h)
    if x1 <= x0 or y1 <= y0:
        raise FlowkitError(f"face box should overlap the {w}x{h} frame, got {tuple(box)}")
    patch = frame[y0:y1, x0:x1]
    if patch.ndim == 3:
        patch = cv2.cvtColor(patch, cv2.COLOR_BGR2GRAY)
    return cv2.resize(patch, (size, size), interpolation=cv2.INTER_LINEAR)


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
