"""Live spotting: a camera, stream or file in, intervals out as they are confirmed.

:func:`run_live` chains :class:`flowkit.pipeline.live.LiveExtractor` (windows as frames arrive), the
models of :func:`spotnet.spot.load_spotting_models` (an ensemble per expression type, averaged as
in ``spotnet spot``) and one :class:`spotnet.causal.CausalSpotter` per type and segment. Each
confirmed interval goes to ``on_interval`` at once, with the frame at which it was confirmed and
its latency: the wall-clock time from the arrival of the interval's last frame to its report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from spotnet.errors import SpotnetError

__all__ = ["LiveInterval", "LiveOptions", "LiveStatus", "run_live"]


@dataclass(frozen=True)
class LiveInterval:
    """One confirmed interval. Frames are 0-based stream frames, inclusive (the CSV adds 1).

    reported_frame: the newest frame read when it was confirmed; latency_s: wall-clock seconds
    from the arrival of frame ``offset`` to the report.
    """

    video: str
    onset: int
    offset: int
    type: str
    score: float
    reported_frame: int
    latency_s: float
    fps: float

    def to_json(self) -> dict:
        """The ``--jsonl`` record: 1-based frames as in the CSVs, times in seconds."""
        d = asdict(self)
        d.update(onset=self.onset + 1, offset=self.offset + 1, reported_frame=self.reported_frame + 1,
                 onset_s=round(self.onset / self.fps, 3), offset_s=round(self.offset / self.fps, 3),
                 latency_s=round(self.latency_s, 3), score=round(self.score, 6))
        del d["fps"]
        return d


@dataclass(frozen=True)
class LiveOptions:
    """How a live run spots: the causal spotter's settings and the batch of pairs per TV-L1 call."""

    p: float = 0.55
    history_s: float = 60.0
    warmup_s: float = 2.0
    rule: str = "quantile"
    batch: int = 8
    no_face_s: float = 10.0


@dataclass
class LiveStatus:
    """What the status line shows: input frame rate, pairs/s, and how far results lag."""

    frames: int = 0
    pairs: int = 0
    elapsed_s: float = 0.0
    behind_s: float = 0.0
    fps: float = 0.0
    ks: tuple = ()

    @property
    def fps_in(self) -> float:
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def pairs_per_s(self) -> float:
        return self.pairs / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def realtime_factor(self) -> float:
        """Stream seconds processed per wall-clock second (>= 1: keeping up)."""
        return self.frames / self.fps / self.elapsed_s if self.elapsed_s > 0 and self.fps else 0.0

    def line(self) -> str:
        return (f"{self.fps_in:5.1f} frames/s in, {self.pairs_per_s:6.1f} pairs/s, {self.realtime_factor:4.2f}x "
                f"real time, {self.behind_s:5.1f} s behind")


class _Scorer:
    """Window features -> one averaged score per window, per expression type."""

    def __init__(self, models: dict, device):
        import torch

        self.models = models
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        for _, group in models.values():
            for m in group:
                m.to(self.device).eval()

    def scores(self, kind: str, features: np.ndarray) -> np.ndarray:
        import torch

        from spotnet.inference import ensemble_scores
        from spotnet.normalize import minmax_normalize

        return ensemble_scores(self.models[kind][1], minmax_normalize(torch.from_numpy(features)).to(self.device))


def run_live(checkpoints, source, *, options: LiveOptions = LiveOptions(), realtime: bool = False,  # noqa: PLR0913 - the run's inputs, its two callbacks and the extraction options of flowkit extract
             on_interval: Callable[[LiveInterval], None] | None = None,
             on_status: Callable[[LiveStatus], None] | None = None, **extract_options) -> list[LiveInterval]:
    """Spot ``source`` live with the models of ``checkpoints`` until it ends or Ctrl-C.

    Args:
        checkpoints: what :func:`spotnet.spot.load_spotting_models` takes.
        source: a camera index ("0"), a stream URL or a video file.
        options: :class:`LiveOptions`.
        realtime: play a file at its frame rate, as a camera would deliver it.
        on_interval: called with each :class:`LiveInterval` as soon as it is confirmed.
        on_status: called about twice a second with a :class:`LiveStatus`.
        **extract_options: ``flow_backend``, ``flow_impl``, ``device``, ``gpu``, ``landmark_backend``,
            ``model_path`` as in ``flowkit extract``; the TV-L1 parameters are those recorded in
            the checkpoints (else OpenCV's defaults), as ``spotnet spot`` does.

    Returns:
        Every confirmed interval, in the order reported. Ctrl-C ends the run like the end of the
        stream: pending windows are computed and their intervals reported.

    Raises:
        FlowkitError / SpotnetError: the source cannot be opened, shows no face for
            ``options.no_face_s`` seconds (the intervals reported so far went to ``on_interval``),
            or ends without ever showing one.
    """
    from spotnet.spot import load_spotting_models

    models = load_spotting_models(checkpoints)
    run = _LiveRun(models, *_setup(models, source, options, realtime, extract_options), options=options,
                   on_interval=on_interval)
    status = LiveStatus(fps=run.stream.fps, ks=tuple(k for k, _ in models.values()))
    start = last_status = time.monotonic()
    try:
        for index, frame, arrived in run.stream:
            run.frame(index, frame, arrived)
            now = time.monotonic()
            if on_status is not None and now - last_status >= 0.5:
                status.frames, status.pairs, status.elapsed_s = index + 1, run.extractor.pairs, now - start
                status.behind_s = run.behind(now)
                on_status(status)
                last_status = now
        run.end()
        if run.extractor.segments == 0:  # the stream ended before the no-face timeout, never with a face
            raise SpotnetError(f"a face should appear in {source}, got none in its {run.index + 1} frame(s)")
    except KeyboardInterrupt:
        run.end()  # a clean stop: what is pending is still computed and reported
    finally:
        run.stream.close()
        run.extractor.close()
    return run.found


