"""MediaPipe 478-point face mesh -> dlib 68-point scheme.

``MEDIAPIPE_TO_DLIB68[i]`` is a tuple of mesh indices whose mean gives dlib point ``i``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MEDIAPIPE_TO_DLIB68", "mesh_to_dlib68"]

# Fitted against dlib's 68 points on 101 frames where both backends found the face (every 8th frame
# of WolfgangLanger_Pexels.mp4, every 3rd of single_face.mp4, every 4th of noface_face.mov in
# ../shared/data), coordinates scaled by 128 / dlib box width (the 128x128 crop scale). For each
# dlib point we took the mesh point, or the mean of two mesh points less than 8 px apart (iris
# points 468-477 excluded), with the lowest mean distance, each video weighted equally; a pair had
# to beat the best single point by 0.05 px. Refitting on 190 other frames (every 4th / 2nd frame,
# dlib upsample 1) picks the same points but for 3 of the 68.
# Mean distance to dlib at 128x128 on those 190 frames: WolfgangLanger 3.08 px overall, 2.43 px on
# the 73 frames without a hand over the face and 4.13 px on the 45 with one (dlib's own points are
# poor there); single_face 2.07 px; noface_face 2.00 px. The jaw (0-16) is the least consistent
# part (3.5-5 px), the other points are at 1.5-2.4 px. Leave-one-video-out: 3.13, 2.11, 2.03 px.
MEDIAPIPE_TO_DLIB68: list[tuple[int, ...]] = [
    # jaw 0-16
    (127,), (234,), (93,), (215,), (172, 138), (136,), (149,), (148,), (152,), (377,), (378,),
    (365,), (397, 367), (435,), (401, 376), (454,), (356,),
    # brows 17-26
    (70, 46), (63,), (105,), (66,), (107, 55), (336, 285), (296,), (334,), (293,), (300, 276),
    # nose 27-35
    (168,), (197,), (5, 195), (4, 1), (75, 98), (238, 167), (94, 164), (458, 393), (327, 290),
    # eye 36-41 (image left)
    (33,), (160, 159), (158,), (133, 154), (153,), (144,),
    # eye 42-47
    (382,), (385,), (387, 386), (263, 249), (373,), (380,),
    # outer lips 48-59
    (76,), (39, 74), (37, 72), (11, 0), (267, 302), (269, 272), (291,), (405, 335), (314, 313),
    (17, 18), (84,), (181, 91),
    # inner lips 60-67
    (77, 184), (82,), (13,), (312,), (325, 306), (316, 317), (15, 14), (87, 86),
]


def mesh_to_dlib68(mesh: np.ndarray) -> np.ndarray:
    """Map mesh points (478, 2) (or (478, D)) to (68, D) float32 with ``MEDIAPIPE_TO_DLIB68``."""
    mesh = np.asarray(mesh, dtype=np.float32)
    return np.stack([mesh[list(idx)].mean(axis=0) for idx in MEDIAPIPE_TO_DLIB68]).astype(np.float32)
