"""How many frame pairs the batched torch TV-L1 solver can take at once on a device."""

from __future__ import annotations

from flowkit.errors import FlowkitError

__all__ = ["BYTES_PER_PIXEL", "pairs_per_batch"]

#: Peak solver memory per pair and pixel. Measured on the CPU with SPEC-default pyramids
#: (5 scales): peak RSS grew by 4.1 MiB per 128x128 pair between batches of 64 and 512
#: (262 bytes per pixel: images, gradients, flow, duals, warp constants and the inner
#: iteration's temporaries); 320 leaves about 20% for the CUDA caching allocator.
BYTES_PER_PIXEL = 320


def pairs_per_batch(device=None, height: int = 128, width: int = 128, *, free_bytes: int | None = None,
                    fraction: float = 0.5, cap: int = 4096) -> int:
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

    Returns:
        an int >= 1.
    """
    if not 0 < fraction <= 1:
        raise FlowkitError(f"fraction should be in (0, 1], got {fraction}")
    if height < 1 or width < 1:
        raise FlowkitError(f"frames should be at least 1x1, got {height}x{width}")
    if free_bytes is None:
        import torch

        device = torch.device(device if device is not None else "cuda")
        if device.type != "cuda":
            raise FlowkitError(f"device should be a CUDA device to read its free memory, got {device}")
        free_bytes, _total = torch.cuda.mem_get_info(device)
    per_pair = BYTES_PER_PIXEL * height * width
    return int(max(1, min(cap, int(free_bytes * fraction) // per_pair)))