class _LiveRun:
    """One live run's state: spotters per (segment, type), frame arrival times, what was found."""

    def __init__(self, models: dict, stream, extractor, scorer, *, options: LiveOptions, on_interval):
        self.models, self.stream, self.extractor, self.scorer = models, stream, extractor, scorer
        self.options, self.on_interval = options, on_interval
        self.spotters: dict = {}  # (segment, type) -> CausalSpotter
        self.starts: dict[int, int] = {}  # segment -> its first stream frame
        self.arrivals: dict[int, float] = {}
        self.index = -1
        self.found: list[LiveInterval] = []

    def frame(self, index: int, frame, arrived: float) -> None:
        self.index = index
        self.arrivals[index] = arrived
        self._windows(self.extractor.feed(index, frame))

    def end(self) -> None:
        self._windows(self.extractor.flush())
        self._finish_segments(keep=None)

    def behind(self, now: float) -> float:
        """Seconds since the arrival of the newest frame whose windows are all scored."""
        seg = self.extractor.segment
        newest = self.index if seg is None else seg.start + min(seg.pending.values()) + max(self.extractor.ks) - 1
        return max(now - self.arrivals.get(newest, now), 0.0)

    def _windows(self, windows) -> None:
        from spotnet.causal import CausalSpotter

        for w in windows:
            if w.segment not in self.starts:
                self._finish_segments(keep=w.segment)  # a new crop: earlier segments are over
                self.starts[w.segment] = w.start
            for kind, (k, _) in self.models.items():
                if k != w.k:
                    continue
                spotter = self.spotters.get((w.segment, kind))
                if spotter is None:
                    o = self.options
                    spotter = self.spotters[(w.segment, kind)] = CausalSpotter(
                        k, fps=self.stream.fps, p=o.p, history_s=o.history_s, warmup_s=o.warmup_s, rule=o.rule)
                for score in self.scorer.scores(kind, w.features):
                    for it in spotter.push(score):
                        self._report(it, w.segment, kind)

    def _finish_segments(self, keep: int | None) -> None:
        for key in [key for key in self.spotters if key[0] != keep]:
            for it in self.spotters.pop(key).finish():
                self._report(it, *key)

    def _report(self, it, segment: int, kind: str) -> None:
        start = self.starts[segment]
        onset, offset = start + it.start, min(start + it.end, self.index)
        arrived = self.arrivals.get(offset, time.monotonic())
        interval = LiveInterval(self.stream.name, onset, offset, kind, float(it.score), self.index,
                                max(time.monotonic() - arrived, 0.0), self.stream.fps)
        self.found.append(interval)
        if self.on_interval is not None:
            self.on_interval(interval)


def _setup(models: dict, source, options: LiveOptions, realtime: bool, extract_options: dict):
    from flowkit.errors import FlowkitError
    from flowkit.face.landmarks import make_landmarker
    from flowkit.pipeline.live import FaceTracking, LiveExtractor, open_stream
    from flowkit.pipeline.settings import resolve_settings

    recorded = [m.flow_params for _, group in models.values() for m in group if getattr(m, "flow_params", None)]
    try:
        settings = resolve_settings(
            flow_backend=extract_options.get("flow_backend", "auto"), device=extract_options.get("device"),
            gpu=extract_options.get("gpu", False), flow_params=recorded[0] if recorded else None,
            flow_impl=extract_options.get("flow_impl", "auto"), workers=1, chunk_windows=options.batch,
            batch_windows=options.batch, landmark_backend=extract_options.get("landmark_backend", "mediapipe"))
        stream = open_stream(source, realtime=realtime)
        landmarker = make_landmarker(settings.landmark_backend, model_path=extract_options.get("model_path"))
    except FlowkitError as exc:
        raise SpotnetError(str(exc)) from None
    extractor = LiveExtractor([k for k, _ in models.values()], landmarker=landmarker, settings=settings,
                              fps=stream.fps, batch=options.batch, tracking=FaceTracking(no_face_s=options.no_face_s))
    return stream, extractor, _Scorer(models, settings.device if settings.backend == "torch" else None)
