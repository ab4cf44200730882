"""Leave-one-subject-out training of SOFTNet on a flowkit store (SPEC sections 6-8).

Recipe per fold: re-initialised SOFTNet (Keras defaults), SGD without momentum, MSE, batch 12,
10 epochs, fixed seeds; then every window of the held-out videos is scored and spotted with
that type's k. Outputs under ``out_dir``::

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
import random
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from spotnet.checkpoint import load_checkpoint, save_model
from spotnet.dataset import (
    ChunkShuffleSampler,
    WindowDataset,
    k_for_type,
    list_videos,
    loso_folds,
    open_store,
    training_index,
    video_windows,
)
from spotnet.errors import SpotnetError
from spotnet.evaluation import EvalInterval, evaluate, write_intervals_csv
from spotnet.model import SOFTNet
from spotnet.spotting import spot_intervals

EXPRESSIONS = ("macro", "micro", "all")
CONTROLS = (None, "random")


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def _deterministic(threads: int | None):
    # SOFTNet's layers are tiny: on a busy 2-core CPU, intra-op threading made a batch of 12
    # 60x slower (0.3 s vs 5 ms), and one thread also fixes the reduction order.
    # cuBLAS is only deterministic with a fixed workspace; this must be set before its first use.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    previous = torch.are_deterministic_algorithms_enabled()
    previous_threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True, warn_only=True)
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)
        torch.set_num_threads(previous_threads)


def _save_npy(path: Path, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def predict_video(model: SOFTNet | Sequence[SOFTNet], store_path, video, *, device="cpu",
                  batch_size: int = 256) -> np.ndarray:
    """(n_windows,) float32 raw scores of every window of one video, in window order.

    ``model`` may be a list of models (an ensemble): each batch of (B, 3, 42, 42) features is
    read once and fed to every model, and the models' scores are averaged window by window.
    """
    models = [m.eval() for m in (model if isinstance(model, Sequence) else [model])]
    outs: list[list[np.ndarray]] = [[] for _ in models]
    with torch.no_grad():
        for x in video_windows(store_path, video, batch_size=batch_size):
            x = x.to(device)
            for m, out in zip(models, outs):
                out.append(m(x).cpu().numpy())
    scores = [np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32) for out in outs]
    return scores[0] if len(scores) == 1 else np.mean(scores, axis=0)


def train_fold(store_path, videos, train, expression, *, epochs=10, batch_size=12, lr=5e-4, seed=0,
               device="cpu", label_kind="unit", progress=False, desc="") -> SOFTNet:
    """Train one fold's SOFTNet from scratch on the training videos ``train`` (indices)."""
    _seed_all(seed)
    rng = np.random.default_rng(seed)
    index, labels, codes = training_index(videos, train, expression, rng=rng, label_kind=label_kind)
    data = WindowDataset(store_path, videos, index, labels, codes, seed=seed)
    sampler = ChunkShuffleSampler(data, seed=seed)
    loader = DataLoader(data, batch_size=batch_size, sampler=sampler, num_workers=0)
    model = SOFTNet()
    model.reset_parameters()
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.0)
    loss_fn = torch.nn.MSELoss()
    bar = range(epochs)
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


