"""Leave-one-subject-out training of SOFTNet (or another registered backbone) on a flowkit store
(SPEC sections 6-8).

Recipe per fold: re-initialised SOFTNet (Keras defaults; ``--backbone`` picks another network),
SGD without momentum, MSE, batch 12, 10 epochs, fixed seeds; then every window of the held-out
videos is scored and spotted with that type's k. Outputs under ``out_dir``::

    folds/<type>/<subject>.pt    checkpoint (metadata: recipe, k, fold, expression, metrics)
    scores/<type>/<video>.npy    raw window scores of the held-out video
    intervals.csv                spotted intervals, 1-based, with scores
    metrics.json                 macro, micro, overall: tp fp fn precision recall f1 ap50_95
    plots/<type>/<video>.png, report.html

A fold is complete when its checkpoint and every score file exist (each written atomically);
a rerun skips complete folds, so a killed run restarts at the first incomplete fold.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from flowkit.errors import FlowkitError
from flowkit.io.atomic import atomic_write
from spotnet.checkpoint import load_checkpoint, save_model
from spotnet.dataset import (
    ChunkShuffleSampler,
    WindowDataset,
    k_for_type,
    list_videos,
    loso_folds,
    open_store,
    training_index,
)
from spotnet.determinism import deterministic, seed_all
from spotnet.errors import SpotnetError
from spotnet.evaluation import EvalInterval, evaluate, write_intervals_csv
from spotnet.inference import predict_video
from spotnet.models import build_model, get_spec
from spotnet.spotting import spot_video

__all__ = ["EXPRESSIONS", "Recipe", "predict_video", "train_fold", "train_loso"]

EXPRESSIONS = ("macro", "micro", "all")
CONTROLS = (None, "random")


@dataclass(frozen=True)
class Recipe:
    """One fold's training recipe (SPEC 6 defaults): SGD without momentum, MSE, fixed seed.

    label_kind: pseudo-label shape (:func:`spotnet.labels.pseudo_labels`), "unit" as released.
    backbone: the network, a name of :func:`spotnet.models.list_models` ("softnet" as released).
    """

    epochs: int = 10
    batch_size: int = 12
    lr: float = 5e-4
    seed: int = 0
    label_kind: str = "unit"
    backbone: str = "softnet"

    def metadata(self, expression: str) -> dict:
        """The recipe as recorded in each checkpoint."""
        return {"backbone": self.backbone, "loss": "mse", "optimizer": "sgd", "momentum": 0.0, "lr": self.lr,
                "batch_size": self.batch_size,
                "epochs": self.epochs, "seed": self.seed, "label_kind": self.label_kind,
                "downsample": "drop int(max_class_count/2) label-0",
                "augment": "micro: flip, blur 7x7, noise var 0.01" if expression == "micro" else "none",
                "generator": "as released: min-max, augment, min-max again; noise clipped as random_noise"}


def train_fold(store_path, videos, train, expression, *, recipe: Recipe = Recipe(), device="cpu",
               progress=False, desc="") -> nn.Module:
    """Train one fold's model (``recipe.backbone``) from scratch on the training videos ``train`` (indices)."""
    seed_all(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    index, labels, codes = training_index(videos, train, expression, rng=rng, label_kind=recipe.label_kind)
    data = WindowDataset(store_path, videos, index, labels, codes, seed=recipe.seed)
    sampler = ChunkShuffleSampler(data, seed=recipe.seed)
    loader = DataLoader(data, batch_size=recipe.batch_size, sampler=sampler, num_workers=0)
    model = build_model(recipe.backbone)  # freshly initialised, from the seeded generator
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=0.0)
    loss_fn = torch.nn.MSELoss()
    bar = range(recipe.epochs)
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(bar, desc=f"{desc} epochs", leave=False, unit="epoch")
    for epoch in bar:
        sampler.set_epoch(epoch)
        for x, y in loader:
            opt.zero_grad()
            loss = loss_fn(model(x.to(device)), y.to(device))
            loss.backward()
            opt.step()
    return model.eval()


