"""SPEC sections 3-4 chained: flow -> (u, v, strain) -> head motion -> eye mask -> ROI."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from flowkit.errors import FlowkitError
from flowkit.features.eye_mask import apply_eye_mask, eye_mask
from flowkit.features.head_motion import landmarks_as_int, remove_head_motion
from flowkit.features.roi import extract_roi
from flowkit.features.strain import optical_strain

__all__ = ["CROP_SIZE", "features_from_flow", "FlowFeatures"]

CROP_SIZE = 128


def features_from_flow(flow, landmarks, *, mask=None) -> torch.Tensor:
    """SOFTNet input features from flow, on the flow's device.

    Args:
        flow: (B, 2, 128, 128) torch tensor or numpy array (u, v), any floating dtype.
        landmarks: (68, 2) (x, y) in crop pixels; rounded to the nearest int.
        mask: optional precomputed (128, 128) bool eye mask, numpy or torch
            (:func:`flowkit.features.eye_mask.eye_mask`), to skip recomputing it for every batch of a video.

    Returns:
        (B, 3, 42, 42) float32 tensor, channels (u, v, strain); eye ROI rows 0..20, mouth
        rows 21..41.
    """
    if isinstance(flow, np.ndarray):
        flow = torch.from_numpy(np.ascontiguousarray(flow))
    if not isinstance(flow, torch.Tensor):
        raise FlowkitError(f"flow should be a torch.Tensor or numpy array, got {type(flow).__name__}")
    if flow.ndim != 4 or tuple(flow.shape[1:]) != (2, CROP_SIZE, CROP_SIZE):
        raise FlowkitError(f"flow should have shape (B, 2, {CROP_SIZE}, {CROP_SIZE}), got {tuple(flow.shape)}")
    if not flow.is_floating_point():
        raise FlowkitError(f"flow should have a floating dtype, got {flow.dtype}")
    points = landmarks_as_int(landmarks)
    flow = flow.to(torch.float32)
    uve = torch.cat([flow, optical_strain(flow)[:, None]], dim=1)
    uve = remove_head_motion(uve, points)
    uve = apply_eye_mask(uve, eye_mask(points, CROP_SIZE) if mask is None else mask)
    return extract_roi(uve, points)


class FlowFeatures(nn.Module):
    """Module twin of :func:`features_from_flow` for one video: the landmarks are fixed and the
    eye mask is built once (a buffer, so ``.to(device)`` moves it).

    forward: flow (B, 2, 128, 128) -> (B, 3, 42, 42) float32.
    """

    def __init__(self, landmarks):
        super().__init__()
        self.points = landmarks_as_int(landmarks)
        self.register_buffer("mask", torch.from_numpy(eye_mask(self.points, CROP_SIZE)))

    def forward(self, flow) -> torch.Tensor:
        return features_from_flow(flow, self.points, mask=self.mask)
