"""The extraction options that ``flowkit extract`` and ``spotnet spot`` share, declared once.

Each is an ``Annotated`` type for a typer command parameter; :func:`extract_kwargs` maps their
values to :func:`flowkit.pipeline.extract.extract`'s keyword arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

__all__ = [
    "AsReleased",
    "BatchWindows",
    "Decoders",
    "Device",
    "FlowBackend",
    "FlowImpl",
    "Gpu",
    "LandmarkBackend",
    "Scheduler",
    "UnitWindows",
    "Workers",
    "extract_kwargs",
    "landmark_model_option",
]

FlowBackend = Annotated[str, typer.Option(
    "--flow-backend", help="TV-L1 backend: auto (OpenCV on the CPU; the torch solver with --device or --gpu), "
    "opencv, torch or opencv-cuda.")]
FlowImpl = Annotated[str, typer.Option(
    "--flow-impl", help="Torch TV-L1 implementation: auto (triton-strips on CUDA when the gpu extra is "
    "installed, else eager), eager, triton (one inner iteration per kernel launch), triton-tiles (three) "
    "or triton-strips (five); their measured speeds are in docs/gpu.md.")]
Device = Annotated[Optional[str], typer.Option(
    "--device", help="Torch device for the torch backend (cpu, cuda:0).")]
Gpu = Annotated[bool, typer.Option(
    "--gpu", help="Run TV-L1 on CUDA when available (falls back to the CPU with a warning).")]
LandmarkBackend = Annotated[str, typer.Option("--landmarks", help="Landmark backend: mediapipe or dlib.")]
Workers = Annotated[Optional[int], typer.Option(
    "--workers", help="Worker processes running work units with OpenCV (default: CPU count); the torch solver "
    "and CUDA default to one batched solver fed by --decoders processes.")]
BatchWindows = Annotated[Optional[int], typer.Option(
    "--batch-windows", help="Pairs per TV-L1 call (default: a chunk on the CPU; sized to free GPU memory on "
    "CUDA, where a batch spans units, videos and k values).")]
Scheduler = Annotated[Optional[str], typer.Option(
    "--scheduler", help="Run the work units on Dask: tcp://HOST:PORT (a running cluster whose workers see the "
    "store) or local:N (an embedded cluster of N workers). Needs the dask extra.")]
UnitWindows = Annotated[Optional[int], typer.Option(
    "--unit-windows", help="Windows per work unit (rounded up to whole chunks): the grain of parallel work and "
    "of retries. Default: 256, or max(k) / 0.15 when that is more.")]
AsReleased = Annotated[bool, typer.Option(
    "--as-released", help="The released code's two round trips: each 128x128 colour crop through JPEG (OpenCV's "
    "default quality) and back in gray, and u, v through cv2.cartToPolar and back (docs/faithfulness.md).")]
Decoders = Annotated[Optional[int], typer.Option(
    "--decoders", help="Processes decoding and cropping for the batched torch/CUDA solver (default: CPU count - 1).")]


def landmark_model_option(flag: str):
    """The MediaPipe model option under ``flag`` (``--model`` for extract; ``--landmark-model`` for spot,
    whose MODEL argument is a checkpoint)."""
    return Annotated[Optional[Path], typer.Option(
        flag, help="MediaPipe face_landmarker.task (default: $FLOWKIT_MEDIAPIPE_MODEL, the user cache, or a "
        "download).")]


def extract_kwargs(*, flow_backend: str, device: str | None, gpu: bool, landmarks: str, landmark_model: Path | None,
                   workers: int | None, batch_windows: int | None, flow_impl: str = "auto") -> dict:
    """The shared options as :func:`flowkit.pipeline.extract.extract` keyword arguments."""
    return {"flow_backend": flow_backend, "device": device, "gpu": gpu, "landmark_backend": landmarks,
            "model_path": landmark_model, "workers": workers, "batch_windows": batch_windows, "flow_impl": flow_impl}
