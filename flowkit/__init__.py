"""flowkit: SOFTNet feature extraction (face crops, TV-L1 flow, features) into a Zarr store.

The main entry points are importable from the package (loaded lazily, so ``import flowkit`` stays
cheap): :func:`extract`, :class:`FeatureStore`, :func:`load_annotations`, :func:`derive_k`,
:class:`FlowkitError`.
"""

from flowkit.errors import FlowkitError

__all__ = ["FlowkitError", "extract", "FeatureStore", "load_annotations", "derive_k", "Interval"]

_LAZY = {
    "extract": "flowkit.extract",
    "FeatureStore": "flowkit.store",
    "load_annotations": "flowkit.annotations",
    "derive_k": "flowkit.annotations",
    "Interval": "flowkit.annotations",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'flowkit' has no attribute {name!r}")
