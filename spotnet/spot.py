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
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from flowkit.io.annotations import TYPES
from spotnet.checkpoint import load_checkpoint
from spotnet.dataset import list_videos, store_ks
from spotnet.errors import SpotnetError
from spotnet.spotting import spot_video

__all__ = ["SpotReport", "WEIGHTS", "check_flow_params", "load_spotting_models", "spot", "spot_report", "spot_store"]

#: Weight files a folder of models may hold: spotnet checkpoints and the released Keras files.
WEIGHTS = (".pt", ".hdf5", ".h5")


@dataclass
class SpotReport:
    """What :func:`spot_report` found: 0-based typed intervals of the videos that could be spotted,
    and ``(video, reason)`` for each that could not (not extracted: no face, unreadable, too
    short for the models' k, truncated)."""

    intervals: list = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


def load_spotting_models(model_path) -> dict[str, tuple[int, list]]:
    """``{type: (k, [SOFTNet, ...])}`` from a checkpoint or a run directory.

    Raises:
        SpotnetError: missing/corrupt checkpoint, metadata without type or k, or no checkpoint.
    """
    path = Path(model_path)
    if path.is_dir():
        files = ([path / "final.pt"] if (path / "final.pt").is_file()
                 else sorted(path.glob("folds/*/*.pt")) or sorted(p for p in path.iterdir() if p.suffix in WEIGHTS))
        if not files:
            raise SpotnetError(f"model directory {path} should hold final.pt, folds/<type>/*.pt or *.pt / *.hdf5 "
                               "files, got none")
    else:
        files = [path]
    models: dict[str, tuple[int, list]] = {}
    for f in files:
        model, meta = load_checkpoint(f)
        model.flow_params = meta.get("flow_params")
        model.as_released = meta.get("as_released")
        model.checkpoint = str(f)
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


def check_flow_params(models: dict[str, tuple[int, list]], params: dict | None, *, what: str,
                      force: bool = False) -> None:
    """Refuse, or with ``force`` warn once, when a checkpoint records other TV-L1 parameters than
    ``params`` (the store's, or those a video is extracted with): its scores on features made
    otherwise mean something else. Checkpoints without recorded parameters are not compared.

    Raises:
        SpotnetError: parameters differ and ``force`` is false.
    """
    from flowkit.io.store import param_diff

    if not params:
        return
    for _, group in models.values():
        for m in group:
            recorded = getattr(m, "flow_params", None)
            if recorded and dict(recorded) != dict(params):
                msg = (f"TV-L1 parameters of checkpoint {getattr(m, 'checkpoint', '?')} should match {what}, got "
                       f"{param_diff(dict(recorded), dict(params))} (the checkpoint's against {what})")
                if not force:
                    raise SpotnetError(msg + "; pass --force to spot anyway")
                warnings.warn(msg + "; spotting anyway (--force)", UserWarning, stacklevel=3)
                return


def _store_flow_params(store_path) -> dict | None:
    from flowkit.errors import FlowkitError
    from spotnet.dataset import open_store

    try:
        return open_store(store_path).flow_params()
    except FlowkitError as exc:
        raise SpotnetError(str(exc)) from None


def spot_store(models: dict[str, tuple[int, list]], store_path, *, p: float = 0.55,
               return_scores: bool = False, only=None):
    """Spot every video of a store with each type's (ensemble of) models; ``only``, when given, is
    ``{k: video ids}``, the videos to spot at each k.

    Annotations are not needed. Returns a list of 0-based :class:`EvalInterval` (with scores),
    and with ``return_scores`` also ``{(type, video): (L,) averaged scores}``.

    Raises:
        SpotnetError: the store lacks a model's k, or its features are incomplete.
    """
    from spotnet.inference import cpu_threads, model_threads, predict_video

    ks = store_ks(store_path)
    out, scores = [], {}
    for kind, (k, group) in models.items():
        if only is not None and not only.get(k):
            continue
        if k not in ks:
            raise SpotnetError(
                f"the {kind} model's k ({k}) should be one of the store's k values {ks}; "
                f"extract the videos again with --k {k}"
            )
        for v in list_videos(store_path, k, only=None if only is None else only.get(k, set())):
            with model_threads(cpu_threads(group)):
                s = predict_video(group, store_path, v)  # features read once for the whole ensemble
            scores[(kind, v.video)] = s
            out += spot_video(s, v, kind, p=p)
    return (out, scores) if return_scores else out


