"""A run's settings: how to solve (TV-L1 backend, device, parameters, implementation) and how to
lay the work out (workers, batches, chunks), resolved and checked once, then passed whole to the
driver (:mod:`flowkit.pipeline.extract`), the engines and the units."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from flowkit.errors import FlowkitError
from flowkit.io.store import DEFAULT_CHUNK_WINDOWS

if TYPE_CHECKING:
    import torch

__all__ = ["ExtractionSettings", "resolve_settings", "FAST_TVL1", "TEST_TVL1"]

#: A reduced TV-L1 preset for demos (``flowkit extract --fast``): 3 scales, 2 warps, 10 inner and
#: 2 outer iterations instead of OpenCV's 5/5/30/10. Not SPEC-exact: a fraction of the solver's work.
FAST_TVL1 = {"nscales": 3, "warps": 2, "inner_iterations": 10, "outer_iterations": 2}
#: Smallest useful preset, for tests only.
TEST_TVL1 = {"nscales": 2, "warps": 1, "inner_iterations": 5, "outer_iterations": 1}


@dataclass(frozen=True)
class ExtractionSettings:
    """A run's settings, resolved once by :func:`resolve_settings` (for
    :func:`flowkit.pipeline.extract.extract`) and passed whole to every video.

    backend: the resolved TV-L1 backend, "opencv", "torch" or "opencv-cuda".
    device: the torch device of the torch backend, else None.
    backend_name: what the store records per k: ``backend``, or "backend:device".
    params: TV-L1 parameters, ``TVL1Params.to_dict()``.
    save_flow: also store the (n_windows, 2, 128, 128) flow.
    chunk_windows: windows per stored chunk (the resume unit).
    batch_windows: windows per TV-L1 call.
    workers: processes computing tasks, or 1 with ``threaded``.
    threaded: one solver thread in this process beside the decoding (GPU, torch solver).
    landmark_backend: "mediapipe" or "dlib", recorded per video.
    flow_impl: the torch solver's implementation, one of ``torch_tvl1.IMPLS`` (``tvl1(impl=...)``).
    as_released: the released code's two round trips (SPEC 9): each colour crop through JPEG and
        back in gray (:func:`flowkit.face.crop.jpeg_round_trip`), and u, v through cv2.cartToPolar and
        back on the host (:func:`flowkit.flow.polar.polar_round_trip`), whatever the backend.
        Recorded per video; part of the resume check.
    """

    backend: str
    device: torch.device | None
    backend_name: str
    params: dict
    save_flow: bool
    chunk_windows: int
    batch_windows: int
    workers: int
    threaded: bool
    landmark_backend: str
    flow_impl: str = "auto"
    unit_windows: int | None = None
    decoders: int = 1
    unit_threads: int | None = None
    as_released: bool = False

    @property
    def on_gpu(self) -> bool:
        from flowkit.flow.backend import backend_info

        return backend_info(self.backend).on_gpu(self.device)

    def solve(self, prev: np.ndarray, nxt: np.ndarray):
        """TV-L1 of (B, H, W) uint8 pairs with this run's backend: (B, 2, H, W), a tensor on
        ``device`` for torch, else numpy; with ``as_released``, after the cartToPolar round trip."""
        from flowkit.flow import tvl1
        from flowkit.flow.backend import backend_info

        info = backend_info(self.backend)
        prev, nxt = self.upload(prev), self.upload(nxt)
        impl = {"impl": self.flow_impl} if info.has_impls else {}
        flow = tvl1(prev, nxt, backend=self.backend, device=self.device, **impl, **self.params)
        if self.as_released:  # the released code's cartToPolar round trip, on the host for every backend
            import torch

            from flowkit.flow.polar import polar_round_trip

            host = flow.detach().cpu().numpy() if info.takes_tensors else np.asarray(flow)
            back = polar_round_trip(host.astype(np.float32, copy=False))
            flow = torch.from_numpy(back).to(flow.device) if info.takes_tensors else back
        return flow

    def upload(self, frames):
        """(B, H, W) uint8 frames where ``solve`` takes them: a tensor on ``device`` for torch
        (a tensor already there passes as it is), else unchanged."""
        from flowkit.flow.backend import backend_info

        if not backend_info(self.backend).takes_tensors:
            return frames
        import torch

        dev = torch.device(self.device) if self.device is not None else torch.device("cpu")
        return torch.as_tensor(frames, device=dev)

    def limit_threads(self) -> None:
        """In a worker that shares the machine with others, one OpenCV and one torch thread."""
        if self.unit_threads is None:
            return
        import cv2
        import torch

        cv2.setNumThreads(self.unit_threads)
        if torch.get_num_threads() != self.unit_threads:
            torch.set_num_threads(self.unit_threads)


def _decoders(decoders: int | None) -> int:
    if decoders is None:
        return max(1, (os.cpu_count() or 1) - 1)
    if decoders < 1:
        raise FlowkitError(f"decoders should be >= 1, got {decoders}")
    return int(decoders)


def _settings(backend: str, dev, params: dict, *, workers: int | None, chunk_windows: int, batch_windows: int | None,
              save_flow: bool, landmark_backend: str) -> ExtractionSettings:
    """The run's settings: worker layout and batch size filled in and checked."""
    from flowkit.flow.backend import backend_info

    info = backend_info(backend)
    # A batched solver (torch) threads internally and gains from big batches, so by default one
    # solver in this process takes the windows of every unit (BatchedEngine), like on the GPU;
    # OpenCV solves one pair per call, so it gets one process per core.
    threaded = info.on_gpu(dev) or (info.batched and workers is None)
    if workers is None:
        workers = 1 if threaded else (os.cpu_count() or 1)
    if workers < 1:
        raise FlowkitError(f"workers should be >= 1, got {workers}")
    if batch_windows is None:
        batch_windows = _default_batch(backend, dev, chunk_windows)
    if batch_windows < 1:
        raise FlowkitError(f"batch_windows should be >= 1, got {batch_windows}")
    return ExtractionSettings(
        backend=backend,
        device=dev,
        backend_name=backend if dev is None else f"{backend}:{dev}",
        params=params,
        save_flow=save_flow,
        chunk_windows=chunk_windows,
        batch_windows=batch_windows,
        workers=workers,
        threaded=threaded,
        landmark_backend=landmark_backend,
    )


