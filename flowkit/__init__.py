"""flowkit: SOFTNet feature extraction (face crops, TV-L1 flow, features) into a Zarr store.

The public API is importable from the package, loaded lazily so that ``import flowkit`` stays
cheap (no torch or cv2 until used):

- store and annotations: :class:`FeatureStore`, :func:`load_annotations`, :func:`derive_k`,
  :class:`Interval`, :class:`FlowkitError`;
- inputs: :func:`discover_videos`, :func:`open_source`, :func:`make_landmarker`;
- SPEC 1-4 step by step: :func:`find_reference`, :func:`clamp_box`, :func:`crop_face`,
  :func:`crop_landmarks`, :func:`tvl1` ((B, H, W) pairs -> (B, 2, H, W) flow),
  :func:`optical_strain`, :func:`remove_head_motion`, :func:`apply_eye_mask`,
  :func:`extract_roi`, and all of sections 3-4 at once :func:`features_from_flow` /
  :class:`FlowFeatures` ((B, 2, 128, 128) -> (B, 3, 42, 42)), the mask builder :func:`eye_mask`;
- the whole pipeline: :func:`extract` (inputs -> a Zarr store).

The modules are filed by concept: :mod:`flowkit.face` (SPEC 1), :mod:`flowkit.flow` (SPEC 2),
:mod:`flowkit.features` (SPEC 3-4), :mod:`flowkit.io` (files in and out) and
:mod:`flowkit.pipeline` (the extraction run).
"""

from flowkit.errors import FlowkitError

_LAZY = {
    "FeatureStore": "flowkit.io.store",
    "load_annotations": "flowkit.io.annotations",
    "derive_k": "flowkit.io.annotations",
    "Interval": "flowkit.io.annotations",
    "discover_videos": "flowkit.io.sources",
    "open_source": "flowkit.io.sources",
    "make_landmarker": "flowkit.face.landmarks",
    "find_reference": "flowkit.face.crop",
    "clamp_box": "flowkit.face.crop",
    "crop_face": "flowkit.face.crop",
    "crop_landmarks": "flowkit.face.crop",
    "tvl1": "flowkit.flow",
    "optical_strain": "flowkit.features.strain",
    "remove_head_motion": "flowkit.features.head_motion",
    "apply_eye_mask": "flowkit.features.eye_mask",
    "extract_roi": "flowkit.features.roi",
    "features_from_flow": "flowkit.features.chain",
    "FlowFeatures": "flowkit.features.chain",
    "eye_mask": "flowkit.features.eye_mask",
    "extract": "flowkit.pipeline.extract",
}

__all__ = ["FlowkitError", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'flowkit' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
