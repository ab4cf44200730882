"""The result of a landmark detector: a face box and 68 points in the dlib scheme."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flowkit.errors import FlowkitError

__all__ = ["Face"]


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face.

    box: (x0, y0, x1, y1) ints in image pixels, x1 and y1 exclusive (width = x1 - x0). It may
        extend past the image border; :func:`flowkit.face.crop.crop_face` clamps it.
    points: (68, 2) float32 (x, y) in image pixels, dlib 68-point order (0-based indices:
        jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67). Pixel centres are at
        integer coordinates, as in dlib.
    """

    box: tuple[int, int, int, int]
    points: np.ndarray

    def __post_init__(self):
        pts = np.asarray(self.points, dtype=np.float32)
        if pts.shape != (68, 2):
            raise FlowkitError(f"points should have shape (68, 2), got {pts.shape}")
        object.__setattr__(self, "points", pts)
        object.__setattr__(self, "box", tuple(int(v) for v in self.box))

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]
