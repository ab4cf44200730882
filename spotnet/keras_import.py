"""Import the authors' released Keras SOFTNet weights (.hdf5) into :class:`SOFTNet`.

The files hold Keras 2 layer weights: ``conv2d``, ``conv2d_1``, ``conv2d_2`` (u, v and strain
streams), ``dense`` and ``dense_1``, each as ``<layer>/<layer>/kernel:0`` and ``bias:0``
(a full-model save nests the same under ``model_weights/``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spotnet.errors import SpotnetError
from spotnet.model import INPUT_SIZE, STREAM_FILTERS, SOFTNet

__all__ = ["import_keras", "keras_metadata", "keras_state_dict"]

_POOLED = INPUT_SIZE // 3 // 2  # 7: side of the map that the first Dense layer flattens
_CHANNELS = sum(STREAM_FILTERS)  # 16

# Keras layer -> (torch prefix, kernel shape in Keras layout, bias shape).
_LAYERS: dict[str, tuple[str, tuple[int, ...], tuple[int, ...]]] = {
    "conv2d": ("conv_u", (5, 5, 1, STREAM_FILTERS[0]), (STREAM_FILTERS[0],)),
    "conv2d_1": ("conv_v", (5, 5, 1, STREAM_FILTERS[1]), (STREAM_FILTERS[1],)),
    "conv2d_2": ("conv_e", (5, 5, 1, STREAM_FILTERS[2]), (STREAM_FILTERS[2],)),
    "dense": ("fc1", (_POOLED * _POOLED * _CHANNELS, 400), (400,)),
    "dense_1": ("fc2", (400, 1), (1,)),
}


# Published k per (dataset, type), SPEC section 2; the released files are named <dataset>_<type>_<fold>.
_PUBLISHED_K = {("casme2", "micro"): 6, ("casme2", "macro"): 18, ("sammlv", "micro"): 37, ("sammlv", "macro"): 174}
_RELEASED_NAME = re.compile(r"^(casme2|sammlv)_(macro|micro)_(s\w+)$")


def keras_metadata(path: str | Path, *, kind: str | None = None, k: int | None = None) -> dict[str, Any]:
    """Checkpoint metadata for a released .hdf5: source and recipe, plus dataset, type, fold and
    the published k when the file name follows ``<dataset>_<type>_<fold>`` (e.g. casme2_macro_s1).

    ``kind`` ("macro" | "micro") and ``k`` override what the name gives, for renamed files.

    >>> keras_metadata("weights/casme2_macro_s1.hdf5")["k"]
    18
    >>> keras_metadata("mymodel.hdf5", kind="micro", k=6)["type"]
    'micro'
    """
    path = Path(path)
    meta: dict[str, Any] = {"source": f"keras:{path.name}", "recipe": "released-keras"}
    m = _RELEASED_NAME.match(path.stem)
    if m:
        dataset, name_kind, fold = m.groups()
        meta.update(dataset=dataset, type=name_kind, fold=fold, k=_PUBLISHED_K[(dataset, name_kind)])
    if kind is not None:
        if kind not in ("macro", "micro"):
            raise SpotnetError(f"type should be macro or micro, got {kind!r}")
        meta["type"] = kind
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise SpotnetError(f"k should be an integer >= 1, got {k!r}")
        meta["k"] = k
    return meta


def _find_weight(group, suffix: str):
    """The dataset under ``group`` whose name ends with ``suffix`` (e.g. 'kernel:0'), or None."""
    found = []
    group.visititems(lambda name, obj: found.append(obj) if name.endswith(suffix) else None)
    return found[0] if found else None


def _read_layers(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    import h5py

    if not path.is_file():
        raise SpotnetError(f"Keras weights file should be an existing file, got {path} (no such file)")
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise SpotnetError(f"Keras weights file should be an HDF5 file, got unreadable {path}") from None
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        out = {}
        for name, (_, kshape, bshape) in _LAYERS.items():
            if name not in root:
                raise SpotnetError(
                    f"Keras weights {path} should contain layer '{name}' (kernel {kshape}), "
                    f"got layers {sorted(root.keys())}"
                )
            kernel, bias = _find_weight(root[name], "kernel:0"), _find_weight(root[name], "bias:0")
            for what, ds, shape in (("kernel", kernel, kshape), ("bias", bias, bshape)):
                got = None if ds is None else tuple(ds.shape)
                if got != shape:
                    raise SpotnetError(
                        f"Keras layer '{name}' {what} should have shape {shape}, got "
                        f"{'no ' + what if got is None else got} in {path}"
                    )
            out[name] = (np.asarray(kernel, dtype=np.float32), np.asarray(bias, dtype=np.float32))
    return out


def keras_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a Keras SOFTNet .hdf5 and return a :class:`SOFTNet` state dict.

    Conv kernels go from Keras (5, 5, 1, F) to torch (F, 1, 5, 5). Dense kernels are transposed,
    and the rows of the first one are permuted from Keras' (H, W, C) flatten order of the
    7x7x16 map to torch's (C, H, W) order.

    Raises:
        SpotnetError: missing or non-HDF5 file, missing layer or wrong weight shape.
    """
    layers = _read_layers(Path(path))
    state: dict[str, torch.Tensor] = {}
    for name, (kernel, bias) in layers.items():
        prefix = _LAYERS[name][0]
        if name.startswith("conv2d"):
            weight = kernel.transpose(3, 2, 0, 1)
        elif name == "dense":
            # Row h*7*16 + w*16 + c in Keras becomes column c*49 + h*7 + w in torch.
            hwc = kernel.reshape(_POOLED, _POOLED, _CHANNELS, -1)
            weight = hwc.transpose(2, 0, 1, 3).reshape(_POOLED * _POOLED * _CHANNELS, -1).T
        else:
            weight = kernel.T
        state[f"{prefix}.weight"] = torch.from_numpy(np.ascontiguousarray(weight))
        state[f"{prefix}.bias"] = torch.from_numpy(bias.copy())
    return state


def import_keras(path: str | Path) -> SOFTNet:
    """Build a :class:`SOFTNet` (eval mode, CPU, float32) with the weights of a Keras .hdf5."""
    model = SOFTNet()
    model.load_state_dict(keras_state_dict(path))
    return model.eval()