def spot(checkpoints, source, *, p: float = 0.55, store_out=None, flow_params=None, force: bool = False,
         **extract_options):
    """Spot intervals in a feature store, or in a video / image folder / dataset folder.

    All or nothing: :func:`spot_report` with an error when any video could not be spotted.

    Returns:
        0-based :class:`~spotnet.evaluation.EvalInterval` list, typed and scored.

    Raises:
        SpotnetError: bad models or input, or a video that could not be extracted.
    """
    report = spot_report(checkpoints, source, p=p, store_out=store_out, flow_params=flow_params, force=force,
                         **extract_options)
    if report.failures:
        video, reason = report.failures[0]
        raise SpotnetError(f"feature extraction of {video} should succeed, got: {reason}")
    return report.intervals


def spot_report(checkpoints, source, *, p: float = 0.55, store_out=None, flow_params=None, force: bool = False,
                **extract_options) -> SpotReport:
    """Spot intervals in a feature store, or in a video / image folder / dataset folder.

    ``checkpoints`` is what :func:`load_spotting_models` takes: a checkpoint, a folder of them or
    a run folder. A path that is not a store is extracted first with
    :func:`flowkit.pipeline.extract.extract` at the models' k values, into ``store_out`` (default: a
    temporary store, removed afterwards), with ``flow_params`` or else the TV-L1 parameters
    recorded in the checkpoints (the features the models were trained on), or else OpenCV's
    defaults; likewise ``as_released`` (the released code's round trips), when not given, is what the
    checkpoints record, else off. ``extract_options`` go to ``extract`` unchanged, as in ``flowkit extract``:
    ``flow_backend``, ``device``, ``gpu``, ``landmark_backend``, ``model_path`` (a MediaPipe
    face_landmarker.task), ``workers``, ... A video that cannot be extracted is recorded in the
    report's failures and the others are spotted.

    A checkpoint that records other TV-L1 parameters than the store's, or than ``flow_params``,
    is refused (:func:`check_flow_params`), or with ``force`` spotted with a warning.
    """
    models = load_spotting_models(checkpoints)
    source = Path(source)
    if not source.exists():
        raise SpotnetError(f"input should be a feature store, a video or a folder, got {source} (no such path)")
    if (source / "zarr.json").is_file():
        check_flow_params(models, _store_flow_params(source), what=f"store {source}'s", force=force)
        return SpotReport(spot_store(models, source, p=p))
    if flow_params is None:
        recorded = [m.flow_params for _, group in models.values() for m in group if m.flow_params]
        flow_params = recorded[0] if recorded else None
    if extract_options.get("as_released") is None:
        recorded = [m.as_released for _, group in models.values() for m in group if m.as_released is not None]
        extract_options = {**extract_options, "as_released": bool(recorded and recorded[0])}
    if flow_params is not None:  # an explicit setting, or one checkpoint's that the others must share
        from flowkit.flow.params import check_params

        flow_params = check_params(dict(flow_params)).to_dict()
        check_flow_params(models, flow_params, what="the extraction's", force=force)
    ks = sorted({k for k, _ in models.values()})
    if store_out is not None:
        return _extract_and_spot(models, source, Path(store_out), ks=ks, p=p, flow_params=flow_params,
                                 extract_options=extract_options)
    with tempfile.TemporaryDirectory(prefix="spotnet-") as tmp:
        return _extract_and_spot(models, source, Path(tmp) / "features.zarr", ks=ks, p=p, flow_params=flow_params,
                                 extract_options=extract_options)


def _extract_and_spot(models, source: Path, store: Path, *, ks, p, flow_params, extract_options) -> SpotReport:
    from flowkit.errors import FlowkitError
    from flowkit.io.sources import discover_videos
    from flowkit.pipeline.extract import extract

    try:
        report = extract(discover_videos(source), store, ks=ks, **extract_options,
                         **({"flow_params": flow_params} if flow_params else {}))
    except FlowkitError as exc:
        raise SpotnetError(f"feature extraction of {source} should succeed, got: {exc}") from None
    failures = [(v.video_id, v.message) for v in report.failures]
    # Truncated videos are reported and still spotted over the frames that decode.
    only = {k: {v.video_id for v in report.videos if k in v.ks and v.status != "failed"} for k in ks}
    intervals = spot_store(models, store, p=p, only=only) if any(only.values()) else []
    return SpotReport(intervals, failures)
