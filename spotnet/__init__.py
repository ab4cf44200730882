"""spotnet: SOFTNet model, Keras weight import, pseudo-labels, spotting and MEGC evaluation.

The public API is importable from the package, loaded lazily like flowkit's, so that
``import spotnet`` (and ``spotnet evaluate``) stays cheap: no torch or h5py until a name that
needs them is used.
"""

from spotnet.errors import SpotnetError

_LAZY = {
    "load_checkpoint": "spotnet.checkpoint",
    "load_model": "spotnet.checkpoint",
    "save_model": "spotnet.checkpoint",
    "EvalInterval": "spotnet.evaluation",
    "EvaluationResult": "spotnet.evaluation",
    "evaluate": "spotnet.evaluation",
    "iou": "spotnet.evaluation",
    "match_video": "spotnet.evaluation",
    "read_intervals_csv": "spotnet.evaluation",
    "write_intervals_csv": "spotnet.evaluation",
    "import_keras": "spotnet.keras_import",
    "pseudo_labels": "spotnet.labels",
    "SOFTNet": "spotnet.model",
    "build_model": "spotnet.models",
    "list_models": "spotnet.models",
    "predict_video": "spotnet.inference",
    "count_parameters": "spotnet.model",
    "minmax_normalize": "spotnet.normalize",
    "SpottedInterval": "spotnet.spotting",
    "smooth_scores": "spotnet.spotting",
    "spot_intervals": "spotnet.spotting",
    "spot_video": "spotnet.spotting",
}

__all__ = ["SpotnetError", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'spotnet' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
