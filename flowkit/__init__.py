"""flowkit: SOFTNet feature extraction (face crops, TV-L1 flow, features) into a Zarr store.

The main entry points are importable from the package (loaded lazily, so ``import flowkit`` stays
cheap): :class:`FeatureStore`, :func:`load_annotations`, :func:`derive_k`,
:class:`FlowkitError`. The pipeline is ``flowkit.extract.extract`` (the module and the function
share the name, so it is not re-exported here).
"""

from flowkit.errors import FlowkitError

__all__ = ["FlowkitError", "FeatureStore", "load_annotations", "derive_k", "Interval"]

_LAZY = {
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
