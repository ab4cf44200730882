"""Model checkpoints: plain tensors plus JSON metadata, loadable with ``weights_only=True``.

File layout (a dict saved with :func:`torch.save`)::

    {"format": "spotnet-model", "format_version": 3, "architecture": "<registry name>",
     "state_dict": {name: tensor}, "metadata_json": "<JSON object>",
     "tensors_sha256": "<hex digest of the tensors>"}

``architecture`` names the backbone in :mod:`spotnet.models`, which rebuilds it. Earlier files
(format "spotnet-softnet", versions 1 and 2) hold SOFTNet and still load.

Metadata is stored as a JSON string so that anything JSON-able (recipe, k, fold, metrics,
source, ...) round-trips exactly and loading never needs pickle. ``n_params`` and
``format_version`` are always filled in.

``tensors_sha256`` (format 2) covers every tensor's name, dtype, shape and bytes: torch.load
does not check the zip archive's CRCs, so without it a flipped weight would load silently.
Version-1 files (no checksum) still load.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flowkit.io.atomic import atomic_write
from spotnet.errors import SpotnetError
from spotnet.keras_import import import_keras, keras_metadata
from spotnet.model import count_parameters
from spotnet.models import build_model

__all__ = ["FORMAT", "FORMAT_VERSION", "load_checkpoint", "load_model", "save_model", "tensors_sha256"]

FORMAT = "spotnet-model"
FORMAT_VERSION = 3
#: (format, version) pairs this module reads; the "spotnet-softnet" ones are SOFTNet only.
_READABLE = {("spotnet-softnet", 1), ("spotnet-softnet", 2), (FORMAT, FORMAT_VERSION)}


def tensors_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over a state dict's names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-d too
    return digest.hexdigest()


def save_model(model: nn.Module, path: str | Path, *, metadata: dict[str, Any] | None = None) -> None:
    """Write ``model``'s weights and ``metadata`` to ``path`` atomically.

    The file is written next to ``path`` under a temporary name and renamed, so a failure never
    leaves a partial checkpoint behind.

    Raises:
        SpotnetError: ``metadata`` is not JSON-able, or the folder of ``path`` does not exist.
    """
    path = Path(path)
    meta = dict(metadata or {})
    meta["n_params"] = count_parameters(model)
    meta["format_version"] = FORMAT_VERSION
    try:
        meta_json = json.dumps(meta, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise SpotnetError(f"checkpoint metadata should be JSON-serialisable, got {exc}") from None
    if not path.parent.is_dir():
        raise SpotnetError(f"checkpoint folder should exist, got missing folder {path.parent}")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": getattr(model, "backbone", "softnet"),
        "state_dict": state,
        "metadata_json": meta_json,
        "tensors_sha256": tensors_sha256(state),
    }
    with atomic_write(path) as f:
        torch.save(payload, f)


def _checksum(payload: dict) -> str | None:
    try:
        return tensors_sha256(payload["state_dict"])
    except (KeyError, AttributeError, TypeError, RuntimeError):  # not a dict of tensors
        return None


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_model`: (model in eval mode on CPU, metadata).

    A released Keras weights file (``.hdf5`` / ``.h5``) is imported on the fly, so every command
    that takes weights accepts both.

    Raises:
        SpotnetError: missing, corrupt or foreign file (not a spotnet SOFTNet checkpoint).
    """
    path = Path(path)
    if not path.is_file():
        raise SpotnetError(f"checkpoint should be an existing file, got {path} (no such file)")
    if path.suffix.lower() in (".hdf5", ".h5"):
        return import_keras(path), keras_metadata(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        raise SpotnetError(f"checkpoint {path} should be a spotnet .pt file, got an unreadable file") from None
    if not isinstance(payload, dict) or not str(payload.get("format", "")).startswith("spotnet-"):
        raise SpotnetError(f"checkpoint {path} should be a spotnet checkpoint, got another kind of file")
    version = payload.get("format_version")
    if (payload.get("format"), version) not in _READABLE:
        raise SpotnetError(f"checkpoint format should be one of {sorted(_READABLE)}, got "
                           f"{(payload.get('format'), version)} in {path}")
    if version >= 2 and _checksum(payload) != payload.get("tensors_sha256"):
        raise SpotnetError(f"checkpoint {path} is corrupt: its weights do not match the checksum saved with them")
    model = build_model(payload.get("architecture", "softnet"))
    try:
        model.load_state_dict(payload["state_dict"])
        metadata = json.loads(payload["metadata_json"])
    except (KeyError, RuntimeError, TypeError, ValueError):
        raise SpotnetError(
            f"checkpoint {path} should hold {payload.get('architecture', 'softnet')} weights and metadata, "
            "got mismatching content"
        ) from None
    return model.eval(), metadata


def load_model(path: str | Path) -> nn.Module:
    """Load only the model of a checkpoint or released .hdf5 (eval mode, CPU)."""
    return load_checkpoint(path)[0]