def _fold_done(ckpt: Path, score_paths: list[Path]) -> bool:
    if not ckpt.is_file() or not all(p.is_file() for p in score_paths):
        return False
    try:
        load_checkpoint(ckpt)
    except SpotnetError:
        return False
    return True


@dataclass(frozen=True)
class _Run:
    """The settings of one ``train_loso`` call, shared by its expression types."""

    store_path: Path
    out: Path
    recipe: Recipe
    p: float
    device: torch.device
    subjects: tuple[str, ...] | None
    progress: bool
    control: str | None
    restart: bool = False
    parallel_folds: int | None = 1
    memory_share: float = 0.5
    scheduler: str | None = None
    threads: int | None = None


@dataclass(frozen=True)
class _TypePlan:
    """One expression type's folds, known before any training starts."""

    expression: str
    k: int
    videos: list
    folds: list


@dataclass
class _TypeResult:
    k: int
    videos: list
    pred: list = field(default_factory=list)
    gt: list = field(default_factory=list)
    scores: dict = field(default_factory=dict)


def _select_folds(folds, subjects, expression: str):
    if not subjects:
        return folds
    unknown = set(subjects) - {s for s, _, _ in folds}
    if unknown:
        raise SpotnetError(
            f"subjects should be among {[s for s, _, _ in folds]} (with {expression} intervals), got {sorted(unknown)}"
        )
    return [f for f in folds if f[0] in set(subjects)]


def _plan_type(run: _Run, expression: str) -> _TypePlan:
    k = k_for_type(run.store_path, expression)
    videos = list_videos(run.store_path, k)
    return _TypePlan(expression, k, videos, _select_folds(loso_folds(videos, expression), run.subjects, expression))


def _fold_identity(run: _Run, plan: _TypePlan, fold) -> dict:
    """What a fold's checkpoint records about how it was made; a resumed fold must match it."""
    subject, train, test = fold
    return {"recipe": run.recipe.metadata(plan.expression), "k": plan.k, "fold": subject,
            **_flow_settings(run.store_path, plan.videos[0].video, plan.k),
            "train_videos": [plan.videos[i].video for i in train],
            "test_videos": [plan.videos[i].video for i in test]}


def _differences(old: dict, new: dict) -> list[str]:
    out = []
    for key, want in new.items():
        have = old.get(key)
        if isinstance(want, dict) and isinstance(have, dict):
            out += [f"{key}.{d}" for d in _differences(have, want)]
        elif have != want:
            out.append(f"{key} {have!r} -> {want!r}" if not isinstance(want, list) else key)
    return out


def _check_resumable(run: _Run, plans: list[_TypePlan]) -> None:
    """Before any training: each fold already in the run folder was made with these settings."""
    if run.control is not None or run.restart:
        return
    for plan in plans:
        for fold in plan.folds:
            ckpt = run.out / "folds" / plan.expression / f"{fold[0]}.pt"
            if not ckpt.is_file():
                continue
            try:
                _, meta = load_checkpoint(ckpt)
            except SpotnetError:
                continue  # unreadable: trained again
            if isinstance(meta.get("recipe"), dict):
                meta["recipe"].setdefault("backbone", "softnet")  # folds trained before backbones existed
            diff = _differences(meta, _fold_identity(run, plan, fold))
            if diff:
                raise SpotnetError(
                    f"run folder {run.out} should hold folds made with the requested settings to resume, got "
                    f"{plan.expression} fold {fold[0]} with other {', '.join(diff)}; "
                    "use --restart to train again, or another --out"
                )