def resolve_settings(  # noqa: PLR0913 - the keyword-only solving knobs of extract(), resolved in one place
    *,
    flow_backend: str = "auto",
    device=None,
    gpu: bool = False,
    flow_params: dict | None = None,
    flow_impl: str = "auto",
    workers: int | None = None,
    chunk_windows: int = DEFAULT_CHUNK_WINDOWS,
    batch_windows: int | None = None,
    save_flow: bool = False,
    landmark_backend: str = "mediapipe",
    as_released: bool = False,
) -> ExtractionSettings:
    """The checked :class:`ExtractionSettings` of :func:`~flowkit.pipeline.extract.extract`'s options
    (see its docstring), for extract itself and for anything else that solves windows the same way
    (``spotnet live``).

    Raises:
        FlowkitError: a bad TV-L1 parameter, backend, device, implementation or count.
    """
    from flowkit.face.landmarks import LANDMARK_BACKENDS
    from flowkit.flow import resolve_backend
    from flowkit.flow.params import check_params

    if landmark_backend not in LANDMARK_BACKENDS:
        raise FlowkitError(f"landmark backend should be one of {', '.join(LANDMARK_BACKENDS)}, "
                           f"got {landmark_backend!r}")
    params = check_params(dict(flow_params or {})).to_dict()
    backend, dev = resolve_backend(flow_backend, device, gpu)
    if chunk_windows < 1:
        raise FlowkitError(f"chunk_windows should be >= 1, got {chunk_windows}")
    settings = _settings(backend, dev, params, workers=workers, chunk_windows=chunk_windows,
                         batch_windows=batch_windows, save_flow=save_flow, landmark_backend=landmark_backend)
    flow_impl = _check_flow_impl(flow_impl, backend, dev)
    if batch_windows is None:  # sized for the implementation that runs
        settings = replace(settings, batch_windows=_default_batch(backend, dev, chunk_windows, flow_impl))
    return replace(settings, flow_impl=flow_impl, as_released=bool(as_released))


def _check_flow_impl(flow_impl: str, backend: str, dev) -> str:
    """``flow_impl`` checked against the backend and device once, before any video is read."""
    from flowkit.flow.backend import backend_info

    has_impls = backend_info(backend).has_impls
    if flow_impl != "auto" and not has_impls:
        raise FlowkitError(f"flow_impl should be 'auto' with the {backend} backend (it is the torch solver's), "
                           f"got {flow_impl!r}")
    if has_impls:
        from flowkit.flow.torch_tvl1 import resolve_impl

        resolve_impl(flow_impl, dev if dev is not None else "cpu")
    return flow_impl


def _default_batch(backend: str, dev, chunk_windows: int, flow_impl: str = "auto") -> int:
    """On a GPU, what half its free memory holds with the implementation that runs; else a chunk
    (units are the parallel grain)."""
    from flowkit.flow.backend import backend_info

    info = backend_info(backend)
    if info.batched and info.on_gpu(dev):
        from flowkit.flow.memory import pairs_per_batch

        impl = "eager"
        if info.has_impls:
            from flowkit.flow.torch_tvl1 import resolve_impl

            impl = resolve_impl(flow_impl, dev)
        return pairs_per_batch(dev, impl=impl)
    return chunk_windows
