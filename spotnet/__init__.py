"""spotnet: SOFTNet model, Keras weight import, pseudo-labels, spotting and MEGC evaluation."""

from spotnet.checkpoint import load_checkpoint, load_model, save_model
from spotnet.errors import SpotnetError
from spotnet.evaluation import (
    EvalInterval,
    EvaluationResult,
    evaluate,
    iou,
    match_video,
    read_intervals_csv,
    write_intervals_csv,
)
from spotnet.keras_import import import_keras
from spotnet.labels import pseudo_labels
from spotnet.model import SOFTNet, count_parameters
from spotnet.normalize import minmax_normalize
from spotnet.spotting import SpottedInterval, smooth_scores, spot_intervals

__all__ = [
    "EvalInterval",
    "EvaluationResult",
    "SOFTNet",
    "SpotnetError",
    "SpottedInterval",
    "count_parameters",
    "evaluate",
    "import_keras",
    "iou",
    "load_checkpoint",
    "load_model",
    "match_video",
    "minmax_normalize",
    "pseudo_labels",
    "read_intervals_csv",
    "save_model",
    "smooth_scores",
    "spot_intervals",
    "write_intervals_csv",
]
