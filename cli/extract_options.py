"""The extraction options that ``flowkit extract`` and ``spotnet spot`` share, declared once.

Each is an ``Annotated`` type for a typer command parameter; :func:`extract_kwargs` maps their
values to :func:`flowkit.extract.extract`'s keyword arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

__all__ = [
    "BatchWindows",
    "Device",
    "FlowBackend",
    "FlowImpl",
    "Gpu",
    "LandmarkBackend",
    "Workers",
    "extract_kwargs",
    "landmark_model_option",
]

FlowBackend = Annotated[str, typer.Option(
    "--flow-backend", help="TV-L1 backend: auto (OpenCV on the CPU; the torch solver with --device or --gpu), "
    "opencv, torch or opencv-cuda.")]
FlowImpl = Annotated[str, typer.Option(
    "--flow-impl", help="Torch TV-L1 implementation: auto (Triton kernels on CUDA when the gpu extra is "
    "installed, else eager), eager or triton.")]
Device = Annotated[Optional[str], typer.Option(
    "--device", help="Torch device for the torch backend (cpu, cuda:0).")]
Gpu = Annotated[bool, typer.Option(
    "--gpu", help="Run TV-L1 on CUDA when available (falls back to the CPU with a warning).")]
LandmarkBackend = Annotated[str, typer.Option("--landmarks", help="Landmark backend: mediapipe or dlib.")]
Workers = Annotated[Optional[int], typer.Option(
    "--workers", help="Worker processes for OpenCV (default: CPU count); the torch solver and CUDA default to "
    "one solver thread.")]
BatchWindows = Annotated[Optional[int], typer.Option(
    "--batch-windows", help="Pairs per TV-L1 call (default: 2 per task with worker processes; sized to free GPU "
    "memory on CUDA).")]


def landmark_model_option(flag: str):
    """The MediaPipe model option under ``flag`` (``--model`` for extract; ``--landmark-model`` for spot,
    whose MODEL argument is a checkpoint)."""
    return Annotated[Optional[Path], typer.Option(
        flag, help="MediaPipe face_landmarker.task (default: $FLOWKIT_MEDIAPIPE_MODEL, the user cache, or a "
        "download).")]


def extract_kwargs(*, flow_backend: str, device: str | None, gpu: bool, landmarks: str, landmark_model: Path | None,
                   workers: int | None, batch_windows: int | None, flow_impl: str = "auto") -> dict:
    """The shared options as :func:`flowkit.extract.extract` keyword arguments."""
    return {"flow_backend": flow_backend, "device": device, "gpu": gpu, "landmark_backend": landmarks,
            "model_path": landmark_model, "workers": workers, "batch_windows": batch_windows, "flow_impl": flow_impl}
