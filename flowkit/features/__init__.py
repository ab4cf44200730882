"""SPEC 3-4, features from flow: optical strain (:mod:`.strain`), head-motion removal
(:mod:`.head_motion`), the eye mask (:mod:`.eye_mask`), the regions of interest (:mod:`.roi`) and
their chain (:mod:`.chain`: (B, 2, 128, 128) flow -> (B, 3, 42, 42) features).

``features_from_flow`` and ``FlowFeatures`` are importable from here too, loaded lazily.
"""

_LAZY = {"features_from_flow": "flowkit.features.chain", "FlowFeatures": "flowkit.features.chain"}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'flowkit.features' has no attribute {name!r}")
