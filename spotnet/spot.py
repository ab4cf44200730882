"""Spotting with trained SOFTNet models on a feature store or a plain video.

``MODEL`` is either one ``.pt`` checkpoint (its metadata gives the expression type and k), a
folder of checkpoints (such as a run's ``folds/macro``), or a ``train_loso`` run directory.
Several checkpoints of one type (a run's ``folds/<type>/*.pt``, or a folder's ``*.pt``) are an
ensemble: their scores are averaged window by window, then spotted once. Averaging uses every
model trained on the benchmark without retraining a ``final.pt`` on all subjects, which LOSO
never validated; a ``final.pt`` in the run directory, when present, is used instead (type and
k from its metadata).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from flowkit.annotations import TYPES
from spotnet.checkpoint import load_checkpoint
from spotnet.dataset import list_videos, store_ks
from spotnet.errors import SpotnetError
from spotnet.spotting import spot_video

__all__ = ["load_spotting_models", "spot", "spot_store"]


def load_spotting_models(model_path) -> dict[str, tuple[int, list]]:
    """``{type: (k, [SOFTNet, ...])}`` from a checkpoint or a run directory.

    Raises:
        SpotnetError: missing/corrupt checkpoint, metadata without type or k, or no checkpoint.
    """
    path = Path(model_path)
    if path.is_dir():
        files = ([path / "final.pt"] if (path / "final.pt").is_file()
                 else sorted(path.glob("folds/*/*.pt")) or sorted(path.glob("*.pt")))
        if not files:
            raise SpotnetError(f"model directory {path} should hold final.pt, folds/<type>/*.pt or *.pt, got none")
    else:
        files = [path]
    models: dict[str, tuple[int, list]] = {}
    for f in files:
        model, meta = load_checkpoint(f)
        model.flow_params = meta.get("flow_params")
        kind = meta.get("expression", meta.get("type"))
        k = meta.get("k")
        if kind not in TYPES or not isinstance(k, int):
            raise SpotnetError(
                f"checkpoint {f} should record its expression type and k in its metadata, got type={kind!r}, k={k!r}"
            )
        if kind in models and models[kind][0] != k:
            raise SpotnetError(f"{kind} checkpoints in {path} should share one k, got {models[kind][0]} and {k}")
        models.setdefault(kind, (k, []))[1].append(model)
    return models


def spot_store(models: dict[str, tuple[int, list]], store_path, *, p: float = 0.55,
               return_scores: bool = False):
    """Spot every video of a store with each type's (ensemble of) models.

    Annotations are not needed. Returns a list of 0-based :class:`EvalInterval` (with scores),
    and with ``return_scores`` also ``{(type, video): (L,) averaged scores}``.

    Raises:
        SpotnetError: the store lacks a model's k, or its features are incomplete.
    """
    from spotnet.training import predict_video

    ks = store_ks(store_path)
    out, scores = [], {}
    for kind, (k, group) in models.items():
        if k not in ks:
            raise SpotnetError(
                f"the {kind} model's k ({k}) should be one of the store's k values {ks}; "
                f"extract the videos again with --k {k}"
            )
        for v in list_videos(store_path, k):
            s = predict_video(group, store_path, v)  # features read once for the whole ensemble
            scores[(kind, v.video)] = s
            out += spot_video(s, v, kind, p=p)
    return (out, scores) if return_scores else out


def spot(checkpoints, source, *, p: float = 0.55, store_out=None, flow_params=None, **extract_options):
    """Spot intervals in a feature store, or in a video / image folder / dataset folder.

    ``checkpoints`` is what :func:`load_spotting_models` takes: a checkpoint, a folder of them or
    a run folder.

    A path that is not a store is extracted first with :func:`flowkit.extract.extract` at the
    models' k values, into ``store_out`` (default: a temporary store, removed afterwards), with
    ``flow_params`` or else the TV-L1 parameters recorded in the checkpoints (the features the
    models were trained on), or else OpenCV's defaults. ``extract_options`` go to ``extract``
    unchanged, as in ``flowkit extract``: ``flow_backend``, ``device``, ``gpu``,
    ``landmark_backend``, ``model_path`` (a MediaPipe face_landmarker.task), ``workers``, ...

    Returns:
        0-based :class:`~spotnet.evaluation.EvalInterval` list, typed and scored.
    """
    models = load_spotting_models(checkpoints)
    source = Path(source)
    if not source.exists():
        raise SpotnetError(f"input should be a feature store, a video or a folder, got {source} (no such path)")
    if (source / "zarr.json").is_file():
        return spot_store(models, source, p=p)
    from flowkit.errors import FlowkitError
    from flowkit.extract import extract
    from flowkit.sources import discover_videos

    ks = sorted({k for k, _ in models.values()})
    if flow_params is None:
        recorded = [m.flow_params for _, group in models.values() for m in group if m.flow_params]
        flow_params = recorded[0] if recorded else None

    def run(store: Path):
        try:
            report = extract(discover_videos(source), store, ks=ks, **extract_options,
                             **({"flow_params": flow_params} if flow_params else {}))
        except FlowkitError as exc:
            raise SpotnetError(f"feature extraction of {source} should succeed, got: {exc}") from None
        if not report.ok:
            bad = report.failures[0]
            raise SpotnetError(f"feature extraction of {bad.video_id} should succeed, got: {bad.message}")
        return spot_store(models, store, p=p)

    if store_out is not None:
        return run(Path(store_out))
    with tempfile.TemporaryDirectory(prefix="spotnet-") as tmp:
        return run(Path(tmp) / "features.zarr")
