"""How many frame pairs the batched torch TV-L1 solver takes at once, per implementation.

One table, ``batch_sizing.json`` beside this module, holds per implementation that resolves
(``torch_tvl1.resolve_impl``) the GPU memory planned per pair and pixel and the measured
throughput curve of the solver against its batch size; its ``source`` names the result file the
figures come from. This module reads it for the code, and docs/gpu.md shows it
(:func:`sizing_table_markdown`; a test keeps the page equal to the table).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from flowkit.errors import FlowkitError

__all__ = ["BYTES_PER_PIXEL", "BYTES_PER_PIXEL_BY_IMPL", "batch_cap", "batch_target", "pairs_per_batch",
           "sizing_table", "sizing_table_markdown"]

TABLE = Path(__file__).with_name("batch_sizing.json")


@lru_cache(maxsize=1)
def sizing_table() -> dict:
    """The table: ``{"source", "target_share", "impls": {impl: {"bytes_per_pixel", ...}}}``."""
    return json.loads(TABLE.read_text())


def _row(impl: str) -> dict:
    impls = sizing_table()["impls"]
    if impl not in impls:
        raise FlowkitError(f"impl should be one of {', '.join(impls)}, got {impl!r}")
    return impls[impl]


def _curve(impl: str) -> list[tuple[int, float]]:
    return sorted((int(b), float(r)) for b, r in _row(impl)["pairs_per_s_by_batch"].items())


#: Planned peak solver memory per pair and pixel, per implementation (from the table).
BYTES_PER_PIXEL_BY_IMPL = {impl: int(row["bytes_per_pixel"]) for impl, row in sizing_table()["impls"].items()}
#: The eager figure, the conservative one when the implementation is not known.
BYTES_PER_PIXEL = BYTES_PER_PIXEL_BY_IMPL["eager"]


def batch_cap(impl: str = "eager") -> int:
    """The largest batch measured for ``impl``: beyond it nothing says a larger batch pays, and a
    larger one only delays the first results."""
    return _curve(impl)[-1][0]


def batch_target(impl: str = "eager") -> int:
    """The batch the batched engine aims at with ``impl``: the smallest measured batch whose
    pairs/s is within the table's ``target_share`` of the best measured.

    >>> batch_target("triton-strips") <= batch_cap("triton-strips")
    True
    """
    curve = _curve(impl)
    best = max(rate for _, rate in curve)
    share = float(sizing_table()["target_share"])
    return next(batch for batch, rate in curve if rate >= share * best)


def pairs_per_batch(device=None, height: int = 128, width: int = 128, *, free_bytes: int | None = None,
                    fraction: float = 0.5, cap: int | None = None, impl: str = "eager") -> int:
    """Pairs per solver batch that fit in ``fraction`` of the device's free memory.

    Args:
        device: a CUDA torch device (its free memory is read with ``torch.cuda.mem_get_info``).
            Ignored when ``free_bytes`` is given.
        height, width: frame size.
        free_bytes: free memory to plan for, instead of asking the device.
        fraction: share of the free memory the solver may use; the rest stays for the
            features, the transfers and other processes.
        cap: upper bound; None: :func:`batch_cap` of ``impl``.
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
    if cap is None:
        cap = batch_cap(impl)
    if free_bytes is None:
        import torch

        device = torch.device(device if device is not None else "cuda")
        if device.type != "cuda":
            raise FlowkitError(f"device should be a CUDA device to read its free memory, got {device}")
        free_bytes, _total = torch.cuda.mem_get_info(device)
    per_pair = BYTES_PER_PIXEL_BY_IMPL[impl] * height * width
    return int(max(1, min(cap, int(free_bytes * fraction) // per_pair)))


def sizing_table_markdown() -> str:
    """The table as the Markdown that docs/gpu.md shows."""
    table = sizing_table()
    batches = sorted({int(b) for row in table["impls"].values() for b in row["pairs_per_s_by_batch"]})
    head = ["implementation", "planned bytes per pixel", "measured peak bytes per pixel",
            *(f"pairs/s at B = {b}" for b in batches), "batch cap", "batch target"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for impl, row in table["impls"].items():
        rates = [row["pairs_per_s_by_batch"].get(str(b), "-") for b in batches]
        cells = [impl, row["bytes_per_pixel"], row["measured_peak_bytes_per_pixel"], *rates, batch_cap(impl),
                 batch_target(impl)]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + f"\n\nSource: `{table['source']}`."
