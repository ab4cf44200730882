"""Backend choice for TV-L1: which implementation runs, and on which device."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from flowkit.errors import FlowkitError

__all__ = ["BACKENDS", "FlowBackend", "available_backends", "backend_info", "resolve_backend"]

BACKENDS = ("auto", "opencv", "torch", "opencv-cuda")


@dataclass(frozen=True)
class FlowBackend:
    """What the pipeline needs to know of a concrete backend, so that it never tests names.

    takes_tensors: its input moves to the run's torch device as tensors (else numpy).
    has_impls: it takes ``impl`` (the torch solver's eager / triton).
    batched: one call solves a whole batch at once and gains from large batches, so a run feeds
        one solver from many units (:class:`flowkit.pipeline.engines.BatchedEngine`) instead of one
        process per core.
    gpu_only: it always runs on a GPU (else: on the GPU when its torch device is CUDA).
    """

    name: str
    takes_tensors: bool
    has_impls: bool
    batched: bool
    gpu_only: bool = False

    def on_gpu(self, device) -> bool:
        return self.gpu_only or (device is not None and getattr(device, "type", "cpu") != "cpu")


_REGISTRY = {
    "opencv": FlowBackend("opencv", takes_tensors=False, has_impls=False, batched=False),
    "torch": FlowBackend("torch", takes_tensors=True, has_impls=True, batched=True),
    "opencv-cuda": FlowBackend("opencv-cuda", takes_tensors=False, has_impls=False, batched=False, gpu_only=True),
}


def backend_info(name: str) -> FlowBackend:
    """The :class:`FlowBackend` of a concrete backend ("opencv", "torch", "opencv-cuda")."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise FlowkitError(f"backend should be one of {', '.join(_REGISTRY)}, got {name!r}") from None


_warned_no_cuda = False


def _torch_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def available_backends() -> list[str]:
    """Concrete backends usable here: "opencv" always, "torch", "opencv-cuda" when present."""
    names = ["opencv", "torch"]  # torch is a hard dependency
    from flowkit.flow.opencv_cuda import opencv_cuda_available

    if opencv_cuda_available():
        names.append("opencv-cuda")
    return names


def resolve_backend(name: str = "auto", device=None, gpu: bool = False):
    """Map a backend name (and wishes) to ``(backend_name, torch.device or None)``.

    - ``"opencv"`` and ``"opencv-cuda"`` return device None (they take numpy arrays).
    - ``"torch"`` returns ``device`` (default CPU).
    - ``"auto"`` without ``gpu`` is ``"opencv"`` on the CPU, the reference implementation,
      unless ``device`` names a torch device, in which case ``"torch"`` runs there.
    - ``gpu=True`` picks the batched torch solver on CUDA: it solves a whole batch of pairs
      at once, while ``cv2.cuda`` solves one pair per call with a host round trip each, so
      torch is expected to be faster. Without CUDA it warns once and falls back to
      ``"opencv"`` on the CPU.
    """
    if name not in BACKENDS:
        raise FlowkitError(f"backend should be one of {', '.join(BACKENDS)}, got {name!r}")
    import torch

    if device is not None:
        device = torch.device(device)
        if device.type == "cuda" and not _torch_cuda():
            raise FlowkitError(
                f"device should be one that torch can use here, got {device} but no CUDA "
                "device is available"
            )
    if gpu:
        return _resolve_gpu(name, device)
    if name == "auto":
        if device is not None:
            return "torch", device
        return "opencv", None
    if name == "torch":
        return "torch", device if device is not None else torch.device("cpu")
    if name == "opencv-cuda":
        from flowkit.flow.opencv_cuda import opencv_cuda_available

        if not opencv_cuda_available():
            raise FlowkitError(
                "backend 'opencv-cuda' should have an OpenCV build with CUDA and a CUDA device, "
                "got none; use backend 'torch' with a CUDA device or 'opencv'"
            )
    return name, None


def _resolve_gpu(name: str, device):
    """The ``gpu=True`` choice: torch on CUDA, else cv2.cuda, else OpenCV on the CPU (warned once)."""
    global _warned_no_cuda
    if name == "opencv":
        raise FlowkitError(
            "gpu=True should come with backend 'auto', 'torch' or 'opencv-cuda', got 'opencv', "
            "which runs on the CPU only"
        )
    if name in ("auto", "torch") and _torch_cuda():
        import torch

        dev = device if device is not None and device.type == "cuda" else torch.device("cuda")
        return "torch", dev
    if name in ("auto", "opencv-cuda"):
        from flowkit.flow.opencv_cuda import opencv_cuda_available

        if opencv_cuda_available():
            return "opencv-cuda", None
    if not _warned_no_cuda:
        warnings.warn(
            "gpu=True but no CUDA device is available; TV-L1 falls back to OpenCV on the CPU",
            RuntimeWarning,
            stacklevel=3,  # the caller of resolve_backend
        )
        _warned_no_cuda = True
    return "opencv", None