def _run_type(run: _Run, plan: _TypePlan) -> _TypeResult:
    for sub in ("folds", "scores"):
        (run.out / sub / plan.expression).mkdir(parents=True, exist_ok=True)
    bar = plan.folds
    if run.progress:
        from tqdm.auto import tqdm

        bar = tqdm(plan.folds, desc=f"{plan.expression} folds", unit="fold")
    result = _TypeResult(plan.k, plan.videos)
    videos, expression = plan.videos, plan.expression
    trained = _train_parallel(run, plan) if run.parallel_folds != 1 or run.scheduler is not None else {}
    for fold in bar:
        fold_scores = trained[fold[0]] if fold[0] in trained else _fold_scores(run, plan, fold)
        for i, s in zip(fold[2], fold_scores):
            result.pred += spot_video(s, videos[i], expression, p=run.p)
            result.gt += [EvalInterval(videos[i].video, on, off, expression) for on, off in videos[i].spans(expression)]
            result.scores[videos[i].video] = s
    return result


def _fold_scores(run: _Run, plan: _TypePlan, fold) -> list[np.ndarray]:
    """The held-out videos' scores of one fold: random (control), resumed, or trained and saved."""
    subject, train, test = fold
    videos, expression = plan.videos, plan.expression
    if run.control == "random":
        rng = np.random.default_rng((run.recipe.seed, len(subject), sum(map(ord, subject))))
        return [rng.random(videos[i].n_windows).astype(np.float32) for i in test]
    resumed = _resumed_scores(run, plan, fold)
    if resumed is not None:
        return resumed
    model = train_fold(run.store_path, videos, train, expression, recipe=run.recipe, device=run.device,
                       progress=run.progress, desc=f"{expression} {subject}")
    return _save_fold(run, plan, fold, model)


def _fold_paths(run: _Run, plan: _TypePlan, fold) -> tuple[Path, list[Path]]:
    subject, _, test = fold
    return (run.out / "folds" / plan.expression / f"{subject}.pt",
            [run.out / "scores" / plan.expression / f"{plan.videos[i].video}.npy" for i in test])


def _resumed_scores(run: _Run, plan: _TypePlan, fold) -> list[np.ndarray] | None:
    """The scores of a fold that ``run.out`` already holds complete (None: train it)."""
    ckpt, score_paths = _fold_paths(run, plan, fold)
    if not run.restart and _fold_done(ckpt, score_paths):
        return [np.load(p) for p in score_paths]
    return None


def _train_parallel(run: _Run, plan: _TypePlan) -> dict[str, list[np.ndarray]]:
    """Train the type's incomplete folds ``run.parallel_folds`` at a time (None: all at once); their scores."""
    from spotnet.window_memory import load_windows

    if run.control is not None:
        return {}
    todo = [fold for fold in plan.folds if _resumed_scores(run, plan, fold) is None]
    if not todo:
        return {}
    size = run.parallel_folds or len(todo)
    groups = [todo[start:start + size] for start in range(0, len(todo), size)]
    if run.scheduler is not None:
        from spotnet.fold_tasks import run_groups

        run_groups(run, plan, groups, train=_train_group)  # the workers save each fold; a lost group runs again
        return {fold[0]: _resumed_scores(run, plan, fold) for fold in todo}
    windows = load_windows(run.store_path, plan.videos, device=run.device, share=run.memory_share)
    out: dict[str, list[np.ndarray]] = {}
    for group in groups:
        out.update(_train_group(run, plan, group, windows))
    return out


def _train_group(run: _Run, plan: _TypePlan, group: list, windows=None) -> dict[str, list[np.ndarray]]:
    """Train one group of folds together, saving each as it ends; folds already complete are skipped."""
    from spotnet.fold_parallel import train_folds
    from spotnet.window_memory import load_windows

    group = [fold for fold in group if _resumed_scores(run, plan, fold) is None]
    if not group:
        return {}
    if windows is None:
        windows = load_windows(run.store_path, plan.videos, device=run.device, share=run.memory_share)
    out: dict[str, list[np.ndarray]] = {}

    def done(f, model):
        out[group[f][0]] = _save_fold(run, plan, group[f], model)

    train_folds(windows, plan.videos, [fold[1] for fold in group], plan.expression, recipe=run.recipe,
                device=run.device, on_fold_done=done, progress=run.progress and run.scheduler is None)
    return out


