"""One k's training windows held in memory, read from the store once per expression type.

LOSO trains every fold of a type on windows of the same store at the same k; only the folds'
indices differ. When those windows fit in a share of the free host memory (or of the device's
free memory, when they are to live there), :class:`MemoryWindows` reads each video's features
once, chunk by chunk, into one (N, 3, 42, 42) float32 tensor, and a batch of any fold is a
gather from it. Otherwise :class:`StoreWindows` reads each window from the store through a
chunk cache, as :class:`spotnet.dataset.WindowDataset` does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from spotnet.dataset import VideoWindows, WindowDataset, _read_chunk, open_store
from spotnet.errors import SpotnetError

__all__ = ["MemoryWindows", "StoreWindows", "WINDOW_BYTES", "free_memory", "load_windows"]

#: Bytes of one (3, 42, 42) float32 window.
WINDOW_BYTES = 3 * 42 * 42 * 4


def free_memory(device: torch.device) -> int:
    """Bytes free now: host memory available to new allocations, or the CUDA device's free memory."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError):  # no sysconf: assume nothing is free, so the store streams
        return 0


class MemoryWindows:
    """Every window of ``videos`` in one tensor.

    Args:
        store_path: the flowkit store.
        videos: the :class:`VideoWindows` that the folds' indices refer to (one k).
        device: where the tensor lives (batches are gathered there).

    Shapes: ``gather(pairs (B, 2) [video position, window]) -> (B, 3, 42, 42)`` float32 raw features.
    """

    def __init__(self, store_path, videos: Sequence[VideoWindows], *, device="cpu"):
        self.videos = list(videos)
        counts = np.array([v.n_windows for v in self.videos], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        data = torch.empty((int(counts.sum()), 3, 42, 42), dtype=torch.float32)
        store = open_store(store_path)
        for vi, v in enumerate(self.videos):
            arr = store.features(v.video, v.k)
            step = max(1, 4096 // v.chunk) * v.chunk
            for start in range(0, v.n_windows, step):
                stop = min(start + step, v.n_windows)
                block = _read_chunk(arr, v, start, stop)
                data[self.offsets[vi] + start:self.offsets[vi] + stop] = torch.from_numpy(block)
        self.data = data.to(device)

    def gather(self, pairs: np.ndarray) -> torch.Tensor:
        rows = self.offsets[pairs[:, 0]] + pairs[:, 1]
        return self.data[torch.from_numpy(rows).to(self.data.device)]


class StoreWindows:
    """Windows read from the store on demand, one chunk cache shared by every fold."""

    def __init__(self, store_path, videos: Sequence[VideoWindows], *, device="cpu", cache_chunks: int = 64):
        self.reader = WindowDataset(store_path, videos, np.zeros((0, 2), np.int64), cache_chunks=cache_chunks)
        self.device = torch.device(device)

    def gather(self, pairs: np.ndarray) -> torch.Tensor:
        reader = self.reader
        out = np.stack([reader.chunk_window(int(vi), int(w)) for vi, w in pairs]) if len(pairs) else \
            np.zeros((0, 3, 42, 42), np.float32)
        return torch.from_numpy(out).to(self.device)


def load_windows(store_path, videos: Sequence[VideoWindows], *, device, share: float = 0.5):
    """:class:`MemoryWindows` when every window of ``videos`` fits in ``share`` of the free memory
    of ``device``, else :class:`StoreWindows`.

    share: fraction of the free memory (host, or the CUDA device's) the windows may take, in (0, 1].
    """
    if not 0 < share <= 1:
        raise SpotnetError(f"window memory share should be in (0, 1], got {share}")
    device = torch.device(device)
    need = sum(v.n_windows for v in videos) * WINDOW_BYTES
    if need <= share * free_memory(device):
        return MemoryWindows(store_path, videos, device=device)
    return StoreWindows(store_path, videos, device=device)
