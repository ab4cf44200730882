"""MediaPipe 478-point face mesh -> dlib 68-point scheme.

``MEDIAPIPE_TO_DLIB68[i]`` is a tuple of mesh indices whose mean gives dlib point ``i``.
"""

from __future__ import annotations

import numpy as np

MEDIAPIPE_TO_DLIB68: list[tuple[int, ...]] = [
    # jaw 0-16
    (127,), (234,), (93,), (132,), (58,), (172,), (136,), (150,), (152,),
    (377,), (365,), (397,), (288,), (361,), (323,), (454,), (356,),
    # brows 17-26
    (70,), (63,), (105,), (66,), (107,), (336,), (296,), (334,), (293,), (300,),
    # nose 27-35
    (168,), (197,), (5,), (4,), (75,), (97,), (2,), (326,), (305,),
    # left eye (image left) 36-41
    (33,), (160,), (158,), (133,), (153,), (144,),
    # right eye 42-47
    (362,), (385,), (387,), (263,), (373,), (380,),
    # outer lips 48-59
    (61,), (39,), (37,), (0,), (267,), (269,), (291,), (405,), (314,), (17,), (84,), (181,),
    # inner lips 60-67
    (78,), (82,), (13,), (312,), (308,), (317,), (14,), (87,),
]


def mesh_to_dlib68(mesh: np.ndarray) -> np.ndarray:
    """Map mesh points (478, 2) (or (478, D)) to (68, D) float32 with ``MEDIAPIPE_TO_DLIB68``."""
    mesh = np.asarray(mesh, dtype=np.float32)
    return np.stack([mesh[list(idx)].mean(axis=0) for idx in MEDIAPIPE_TO_DLIB68]).astype(np.float32)
