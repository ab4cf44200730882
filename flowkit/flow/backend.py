"""Backend choice for TV-L1: which implementation runs, and on which device."""

from __future__ import annotations

import warnings

from flowkit.errors import FlowkitError

__all__ = ["BACKENDS", "available_backends", "resolve_backend"]

BACKENDS = ("auto", "opencv", "torch", "opencv-cuda")

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
