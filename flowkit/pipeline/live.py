"""Live feature extraction: frames from a camera, a stream URL or a file, windows as they arrive.

The offline pipeline (:mod:`flowkit.pipeline.extract`) knows the whole video before it starts; here frames
come one at a time and windows are computed as soon as their second frame exists, with the same
SPEC 1-4 steps (:func:`flowkit.face.crop.crop_face`, :func:`flowkit.face.crop.crop_landmarks`,
:func:`flowkit.pipeline.units.compute_windows`):

- the crop locks on the first face found; every ``check_s`` seconds the face is detected again,
  and when it has moved or resized by more than ``tolerance`` of the box, or has been lost for
  ``lost_s`` seconds, the segment ends and the next face found starts a new one. A segment never
  mixes two crops: windows only pair frames of one segment.
- window ``w`` of a segment at k pairs the segment's crops ``w`` and ``w + k``; pending pairs of
  every k are solved together in batches of ``batch`` pairs (one TV-L1 call).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from flowkit.errors import FlowkitError
from flowkit.face.crop import clamp_box, crop_face, crop_landmarks
from flowkit.native_logs import native_stderr_silenced, quiet_ffmpeg

__all__ = ["FaceTracking", "LiveStream", "LiveWindows", "LiveExtractor", "open_stream"]


class LiveStream:
    """Frames of a camera (an index such as "0"), a stream URL (rtsp://, http://) or a video file.

    Iterating yields ``(index, frame (H, W, 3) uint8 BGR, arrival time in time.monotonic())``.
    With ``realtime`` a file is played at its fps (frames are not read ahead of their time), as a
    camera would deliver them; without it a file is read as fast as it decodes.
    """

    def __init__(self, source: str | os.PathLike, *, realtime: bool = False, fps: float | None = None):
        self.source = str(source)
        self.is_camera = self.source.isdigit()
        self.is_file = not self.is_camera and "://" not in self.source
        if self.is_file and not os.path.isfile(self.source):
            raise FlowkitError(f"live source should be a camera index, a stream URL or a video file, got "
                               f"{self.source!r} (no such file)")
        quiet_ffmpeg()
        with native_stderr_silenced():  # OpenCV's backends log each failed attempt to open a camera
            self._cap = cv2.VideoCapture(int(self.source) if self.is_camera else self.source)
            opened = self._cap.isOpened()
        if not opened:
            what = "camera" if self.is_camera else ("stream" if not self.is_file else "video file")
            raise FlowkitError(f"{what} {self.source!r} should open for reading, got a refusal")
        measured = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps or (measured if measured and 0 < measured < 1000 else 30.0))
        self.realtime = realtime and self.is_file
        self.name = "camera" + self.source if self.is_camera else os.path.splitext(os.path.basename(self.source))[0]

    def __iter__(self) -> Iterator[tuple[int, np.ndarray, float]]:
        start = time.monotonic()
        index = 0
        try:
            while True:
                if self.realtime:
                    wait = start + index / self.fps - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                ok, frame = self._cap.read()
                if not ok or frame is None:
                    return
                yield index, frame, time.monotonic()
                index += 1
        finally:
            self.close()

    def close(self) -> None:
        self._cap.release()


def open_stream(source, *, realtime: bool = False) -> LiveStream:
    """A :class:`LiveStream` over ``source``; FlowkitError in one sentence when it cannot open."""
    return LiveStream(source, realtime=realtime)


@dataclass
class LiveWindows:
    """Features of consecutive windows of one segment at one k.

    segment: the segment's number (0, 1, ...); start: the stream frame of its crop 0.
    k: window length; first: the first window's index in the segment (window w pairs segment
    crops w and w + k). features: (B, 3, 42, 42) float32.
    """

    segment: int
    start: int
    k: int
    first: int
    features: np.ndarray


@dataclass(frozen=True)
class FaceTracking:
    """When a live segment ends.

    tolerance: re-lock when the face's centre moves, or its size changes, by more than this
        fraction of the locked box.
    check_s: seconds between two face checks of a locked segment.
    lost_s: a locked face missing this long ends the segment.
    no_face_s: no face for this long raises :class:`FlowkitError` (a camera pointed elsewhere).
    """

    tolerance: float = 0.25
    check_s: float = 0.5
    lost_s: float = 1.0
    no_face_s: float = 10.0


@dataclass
class _Segment:
    number: int
    start: int
    box: tuple[int, int, int, int]
    landmarks: np.ndarray
    crops: deque = field(default_factory=deque)  # (segment index, crop), the last max(k) + 1
    n: int = 0  # crops so far
    pending: dict = field(default_factory=dict)  # k -> first window index not yet computed


class LiveExtractor:
    """Turns frames into window features as they arrive (see the module docstring).

    Args:
        ks: window lengths to compute.
        landmarker: ``.detect(image) -> Face | None`` (``flowkit.face.landmarks.make_landmarker``).
        settings: how to solve (a :class:`flowkit.pipeline.settings.ExtractionSettings`; only backend,
            device and params are used).
        fps: the stream's frame rate (converts the seconds below to frames).
        batch: pairs per TV-L1 call.
        tracking: when a segment ends (:class:`FaceTracking`).
    """

    def __init__(self, ks, *, landmarker, settings, fps: float, batch: int = 8,
                 tracking: FaceTracking = FaceTracking()):
        self.ks = sorted({int(k) for k in ks})
        if not self.ks or self.ks[0] < 1:
            raise FlowkitError(f"k values should be positive integers, got {list(ks)}")
        self.landmarker, self.settings, self.fps = landmarker, settings, float(fps)
        self.batch, self.tolerance = max(int(batch), 1), float(tracking.tolerance)
        self.check_every = max(int(round(tracking.check_s * fps)), 1)
        self.lost_after, self.no_face_after = tracking.lost_s * fps, tracking.no_face_s * fps
        self.segment: _Segment | None = None
        self._segments = 0
        self._last_face = -1  # stream index of the last frame with a face
        self.pairs = 0

    def feed(self, index: int, frame: np.ndarray) -> list[LiveWindows]:
        """Take stream frame ``index``; the windows this completes, once a batch is full."""
        out: list[LiveWindows] = []
        seg = self.segment
        if seg is not None and (index - seg.start) % self.check_every == 0 and seg.n > 0:
            if not self._still_there(index, frame, seg):
                out += self.flush()
                self.segment = seg = None
        if seg is None:
            seg = self._lock(index, frame)
            if seg is None:
                return out
        crop = crop_face(frame, seg.box)
        seg.crops.append((seg.n, crop))
        seg.n += 1
        while len(seg.crops) > self.ks[-1] + 1 + 2 * self.batch:  # what pending windows may still need
            seg.crops.popleft()
        if self._ready(seg) >= self.batch:
            out += self._compute(seg)
        return out

    @property
    def segments(self) -> int:
        """Segments started so far: 0 while no face has been found."""
        return self._segments

    def close(self) -> None:
        """Free the landmarker (MediaPipe complains when only its finaliser frees it)."""
        if hasattr(self.landmarker, "close"):
            self.landmarker.close()

    def flush(self) -> list[LiveWindows]:
        """Compute every pending window of the current segment (end of stream or of segment)."""
        return self._compute(self.segment) if self.segment is not None else []

    # ------------------------------------------------------------------ segments
    def _lock(self, index: int, frame: np.ndarray) -> _Segment | None:

        face = self.landmarker.detect(frame)
        if face is None:
            if index - self._last_face > self.no_face_after:
                raise FlowkitError(f"a face should appear within {self.no_face_after / self.fps:.0f} s of the "
                                   f"stream, got none by frame {index + 1}")
            return None
        self._last_face = index
        h, w = frame.shape[:2]
        box = clamp_box(face.box, w, h)
        landmarks, _ = crop_landmarks(self.landmarker, crop_face(frame, box), reference=face, frame_shape=frame.shape)
        self.segment = _Segment(self._segments, index, box, np.asarray(landmarks, np.float32),
                                pending={k: 0 for k in self.ks})
        self._segments += 1
        return self.segment

    def _still_there(self, index: int, frame: np.ndarray, seg: _Segment) -> bool:
        face = self.landmarker.detect(frame)
        if face is None:
            return index - self._last_face <= self.lost_after
        self._last_face = index
        x0, y0, x1, y1 = seg.box
        size = max(x1 - x0, y1 - y0, 1)
        fx0, fy0, fx1, fy1 = face.box
        shift = np.hypot((fx0 + fx1 - x0 - x1) / 2, (fy0 + fy1 - y0 - y1) / 2) / size
        scale = max(fx1 - fx0, fy1 - fy0, 1) / size
        return shift <= self.tolerance and abs(scale - 1) <= self.tolerance

    # ------------------------------------------------------------------ windows
    def _ready(self, seg: _Segment) -> int:
        return sum(max(seg.n - k - seg.pending[k], 0) for k in self.ks)

    def _compute(self, seg: _Segment) -> list[LiveWindows]:
        from flowkit.pipeline.units import compute_windows

        crops = dict(seg.crops)
        spans = [(k, seg.pending[k], seg.n - k) for k in self.ks if seg.n - k > seg.pending[k]]
        if not spans:
            return []
        prev = np.stack([crops[w] for k, a, b in spans for w in range(a, b)])
        nxt = np.stack([crops[w + k] for k, a, b in spans for w in range(a, b)])
        feats, _ = compute_windows(prev, nxt, seg.landmarks, self.settings)
        out, i = [], 0
        for k, a, b in spans:
            out.append(LiveWindows(seg.number, seg.start, k, a, feats[i:i + b - a]))
            i += b - a
            seg.pending[k] = b
        self.pairs += len(prev)
        return out
