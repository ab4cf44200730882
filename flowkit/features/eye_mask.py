"""SPEC section 4.2: masking both eyes with two 6-point polygons."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from flowkit.errors import FlowkitError
from flowkit.features.head_motion import landmarks_as_int

__all__ = ["EYE_MARGIN", "eye_polygons", "eye_mask", "apply_eye_mask"]

EYE_MARGIN = 15
# (dx, dy) per landmark, in units of EYE_MARGIN: corners move sideways, lids up or down.
_OFFSETS = {0: (-1, 0), 1: (0, -1), 2: (0, -1), 3: (1, 0), 4: (0, 1), 5: (0, 1)}


def eye_polygons(landmarks, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """The two (6, 2) int32 polygons (x, y): landmarks 36..41 and 42..47 moved outward by 15 px
    (36/42 x-15; 37, 38/43, 44 y-15; 39/45 x+15; 40, 41/46, 47 y+15), clamped to [0, size]."""
    pts = landmarks_as_int(landmarks)
    polys = []
    for start in (36, 42):
        poly = pts[start:start + 6].copy()
        for j, (dx, dy) in _OFFSETS.items():
            poly[j] += (dx * EYE_MARGIN, dy * EYE_MARGIN)
        polys.append(np.clip(poly, 0, size).astype(np.int32))
    return polys[0], polys[1]


def eye_mask(landmarks, size: int = 128) -> np.ndarray:
    """(size, size) bool mask, True inside either eye polygon (filled with cv2.fillPoly).

    Computed once per video on the CPU; :func:`apply_eye_mask` moves it to the data.
    """
    mask = np.zeros((size, size), dtype=np.uint8)
    for poly in eye_polygons(landmarks, size):
        cv2.fillPoly(mask, [poly], 1)
    return mask.astype(bool)


def apply_eye_mask(uve: torch.Tensor, mask) -> torch.Tensor:
    """Zero (B, C, H, W) ``uve`` where the (H, W) ``mask`` (numpy or torch) is True, on ``uve``'s device."""
    if isinstance(mask, torch.Tensor):
        mask_t = mask.to(device=uve.device, dtype=torch.bool)
    else:
        mask_t = torch.from_numpy(np.asarray(mask, dtype=bool)).to(uve.device)
    if mask_t.shape != uve.shape[-2:]:
        raise FlowkitError(f"mask should have shape {tuple(uve.shape[-2:])}, got {tuple(mask_t.shape)}")
    return uve.masked_fill(mask_t, 0)
