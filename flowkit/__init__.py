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
  :class:`FlowFeatures` ((B, 2, 128, 128) -> (B, 3, 42, 42)).

Two functions share their module's name and stay in it: the pipeline
``flowkit.extract.extract`` and the mask builder ``flowkit.eye_mask.eye_mask``.
"""

from flowkit.errors import FlowkitError

_LAZY = {
    "FeatureStore": "flowkit.store",
    "load_annotations": "flowkit.annotations",
    "derive_k": "flowkit.annotations",
    "Interval": "flowkit.annotations",
    "discover_videos": "flowkit.sources",
    "open_source": "flowkit.sources",
    "make_landmarker": "flowkit.landmarks",
    "find_reference": "flowkit.crop",
    "clamp_box": "flowkit.crop",
    "crop_face": "flowkit.crop",
    "crop_landmarks": "flowkit.crop",
    "tvl1": "flowkit.flow",
    "optical_strain": "flowkit.strain",
    "remove_head_motion": "flowkit.head_motion",
    "apply_eye_mask": "flowkit.eye_mask",
    "extract_roi": "flowkit.roi",
    "features_from_flow": "flowkit.features",
    "FlowFeatures": "flowkit.features",
}

__all__ = ["FlowkitError", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'flowkit' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