def _run_type(store_path, out: Path, expression: str, *, epochs, batch_size, lr, p, seed, subjects, device,
              progress, label_kind, control):
    k = k_for_type(store_path, expression)
    videos = list_videos(store_path, k)
    folds = loso_folds(videos, expression)
    if subjects:
        wanted = set(subjects)
        unknown = wanted - {s for s, _, _ in folds}
        if unknown:
            raise SpotnetError(
                f"subjects should be among {[s for s, _, _ in folds]} (with {expression} intervals), got {sorted(unknown)}"
            )
        folds = [f for f in folds if f[0] in wanted]
    (out / "folds" / expression).mkdir(parents=True, exist_ok=True)
    (out / "scores" / expression).mkdir(parents=True, exist_ok=True)
    flow = _flow_settings(store_path, videos[0].video, k)
    recipe = {"loss": "mse", "optimizer": "sgd", "momentum": 0.0, "lr": lr, "batch_size": batch_size,
              "epochs": epochs, "seed": seed, "label_kind": label_kind, "downsample": "drop int(max_class_count/2) label-0",
              "augment": "micro: flip, blur 7x7, noise var 0.01" if expression == "micro" else "none"}
    bar = folds
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(folds, desc=f"{expression} folds", unit="fold")
    pred, gt, scores = [], [], {}
    for subject, train, test in bar:
        model = None
        ckpt = out / "folds" / expression / f"{subject}.pt"
        score_paths = [out / "scores" / expression / f"{videos[i].video}.npy" for i in test]
        if control == "random":
            rng = np.random.default_rng((seed, len(subject), sum(map(ord, subject))))
            fold_scores = [rng.random(videos[i].n_windows).astype(np.float32) for i in test]
        elif _fold_done(ckpt, score_paths):
            fold_scores = [np.load(p) for p in score_paths]
        else:
            model = train_fold(store_path, videos, train, expression, epochs=epochs, batch_size=batch_size, lr=lr,
                               seed=seed, device=device, label_kind=label_kind, progress=progress,
                               desc=f"{expression} {subject}")
            fold_scores = [predict_video(model, store_path, videos[i], device=device) for i in test]
        fold_pred, fold_gt = _spot(videos, test, fold_scores, expression, k, p)
        if model is not None:
            metrics = getattr(evaluate(fold_pred, fold_gt), expression).__dict__
            meta = {"recipe": recipe, "k": k, "fold": subject, "expression": expression, "type": expression, "p": p,
                    "metrics": metrics, **flow, "train_videos": [videos[i].video for i in train],
                    "test_videos": [videos[i].video for i in test]}
            # Scores first, checkpoint last: the checkpoint marks the fold complete.
            for path, s in zip(score_paths, fold_scores):
                _save_npy(path, s)
            save_model(model.cpu(), ckpt, metadata=meta)
        pred += fold_pred
        gt += fold_gt
        for i, s in zip(test, fold_scores):
            scores[videos[i].video] = s
    return k, videos, pred, gt, scores


def _flow_settings(store_path, video: str, k: int) -> dict:
    """The store's TV-L1 backend and parameters, so that spotting a new video can match them."""
    _, groups = open_store(store_path)
    attrs = groups[video][f"k{k}"].attrs
    return {"flow_backend": attrs.get("flow_backend"), "flow_params": attrs.get("flow_params")}


def _spot(videos, test, fold_scores, expression, k, p):
    pred, gt = [], []
    for i, s in zip(test, fold_scores):
        v = videos[i]
        pred += [EvalInterval(v.video, it.start, min(it.end, v.n_frames - 1), expression, it.score)
                 for it in spot_intervals(s, k, p=p)]
        gt += [EvalInterval(v.video, on, off, expression) for on, off in v.spans(expression)]
    return pred, gt


def train_loso(
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
    threads: int | None = 1,
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
        threads: torch CPU threads while training (default 1, fastest for this small model;
            None keeps torch's setting).

    Returns:
        :class:`spotnet.evaluation.EvaluationResult` of the pooled predictions.
    """
    if expression not in EXPRESSIONS:
        raise SpotnetError(f"expression should be one of {', '.join(EXPRESSIONS)}, got {expression!r}")
    if control not in CONTROLS:
        raise SpotnetError(f"control should be 'random' or None, got {control!r}")
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise SpotnetError(f"epochs and batch size should be >= 1 and lr > 0, got {epochs}, {batch_size}, {lr}")
    open_store(store_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    types = ("macro", "micro") if expression == "all" else (expression,)
    pred, gt, per_type = [], [], {}
    with _deterministic(threads):
        for kind in types:
            k, videos, tp, tg, scores = _run_type(
                store_path, out, kind, epochs=epochs, batch_size=batch_size, lr=lr, p=p, seed=seed,
                subjects=subjects, device=device, progress=progress, label_kind=label_kind, control=control)
            pred += tp
            gt += tg
            per_type[kind] = {"k": k, "videos": videos, "scores": scores}
    result = evaluate(pred, gt)
    write_intervals_csv(out / "intervals.csv", pred)
    metrics = result.to_dict()
    metrics["settings"] = {"expression": expression, "epochs": epochs, "batch_size": batch_size, "lr": lr, "p": p,
                           "seed": seed, "control": control, "store": str(store_path),
                           "k": {kind: per_type[kind]["k"] for kind in per_type}}
    tmp = out / ".metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out / "metrics.json")
    if report:
        from spotnet.report import write_report

        write_report(out, per_type, pred, gt, result, p=p)
    return result
