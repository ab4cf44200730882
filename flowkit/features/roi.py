"""SPEC section 4.3: the eye-and-brow and mouth boxes, resampled to a 42x42 feature."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from flowkit.errors import FlowkitError
from flowkit.features.head_motion import landmarks_as_int

__all__ = ["ROI_MARGIN", "ROI_WIDTH", "ROI_HEIGHT", "roi_boxes", "extract_roi"]

ROI_MARGIN = 12
ROI_WIDTH = 42
ROI_HEIGHT = 21


def roi_boxes(landmarks, size: int = 128) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """The eye-and-brow box and the mouth box as (x0, y0, x1, y1), ends exclusive (slices).

    Eye: x from x17-12 to x26+12, y from min(y19, y24)-12 to max(y41, y46)+12.
    Mouth: x from x60-12 to x64+12, y from y50-12 to y57+12. Both clamped to [0, size].

    Raises:
        FlowkitError: a box is empty after clamping (landmarks far off the crop).
    """
    p = landmarks_as_int(landmarks)
    m = ROI_MARGIN
    eye = (p[17, 0] - m, min(p[19, 1], p[24, 1]) - m, p[26, 0] + m, max(p[41, 1], p[46, 1]) + m)
    mouth = (p[60, 0] - m, p[50, 1] - m, p[64, 0] + m, p[57, 1] + m)
    boxes = []
    for name, box in (("eye", eye), ("mouth", mouth)):
        x0, y0, x1, y1 = (int(min(max(v, 0), size)) for v in box)
        if x1 <= x0 or y1 <= y0:
            raise FlowkitError(f"the {name} ROI box should be non-empty inside the {size}x{size} crop, "
                               f"got {tuple(int(v) for v in box)}")
        boxes.append((x0, y0, x1, y1))
    return boxes[0], boxes[1]


def extract_roi(uve: torch.Tensor, landmarks) -> torch.Tensor:
    """Resize the two ROI boxes to 42 wide by 21 tall and stack them: eye rows 0..20, mouth 21..41.

    Bilinear with half-pixel centres and no antialiasing (``F.interpolate(mode="bilinear",
    align_corners=False, antialias=False)``), which is what ``cv2.resize`` INTER_LINEAR does on
    float32 (the two round the sample positions to float32 differently: results agree to about
    1e-5 times the local pixel difference, see tests/test_preprocess.py).

    Args:
        uve: (B, C, S, S) floating tensor.
        landmarks: (68, 2) (x, y) in the same pixel frame.

    Returns:
        (B, C, 42, 42) tensor on ``uve``'s device and dtype.
    """
    if not isinstance(uve, torch.Tensor) or uve.ndim != 4 or uve.shape[2] != uve.shape[3]:
        raise FlowkitError(f"uve should be a square (B, C, S, S) tensor, "
                           f"got {getattr(uve, 'shape', type(uve).__name__)}")
    parts = []
    for x0, y0, x1, y1 in roi_boxes(landmarks, size=uve.shape[2]):
        parts.append(F.interpolate(uve[:, :, y0:y1, x0:x1], size=(ROI_HEIGHT, ROI_WIDTH), mode="bilinear",
                                   align_corners=False, antialias=False))
    return torch.cat(parts, dim=2)
