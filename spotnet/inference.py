"""Scoring stored windows with one model or an ensemble, shared by training (held-out videos) and
``spotnet spot``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from spotnet.dataset import video_windows

__all__ = ["cpu_threads", "ensemble_scores", "model_threads", "predict_video"]


def cpu_threads(models: Sequence[nn.Module]) -> int | None:
    """Torch CPU threads that suit ``models`` (their registry spec): 1 for SOFTNet alone, whose
    layers are too small to share (threads then wait on each other more than they compute), and torch's
    default (every core) as soon as one model is larger."""
    from spotnet.models import get_spec

    wanted = {get_spec(getattr(m, "backbone", "softnet")).cpu_threads for m in models}
    return None if None in wanted else max(wanted)


@contextmanager
def model_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch CPU threads (None: leave torch's setting)."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def ensemble_scores(models: Sequence[nn.Module], x: torch.Tensor) -> np.ndarray:
    """(B,) float32 scores of (B, 3, 42, 42) min-max normalised windows ``x``, averaged over
    ``models`` window by window (one model: its scores)."""
    with torch.no_grad():
        scores = [m(x).cpu().numpy().astype(np.float32) for m in models]
    return scores[0] if len(scores) == 1 else np.mean(scores, axis=0)


def predict_video(model: nn.Module | Sequence[nn.Module], store_path, video, *, device="cpu",
                  batch_size: int = 256) -> np.ndarray:
    """(n_windows,) float32 raw scores of every window of one video, in window order.

    ``model`` may be a list of models (an ensemble): each batch of (B, 3, 42, 42) features is
    read once and fed to every model, and the models' scores are averaged window by window.
    """
    models = [m.eval() for m in (model if isinstance(model, Sequence) else [model])]
    batches = [ensemble_scores(models, x.to(device)) for x in video_windows(store_path, video, batch_size=batch_size)]
    return np.concatenate(batches) if batches else np.zeros(0, np.float32)
