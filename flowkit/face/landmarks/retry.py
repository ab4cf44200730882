"""A second look for a face on very wide or very tall frames.

Face detectors resize their input to a small square, so on a 4000x300 frame a visible face is
squeezed until it is no longer found. When the first detection fails on a frame whose long side is
more than :data:`MAX_ASPECT` times its short side, the frame is searched again in overlapping tiles
of at most that aspect, half a tile apart (a face no larger than the short side lies whole in one
of them), and the face found is moved back into frame coordinates.
"""

from __future__ import annotations

import numpy as np

from flowkit.face.landmarks.face import Face

__all__ = ["MAX_ASPECT", "RetryingLandmarker", "detect_with_retry", "tiles"]

#: Frames up to this aspect ratio (long side / short side) are searched whole only.
MAX_ASPECT = 2.0


def tiles(height: int, width: int, *, max_aspect: float = MAX_ASPECT) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) windows covering a frame, each of aspect at most ``max_aspect``, half a
    window apart along the long side; the frame itself when it is not that elongated.

    >>> tiles(300, 1500)
    [(0, 0, 600, 300), (300, 0, 900, 300), (600, 0, 1200, 300), (900, 0, 1500, 300)]
    >>> tiles(100, 150)
    [(0, 0, 150, 100)]
    """
    short, long = min(height, width), max(height, width)
    if long <= max_aspect * short:
        return [(0, 0, width, height)]
    size = int(max_aspect * short)
    starts = list(range(0, long - size + 1, max(size // 2, 1)))
    if starts[-1] + size < long:
        starts.append(long - size)
    if width >= height:
        return [(s, 0, s + size, height) for s in starts]
    return [(0, s, width, s + size) for s in starts]


def detect_with_retry(landmarker, image: np.ndarray) -> Face | None:
    """``landmarker.detect(image)`` ((H, W, 3) uint8 BGR), then, when it finds nothing on a very
    wide or tall frame, the first face found in one of its :func:`tiles`, in frame coordinates."""
    face = landmarker.detect(image)
    windows = tiles(*image.shape[:2])
    if face is not None or len(windows) == 1:
        return face
    for x0, y0, x1, y1 in windows:
        found = landmarker.detect(np.ascontiguousarray(image[y0:y1, x0:x1]))
        if found is not None:
            bx0, by0, bx1, by1 = found.box
            return Face((bx0 + x0, by0 + y0, bx1 + x0, by1 + y0), found.points + np.float32([x0, y0]))
    return None


class RetryingLandmarker:
    """A landmarker whose ``detect`` is :func:`detect_with_retry`; anything else goes to the wrapped one."""

    def __init__(self, landmarker):
        self.landmarker = landmarker

    def detect(self, image: np.ndarray) -> Face | None:
        return detect_with_retry(self.landmarker, image)

    def __getattr__(self, name):
        return getattr(self.landmarker, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