def _save_fold(run: _Run, plan: _TypePlan, fold, model) -> list[np.ndarray]:
    """Score a trained fold's held-out videos, then write its scores and (last) its checkpoint."""
    subject, train, test = fold
    videos, expression = plan.videos, plan.expression
    ckpt, score_paths = _fold_paths(run, plan, fold)
    model.to(run.device)
    fold_scores = [predict_video(model, run.store_path, videos[i], device=run.device) for i in test]
    pred = [it for i, s in zip(test, fold_scores) for it in spot_video(s, videos[i], expression, p=run.p)]
    gt = [EvalInterval(videos[i].video, on, off, expression) for i in test for on, off in videos[i].spans(expression)]
    meta = {**_fold_identity(run, plan, fold), "expression": expression, "type": expression, "p": run.p,
            "metrics": getattr(evaluate(pred, gt), expression).__dict__}
    # Scores first, checkpoint last: the checkpoint marks the fold complete.
    for path, s in zip(score_paths, fold_scores):
        with atomic_write(path) as f:
            np.save(f, s)
    save_model(model.cpu(), ckpt, metadata=meta)
    return fold_scores


def _flow_settings(store_path, video: str, k: int) -> dict:
    """The store's TV-L1 backend and parameters, and how its crops were made (crop convention,
    the released round trips), so that spotting a new video can extract it the same way."""
    store = open_store(store_path)
    attrs = store.k_attrs(video, k)
    try:  # the root's setting; a store written before the root recorded it is scanned, and refused when mixed
        params = store.attrs.get("flow_params") or store.flow_params()
    except FlowkitError as exc:
        raise SpotnetError(str(exc)) from None
    made = store.video_attrs(video)
    return {"flow_backend": attrs.get("flow_backend"), "flow_params": params,
            "as_released": bool(made.get("as_released", False)), "crop_convention": made.get("crop_convention")}


def _check_parallel(parallel_folds: int | None, backbone: str, scheduler: str | None) -> int | None:
    """The folds to stack (None: all), after refusing bad settings with one sentence."""
    if scheduler is not None:
        from flowkit.errors import FlowkitError
        from flowkit.pipeline.engines import check_scheduler

        try:
            check_scheduler(scheduler)
        except FlowkitError as exc:
            raise SpotnetError(str(exc)) from None
    if parallel_folds is not None and parallel_folds < 1:
        raise SpotnetError(f"parallel folds should be >= 1 (or left out for every fold at once), got {parallel_folds}")
    if parallel_folds != 1:
        from spotnet.fold_parallel import stack_refusal

        refusal = stack_refusal(backbone)
        if refusal and parallel_folds is not None:
            raise SpotnetError(refusal)
        if refusal:
            parallel_folds = 1  # "as many as allowed" is one at a time for a backbone that cannot stack
    return parallel_folds


