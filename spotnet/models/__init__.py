"""The model registry: every network that maps (B, 3, 42, 42) feature windows to (B,) scores.

Each backbone lives in its own module of this package and registers itself with
:func:`register_model`; the package imports every module it holds, so adding a backbone is one
new file and nothing else. Training (``spotnet train --backbone NAME``), checkpoints, spotting
and the Table 3 benchmark all go through :func:`build_model`.

>>> list_models()
['mobilenet_v2', 'resnet18', 'resnet50', 'softnet', 'vgg16']
>>> get_spec("softnet").n_params
314817
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from spotnet.errors import SpotnetError

__all__ = ["ModelSpec", "build_model", "get_spec", "list_models", "register_model"]


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one backbone.

    name: the registry key (``--backbone``). input_shape: (3, 42, 42). n_params: trainable
    parameters of the built model, checked by the tests. table3_params_m: the paper's Table 3
    count in millions (None where it has none). citation: where the architecture comes from.
    cpu_threads: torch CPU threads for training and inference; None keeps torch's default (all
    cores). SOFTNet is tiny, and one thread is fastest for it; a ResNet needs every core.
    """

    name: str
    builder: Callable[..., nn.Module]
    n_params: int
    citation: str
    table3_params_m: float | None = None
    input_shape: tuple[int, int, int] = (3, 42, 42)
    cpu_threads: int | None = None


_REGISTRY: dict[str, ModelSpec] = {}
_LOADED = False


def register_model(name: str, *, n_params: int, citation: str, table3_params_m: float | None = None,
                   cpu_threads: int | None = None):
    """Decorator for a builder ``(**options) -> nn.Module`` taking (B, 3, 42, 42) to (B,)."""

    def register(builder):
        if name in _REGISTRY:
            raise SpotnetError(f"model name should be unique in the registry, got {name!r} twice")
        _REGISTRY[name] = ModelSpec(name, builder, n_params, citation, table3_params_m, cpu_threads=cpu_threads)
        return builder

    return register


def _load_all() -> None:
    global _LOADED
    if not _LOADED:
        for module in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{module.name}")
        _LOADED = True


def list_models() -> list[str]:
    """Registered backbone names, sorted."""
    _load_all()
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``; SpotnetError naming the choices when unknown."""
    _load_all()
    if name not in _REGISTRY:
        raise SpotnetError(f"backbone should be one of {', '.join(sorted(_REGISTRY))}, got {name!r}")
    return _REGISTRY[name]


def build_model(name: str = "softnet", **options) -> nn.Module:
    """A freshly initialised model of backbone ``name`` (no pretrained weights are downloaded).

    Shapes: input (B, 3, 42, 42) float, min-max normalised; output (B,) raw scores.
    """
    spec = get_spec(name)
    try:
        model = spec.builder(**options)
    except (ImportError, RuntimeError) as exc:  # torchvision missing, or built for another torch
        if "torchvision" not in str(exc) and not isinstance(exc, ImportError):
            raise
        raise SpotnetError(f"backbone {name!r} should build with torchvision, got an import failure ({exc}); "
                           "install the matching pair torch==2.14.1 torchvision==0.29.1") from None
    model.backbone = name  # recorded by checkpoints
    return model
