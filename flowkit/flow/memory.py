"""How many frame pairs the batched torch TV-L1 solver can take at once on a device."""

from __future__ import annotations

from flowkit.errors import FlowkitError

__all__ = ["BYTES_PER_PIXEL", "BYTES_PER_PIXEL_BY_IMPL", "pairs_per_batch"]

#: Peak solver memory per pair and pixel on the CUDA code path, per implementation of the inner
#: iteration (``tvl1_torch(impl=...)``). For "eager" the bicubic warp's temporaries and the median
#: network's wires dominate; the Triton implementations have no inner-iteration temporaries and
#: all allocate the same tensors. Each figure is the CUDA peak measured per pixel
#: (torch.cuda.max_memory_allocated over a batch, tools/gpu/gpu_check.py; the figures are in
#: docs/gpu.md) plus about 30 %, room for the CUDA caching allocator's rounding and fragmentation;
#: a batch that still does not fit is halved and retried.
BYTES_PER_PIXEL_BY_IMPL = {"eager": 400, "triton": 165, "triton-tiles": 165, "triton-strips": 165}
#: The eager figure, the conservative one when the implementation is not known.
BYTES_PER_PIXEL = BYTES_PER_PIXEL_BY_IMPL["eager"]


def pairs_per_batch(device=None, height: int = 128, width: int = 128, *, free_bytes: int | None = None,
                    fraction: float = 0.5, cap: int = 4096, impl: str = "eager") -> int:
    """Pairs per solver batch that fit in ``fraction`` of the device's free memory.

    Args:
        device: a CUDA torch device (its free memory is read with ``torch.cuda.mem_get_info``).
            Ignored when ``free_bytes`` is given.
        height, width: frame size.
        free_bytes: free memory to plan for, instead of asking the device.
        fraction: share of the free memory the solver may use; the rest stays for the
            features, the transfers and other processes.
        cap: upper bound; beyond a few thousand 128x128 pairs a GPU is saturated and larger
            batches only delay the first results.
        impl: the solver's implementation as ``torch_tvl1.resolve_impl`` returns it (a key of
            ``BYTES_PER_PIXEL_BY_IMPL``).

    Returns:
        an int >= 1.
    """
    if not 0 < fraction <= 1:
        raise FlowkitError(f"fraction should be in (0, 1], got {fraction}")
    if impl not in BYTES_PER_PIXEL_BY_IMPL:
        raise FlowkitError(f"impl should be one of {', '.join(BYTES_PER_PIXEL_BY_IMPL)}, got {impl!r}")
    if height < 1 or width < 1:
        raise FlowkitError(f"frames should be at least 1x1, got {height}x{width}")
    if free_bytes is None:
        import torch

        device = torch.device(device if device is not None else "cuda")
        if device.type != "cuda":
            raise FlowkitError(f"device should be a CUDA device to read its free memory, got {device}")
        free_bytes, _total = torch.cuda.mem_get_info(device)
    per_pair = BYTES_PER_PIXEL_BY_IMPL[impl] * height * width
    return int(max(1, min(cap, int(free_bytes * fraction) // per_pair)))
