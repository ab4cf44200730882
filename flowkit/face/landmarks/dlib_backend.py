"""68-point landmarks from dlib: HOG frontal face detector + the 68-point shape predictor."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

from flowkit.errors import FlowkitError
from flowkit.face.landmarks.face import Face

__all__ = ["DlibLandmarker", "shape_predictor_path"]

_INSTALL_HINT = "install the dlib extra: pip install '.[dlib]'"


def shape_predictor_path() -> Path:
    """The 68-point model of ``face_recognition_models``, found without importing the package
    (its ``__init__`` needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FlowkitError(f"face_recognition_models should be installed for the dlib backend; {_INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise FlowkitError(f"the dlib 68-point model should exist at {str(path)!r}; {_INSTALL_HINT}")
    return path


class DlibLandmarker:
    """dlib's HOG frontal face box and 68-point landmarks.

    Args:
        upsample: times the detector upsamples the image before searching (dlib's
            ``upsample_num_times``); 1 finds faces down to about 40 px.

    ``detect(image)`` takes (H, W, 3) uint8 BGR or (H, W) gray and returns the largest
    detected :class:`Face` or None.
    """

    def __init__(self, *, upsample: int = 1):
        try:
            import dlib
        except ImportError:
            raise FlowkitError(f"dlib should be installed for the dlib backend; {_INSTALL_HINT}") from None
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(shape_predictor_path()))
        self.upsample = upsample

    def detect(self, image: np.ndarray) -> Face | None:
        """Face (box, points (68, 2) float32) in image pixels, or None when no face is found."""
        if image.dtype != np.uint8:
            raise FlowkitError(f"image dtype should be uint8, got {image.dtype}")
        if image.ndim == 3 and image.shape[2] == 3:
            rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        elif image.ndim == 2:
            rgb = np.ascontiguousarray(image)
        else:
            raise FlowkitError(f"image should be (H, W) gray or (H, W, 3) BGR uint8, got shape {image.shape}")
        rects = self._detector(rgb, self.upsample)
        if len(rects) == 0:
            return None
        rect = max(rects, key=lambda r: r.width() * r.height())
        shape = self._predictor(rgb, rect)
        points = np.array([(shape.part(i).x, shape.part(i).y) for i in range(68)], dtype=np.float32)
        # dlib's rectangle includes its right and bottom pixels; the released code slices
        # image[top:bottom, left:right], leaving them out, and so does this box (x1, y1 exclusive).
        box = (rect.left(), rect.top(), rect.right(), rect.bottom())
        return Face(box, points)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
