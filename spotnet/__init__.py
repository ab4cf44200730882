"""spotnet: SOFTNet model, Keras weight import, pseudo-labels, spotting and MEGC evaluation."""

from spotnet.checkpoint import load_checkpoint, load_model, save_model
from spotnet.errors import SpotnetError
from spotnet.keras_import import import_keras
from spotnet.model import SOFTNet, count_parameters
from spotnet.normalize import minmax_normalize

__all__ = [
    "SOFTNet",
    "SpotnetError",
    "count_parameters",
    "import_keras",
    "load_checkpoint",
    "load_model",
    "minmax_normalize",
    "save_model",
]
