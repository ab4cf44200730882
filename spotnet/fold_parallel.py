"""Several LOSO folds of one type trained side by side, each exactly its own recipe.

A fold trained here is the fold that :func:`spotnet.training.train_fold` trains alone: the same
initialisation (torch seeded with the recipe's seed before the model is built), the same
down-sampling, augmentation codes and item noise (:func:`spotnet.dataset.training_index`,
:func:`spotnet.augment.training_windows`), the same shuffled batches of ``batch_size``
(:class:`spotnet.dataset.ChunkShuffleSampler` per epoch, the last batch of an epoch shorter), and
its own plain SGD step on its own parameters. Only the arithmetic is shared: the folds'
parameters are stacked, and one step of every fold is one ``torch.func.vmap`` of
``torch.func.grad`` over the stack. A batched convolution or matrix product sums in another
order than a single one, so weights agree with the sequential trainer's to float32 rounding that
grows with the number of steps (tests/test_fold_parallel.py states the bound), not bitwise.

Folds that run out of batches drop out of the step; folds whose batch in a step is shorter
(an epoch's last batch) are stepped in their own group. A fold is handed back, as a model, the
moment its last step is done, so that the caller can score and save it before the others end.

Backbones with batch norm or dropout cannot be stacked (their running statistics and random
masks are per-call state); :func:`stack_refusal` names them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from spotnet.augment import training_windows
from spotnet.dataset import ChunkShuffleSampler, VideoWindows, WindowDataset, training_index
from spotnet.determinism import seed_all
from spotnet.errors import SpotnetError
from spotnet.models import build_model

__all__ = ["FoldBatches", "fold_batches", "stack_refusal", "train_folds"]

_UNSTACKABLE = (nn.modules.batchnorm._BatchNorm, nn.Dropout, nn.Dropout2d, nn.AlphaDropout)


def stack_refusal(backbone: str) -> str | None:
    """Why ``backbone`` cannot be trained with other folds in one stacked step, or None."""
    model = build_model(backbone)
    kinds = sorted({type(m).__name__ for m in model.modules() if isinstance(m, _UNSTACKABLE)})
    if kinds or any(True for _ in model.buffers()):
        what = ", ".join(kinds) or "buffers"
        return (f"--parallel-folds should be 1 for backbone {backbone!r} ({what} keep per-call state that "
                "folds cannot share in one stacked step), got more; softnet stacks")
    return None


@dataclass(frozen=True)
class FoldBatches:
    """One fold's training set and its batches over every epoch, in training order.

    index: (N, 2) [video position, window]; labels: (N,); codes: (N,) augmentation codes;
    batches: item numbers (into index) of each step, epochs one after the other.
    """

    index: np.ndarray
    labels: np.ndarray
    codes: np.ndarray
    batches: list[np.ndarray]


def fold_batches(videos: Sequence[VideoWindows], train: Sequence[int], expression: str, *, recipe) -> FoldBatches:
    """A fold's training set and batch order, drawn as :func:`spotnet.training.train_fold` draws them."""
    rng = np.random.default_rng(recipe.seed)
    index, labels, codes = training_index(videos, train, expression, rng=rng, label_kind=recipe.label_kind)
    sampler = ChunkShuffleSampler(WindowDataset("", videos, index, labels, codes), seed=recipe.seed)
    batches = []
    for epoch in range(recipe.epochs):
        sampler.set_epoch(epoch)
        order = np.fromiter(iter(sampler), dtype=np.int64, count=len(index))
        batches += [order[s:s + recipe.batch_size] for s in range(0, len(order), recipe.batch_size)]
    return FoldBatches(index, labels, codes, batches)


def _initial_model(recipe) -> nn.Module:
    seed_all(recipe.seed)
    return build_model(recipe.backbone)


