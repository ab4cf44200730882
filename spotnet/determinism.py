"""Reproducible training: every random generator seeded from one seed, and torch held to
deterministic algorithms with a fixed thread count, which also fixes the reduction order."""

from __future__ import annotations

import os
import random
from contextlib import contextmanager

import numpy as np
import torch

from spotnet.inference import model_threads

__all__ = ["deterministic", "seed_all"]


def seed_all(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (a fold's initialisation draws from torch's)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def deterministic(threads: int | None):
    """Deterministic torch algorithms and ``threads`` torch threads inside the block."""
    # A fixed thread count also fixes the reduction order (spotnet.inference.cpu_threads says
    # why SOFTNet gets one). cuBLAS is only deterministic with a fixed workspace, set before its
    # first use.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with model_threads(threads):
            yield
    finally:
        torch.use_deterministic_algorithms(previous)