def train_loso(  # noqa: PLR0913 - public keyword-only API, one knob per `spotnet train` option
    store_path,
    *,
    expression: str = "all",
    out_dir,
    epochs: int = 10,
    batch_size: int = 12,
    lr: float = 5e-4,
    p: float = 0.55,
    seed: int = 0,
    subjects=None,
    device=None,
    progress: bool = True,
    label_kind: str = "unit",
    control: str | None = None,
    report: bool = True,
    threads: int | None = None,
    restart: bool = False,
    backbone: str = "softnet",
    parallel_folds: int | None = 1,
    memory_share: float = 0.5,
    scheduler: str | None = None,
):
    """Leave-one-subject-out training and evaluation on a flowkit feature store.

    Args:
        store_path: Zarr store written by ``flowkit extract --annotations ...``.
        expression: "macro", "micro" or "all" (both models, trained separately, pooled as overall).
        out_dir: output folder (see the module docstring); reruns resume complete folds.
        epochs, batch_size, lr: SGD recipe (SPEC 6 defaults).
        p: spotting threshold position (SPEC 7).
        seed: seeds python, numpy and torch (deterministic algorithms on during training).
        subjects: only these held-out subjects (default all).
        device: torch device (default CUDA when available, else CPU; the store is read on the
            CPU either way).
        control: None, or "random" to replace the model by uniform random scores (a sanity
            baseline: its F1 should be near 0).
        report: also write plots/ and report.html.
        threads: torch CPU threads while training; None follows the backbone
            (:func:`spotnet.inference.cpu_threads`: 1 for SOFTNet, every core for the others).
        backbone: the network to train (:func:`spotnet.models.list_models`), recorded in each
            checkpoint; "softnet" as released.
        restart: train every fold again, even those that ``out_dir`` already holds. Without it, a
            fold in ``out_dir`` made with another recipe, k, TV-L1 setting or video split is
            refused before anything is trained.
        parallel_folds: folds of a type trained side by side in one stacked computation
            (:mod:`spotnet.fold_parallel`; each fold is still its own recipe); None: every
            incomplete fold of the type at once (one after another for a backbone that cannot
            stack, :func:`spotnet.fold_parallel.stack_refusal`); 1: one fold after another. The
            folds' checkpoints, scores, intervals and metrics are those of training each alone
            (weights to float32 rounding: docs/training.md).
        memory_share: with ``parallel_folds`` other than 1, the type's windows are held in memory
            (:mod:`spotnet.window_memory`) when they fit in this share of the free host memory
            (or of the device's, on CUDA); else they stream from the store.
        scheduler: train the groups of ``parallel_folds`` folds as Dask tasks (:mod:`spotnet.fold_tasks`):
            "local:N" or "tcp://HOST:PORT" (workers that see ``store_path`` and ``out_dir``; on CUDA
            each group asks for the worker resource GPU=1). A group lost with its worker runs again
            from its first incomplete fold.

    Returns:
        :class:`spotnet.evaluation.EvaluationResult` of the pooled predictions.
    """
    if expression not in EXPRESSIONS:
        raise SpotnetError(f"expression should be one of {', '.join(EXPRESSIONS)}, got {expression!r}")
    if control not in CONTROLS:
        raise SpotnetError(f"control should be 'random' or None, got {control!r}")
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise SpotnetError(f"epochs and batch size should be >= 1 and lr > 0, got {epochs}, {batch_size}, {lr}")
    spec = get_spec(backbone)  # an unknown backbone is refused before anything is written
    parallel_folds = _check_parallel(parallel_folds, backbone, scheduler)
    open_store(store_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise SpotnetError(f"run folder {out} should be writable, got a folder this user cannot write to")
    device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if threads is None:
        threads = spec.cpu_threads
    run = _Run(Path(store_path), out, Recipe(epochs, batch_size, lr, seed, label_kind, backbone), p, device,
               tuple(subjects) if subjects else None, progress, control, restart, parallel_folds, memory_share,
               scheduler, threads)
    # Every type's folds and every resumed fold are checked before the first fold trains.
    plans = [_plan_type(run, kind) for kind in (("macro", "micro") if expression == "all" else (expression,))]
    _check_resumable(run, plans)
    with deterministic(threads):
        per_type = {plan.expression: _run_type(run, plan) for plan in plans}
    pred = [it for r in per_type.values() for it in r.pred]
    gt = [it for r in per_type.values() for it in r.gt]
    result = evaluate(pred, gt)
    write_intervals_csv(out / "intervals.csv", pred)
    metrics = result.to_dict()
    metrics["settings"] = {"expression": expression, "epochs": epochs, "batch_size": batch_size, "lr": lr, "p": p,
                           "seed": seed, "control": control, "store": str(store_path),
                           "k": {kind: r.k for kind, r in per_type.items()}}
    with atomic_write(out / "metrics.json", "w", encoding="utf-8") as f:
        f.write(json.dumps(metrics, indent=2) + "\n")
    if report:
        from spotnet.report import write_report

        write_report(out, {kind: {"k": r.k, "videos": r.videos, "scores": r.scores} for kind, r in per_type.items()},
                     pred, gt, result, p=p)
    return result