class _Stack:
    """The folds' parameters stacked on a leading fold dimension, and one SGD step of a group."""

    def __init__(self, models: list[nn.Module], device, lr: float):
        self.template = models[0].to(device)
        self.names = [name for name, _ in self.template.named_parameters()]
        self.params = {n: torch.stack([dict(m.named_parameters())[n].detach().to(device) for m in models])
                       for n in self.names}
        self.lr = lr
        from torch.func import functional_call, grad, vmap

        def loss(params, x, y):
            return nn.functional.mse_loss(functional_call(self.template, params, (x,)), y)

        self._grads = vmap(grad(loss))

    def step(self, folds: list[int], x: torch.Tensor, y: torch.Tensor) -> None:
        """x: (G, B, 3, 42, 42), y: (G, B) for the G folds ``folds`` (positions in the stack)."""
        whole = len(folds) == len(next(iter(self.params.values())))
        pick = None if whole else torch.tensor(folds, device=x.device)
        params = self.params if whole else {n: p[pick] for n, p in self.params.items()}
        grads = self._grads(params, x, y)
        with torch.no_grad():
            for n, g in grads.items():
                if whole:
                    self.params[n].add_(g, alpha=-self.lr)  # torch.optim.SGD's step without momentum
                else:
                    self.params[n][pick] = params[n].add_(g, alpha=-self.lr)

    def model(self, fold: int, backbone: str) -> nn.Module:
        model = build_model(backbone)
        model.load_state_dict({n: p[fold].detach().cpu().clone() for n, p in self.params.items()})
        return model.eval()


def train_folds(windows, videos: Sequence[VideoWindows], trains: Sequence[Sequence[int]], expression: str, *,
                recipe, device="cpu", on_fold_done: Callable[[int, nn.Module], None] | None = None,
                progress: bool = False) -> list[nn.Module]:
    """Train the folds whose training videos are ``trains`` together; return their models (eval mode, CPU).

    Args:
        windows: :class:`spotnet.window_memory.MemoryWindows` or ``StoreWindows`` over ``videos``.
        videos: the type's :class:`VideoWindows` (one k).
        trains: per fold, the positions in ``videos`` of its training videos.
        expression: "macro" or "micro".
        recipe: :class:`spotnet.training.Recipe`, or one per fold (one lr and backbone; the
            seeds, epochs and batch sizes may differ).
        device: where the stacked step runs.
        on_fold_done: called with (position in ``trains``, model) when a fold's last step is done.
        progress: show a bar of the group's steps.
    """
    recipes = list(recipe) if isinstance(recipe, (list, tuple)) else [recipe] * len(trains)
    if len(recipes) != len(trains) or len({(r.lr, r.backbone) for r in recipes}) != 1:
        raise SpotnetError(f"fold recipes should be one per fold ({len(trains)}) with one lr and backbone, got "
                           f"{len(recipes)} with {sorted({(r.lr, r.backbone) for r in recipes})}")
    refusal = stack_refusal(recipes[0].backbone) if len(trains) > 1 else None
    if refusal:
        raise SpotnetError(refusal)
    device = torch.device(device)
    plans = [fold_batches(videos, train, expression, recipe=r) for train, r in zip(trains, recipes)]
    seeds = [r.seed for r in recipes]
    stack = _Stack([_initial_model(r) for r in recipes], device, recipes[0].lr)
    done: list[nn.Module | None] = [None] * len(trains)
    steps = range(max(len(p.batches) for p in plans))
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=f"{expression} {len(trains)} folds", unit="step", leave=False)
    for t in steps:
        by_size: dict[int, list[int]] = {}
        for f, plan in enumerate(plans):
            if t < len(plan.batches):
                by_size.setdefault(len(plan.batches[t]), []).append(f)
        for size, folds in by_size.items():
            _step(stack, windows, plans, folds, t, size=size, seeds=seeds, device=device)
        for f, plan in enumerate(plans):
            if t == len(plan.batches) - 1:
                done[f] = stack.model(f, recipes[0].backbone)
                if on_fold_done is not None:
                    on_fold_done(f, done[f])
    return done


def _step(stack: _Stack, windows, plans: list[FoldBatches], folds: list[int], t: int, *, size: int,
          seeds: list[int], device) -> None:
    items = [plans[f].batches[t] for f in folds]
    pairs = np.concatenate([plans[f].index[i] for f, i in zip(folds, items)])
    codes = np.concatenate([plans[f].codes[i] for f, i in zip(folds, items)])
    row_seeds = np.repeat([seeds[f] for f in folds], size)
    x = training_windows(windows.gather(pairs), codes, items=np.concatenate(items), seed=row_seeds)
    y = torch.from_numpy(np.stack([plans[f].labels[i] for f, i in zip(folds, items)]))
    stack.step(folds, x.to(device).reshape(len(folds), size, *x.shape[1:]), y.to(device))
