"""68-point landmarks from MediaPipe's Face Landmarker (Tasks API, IMAGE mode, one face)."""

from __future__ import annotations

import os

import cv2
import numpy as np

from flowkit.errors import FlowkitError
from flowkit.face.landmarks.face import Face
from flowkit.face.landmarks.mapping import mesh_to_dlib68
from flowkit.face.landmarks.model_file import resolve_mediapipe_model
from flowkit.native_logs import native_stderr_silenced

__all__ = ["BOX_CALIBRATION", "MediaPipeLandmarker", "landmark_box"]

# (a, b, c) of landmark_box(), fitted by least squares (each video weighted equally) against
# dlib's HOG frontal-detector boxes (DlibLandmarker defaults, upsample 1), sliced as the released
# code slices them (right and bottom pixel left out), on the 190 frames of ../shared/data where both
# backends found the face: every 4th frame of WolfgangLanger_Pexels.mp4, every 2nd of single_face.mp4
# and of noface_face.mov frames 96-167 (tools/experiments/landmark_calibration.py; figures in
# docs/faithfulness.md). An affine of the extent of the 68 points did worse: the jaw points move with
# expression and pose. dlib's box sizes come in 1.2x steps (its image pyramid), which caps the IoU a
# continuous box can reach.
BOX_CALIBRATION = (-0.0492, -0.0510, 2.3510)


def _to_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    raise FlowkitError(f"image should be (H, W) gray or (H, W, 3) BGR uint8, got shape {image.shape}")


def landmark_box(points: np.ndarray) -> tuple[int, int, int, int]:
    """Square face box (x0, y0, x1, y1), x1/y1 exclusive, from (68, 2) points, calibrated to dlib.

    With the eye centres (means of points 36-41 and 42-47), their distance d and the mouth centre
    (mean of 48-67), the box centre is the midpoint of the eyes' midpoint and the mouth centre
    plus (a * d, b * d), and its side is c * d, with (a, b, c) = ``BOX_CALIBRATION``.
    """
    a, b, c = BOX_CALIBRATION
    left, right = points[36:42].mean(axis=0), points[42:48].mean(axis=0)
    mouth = points[48:68].mean(axis=0)
    d = float(np.linalg.norm(right - left))
    cx, cy = ((left + right) / 2 + mouth) / 2 + (a * d, b * d)
    side = c * d
    x0 = int(round(cx - side / 2))
    y0 = int(round(cy - side / 2))
    s = int(round(side))
    return x0, y0, x0 + s, y0 + s


class MediaPipeLandmarker:
    """Face box and 68 dlib-scheme landmarks from MediaPipe Face Landmarker.

    Args:
        model_path: the ``face_landmarker.task`` file; None resolves it with
            :func:`flowkit.face.landmarks.model_file.resolve_mediapipe_model`.
        min_detection_confidence, min_presence_confidence: MediaPipe's thresholds. The default
            0.7 (MediaPipe's is 0.5) rejects a face that MediaPipe finds in the title text of
            noface_face.mov (frame 90) while keeping every real face of ../shared/data.

    ``detect(image)`` takes (H, W, 3) uint8 BGR or (H, W) gray and returns a :class:`Face`
    or None. Use one instance per process; ``close()`` (or a ``with`` block) frees it.
    """

    def __init__(self, model_path: str | os.PathLike | None = None, *, min_detection_confidence: float = 0.7,
                 min_presence_confidence: float = 0.7):
        from mediapipe.tasks.python import BaseOptions, vision

        path = resolve_mediapipe_model(model_path)
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.IMAGE,
            num_faces=1,
            min_face_detection_confidence=min_detection_confidence,
            min_face_presence_confidence=min_presence_confidence,
        )
        try:
            with native_stderr_silenced():
                self._landmarker = vision.FaceLandmarker.create_from_options(options)
        except (RuntimeError, ValueError) as exc:
            raise FlowkitError(f"MediaPipe model should be a valid face_landmarker.task, "
                               f"got {str(path)!r}: {exc}") from None
        self.model_path = path

    def mesh(self, image: np.ndarray) -> np.ndarray | None:
        """The 478 mesh points (478, 2) float32 (x, y) in pixels, or None without a face."""
        import mediapipe as mp

        if image.dtype != np.uint8:
            raise FlowkitError(f"image dtype should be uint8, got {image.dtype}")
        rgb = np.ascontiguousarray(_to_rgb(image))
        h, w = rgb.shape[:2]
        with native_stderr_silenced():  # TFLite logs on the first inferences
            result = self._landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
        if not result.face_landmarks:
            return None
        lms = result.face_landmarks[0]
        # MediaPipe's normalised coordinates put pixel centres at (i + 0.5) / size; dlib's at i.
        return np.array([(p.x * w - 0.5, p.y * h - 0.5) for p in lms], dtype=np.float32)

    def detect(self, image: np.ndarray) -> Face | None:
        """Face (box, points (68, 2) float32) in image pixels, or None when no face is found."""
        mesh = self.mesh(image)
        if mesh is None:
            return None
        points = mesh_to_dlib68(mesh)
        return Face(landmark_box(points), points)

    def close(self) -> None:
        """Free MediaPipe's graph. Call it (or use ``with``): mediapipe's own finaliser prints
        an error when it only runs during interpreter shutdown."""
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
