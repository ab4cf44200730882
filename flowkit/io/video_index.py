"""Random access to the frames of a video file: a demux-only index, then exact seeks (PyAV).

Work units read frame ranges of a video in parallel, so frame i must be the same array whether
it comes from a sequential decode or from a seek. OpenCV's ``CAP_PROP_POS_FRAMES`` seek is not
exact (on the shared noface_face.mov it returned other frames at 5 of 9 positions), so video
files are read with PyAV (FFmpeg):

- :func:`index_video` reads the packets without decoding them (cheap next to decoding): frame i
  is the packet with the i-th smallest presentation timestamp (pts); keyframes are where a
  decode may start.
- :func:`read_range` seeks to the last keyframe at or before the first frame wanted and decodes
  forward, numbering each frame by its pts. A frame that never comes (a packet that does not
  decode, or a file that ends early) raises :class:`FrameGap`: the caller then decodes the video
  sequentially, where frame i is simply the i-th frame that decodes, as in
  :func:`read_sequential` and ``cv2.VideoCapture``.

PyAV's BGR frames equal ``cv2.VideoCapture``'s bit for bit on the four shared videos
(tests/test_sources.py), so features do not depend on which reader produced them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from flowkit.errors import FlowkitError

__all__ = ["FrameGap", "VideoIndex", "index_video", "read_range", "read_sequential"]


class FrameGap(FlowkitError):
    """A frame of the index did not come out of the decoder where expected; decode sequentially."""


@dataclass(frozen=True)
class VideoIndex:
    """Presentation timestamps of a video stream's packets.

    pts: (n,) int64, sorted; frame ``offset + i`` has timestamp pts[i].
    keyframes: (m,) int64 frame indices where decoding may start, sorted, the first one ``offset``.
    offset: the first frame indexed: 0 for a whole video, more for a :meth:`window`.
    """

    pts: np.ndarray
    keyframes: np.ndarray
    offset: int = 0

    @property
    def n_frames(self) -> int:
        """One past the last frame indexed (the video's frame count for a whole index)."""
        return self.offset + int(len(self.pts))

    def keyframe_before(self, frame: int) -> int:
        """The last keyframe at or before ``frame``: where a decode that reaches it starts.

        >>> VideoIndex(np.arange(10), np.array([0, 4, 8])).keyframe_before(7)
        4
        """
        return int(self.keyframes[np.searchsorted(self.keyframes, frame, side="right") - 1])

    def window(self, start: int, stop: int) -> VideoIndex:
        """The part of the index that :func:`read_range` needs for frames ``start`` .. ``stop - 1``:
        from the keyframe before ``start`` on (small enough to send with a work unit)."""
        stop = min(stop, self.n_frames)
        key = self.keyframe_before(start)
        keys = self.keyframes[(self.keyframes >= key) & (self.keyframes < stop)]
        return VideoIndex(self.pts[key - self.offset : stop - self.offset].copy(), keys.copy(), key)


def _open(path: str | os.PathLike):
    import av

    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise FlowkitError(f"video file should be readable by FFmpeg, got {str(path)!r}: {exc}") from None
    if not container.streams.video:
        container.close()
        raise FlowkitError(f"video file should hold a video stream, got none in {str(path)!r}")
    stream = container.streams.video[0]
    stream.thread_type = "SLICE"  # one frame at a time: exact order, no frame-thread delay
    return container, stream


def index_video(path: str | os.PathLike) -> VideoIndex | None:
    """The packet index of ``path``'s first video stream, or None when it cannot number frames
    (a packet without a timestamp, or two with the same one): such a video is read sequentially."""
    import av

    container, stream = _open(path)
    pts: list[int] = []
    keys: list[int] = []
    try:
        for packet in container.demux(stream):
            if packet.size == 0:  # the demuxer's end-of-stream marker
                continue
            if packet.pts is None:
                return None
            pts.append(int(packet.pts))
            keys.append(bool(packet.is_keyframe))
    except av.error.FFmpegError:
        pass  # a damaged tail: the frames before it are indexed, the reader finds the rest
    finally:
        container.close()
    if not pts:
        return None
    order = np.argsort(np.asarray(pts, dtype=np.int64), kind="stable")
    sorted_pts = np.asarray(pts, dtype=np.int64)[order]
    if np.any(np.diff(sorted_pts) == 0):
        return None
    # A keyframe's frame index is its rank by pts; decoding from the first packet is always allowed.
    key_idx = np.unique(np.concatenate([[0], np.flatnonzero(np.asarray(keys)[order])]))
    return VideoIndex(sorted_pts, key_idx.astype(np.int64))


def read_range(path: str | os.PathLike, index: VideoIndex, start: int, stop: int) -> Iterator[tuple[int, np.ndarray]]:
    """Frames ``start`` .. ``stop - 1`` as (i, (H, W, 3) uint8 BGR), decoding from the keyframe before ``start``.

    Raises:
        FrameGap: a frame in the range did not decode where the index puts it.
    """
    import av

    stop = min(stop, index.n_frames)
    if start >= stop:
        return
    if start < index.offset:
        raise FlowkitError(f"frames from {start} should be read with an index from frame {start} or before, "
                           f"got one from frame {index.offset}")
    key = index.keyframe_before(start)
    container, stream = _open(path)
    expected = start
    try:
        if key > 0:
            container.seek(int(index.pts[key - index.offset]), stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            i = _frame_number(index, frame.pts)
            if i is None or i < start:
                continue  # before the range (or a leading frame of an open GOP)
            if i != expected:
                raise FrameGap(f"{path}: frame {expected} should decode before frame {i}, but it did not")
            yield i, frame.to_ndarray(format="bgr24")
            expected += 1
            if expected >= stop:
                return
    except av.error.FFmpegError as exc:
        raise FrameGap(f"{path}: decoding stopped at frame {expected}: {exc}") from None
    finally:
        container.close()
    raise FrameGap(f"{path}: the index lists {index.n_frames} frames but decoding ended at frame {expected}")


def _frame_number(index: VideoIndex, pts) -> int | None:
    if pts is None:
        return None
    i = int(np.searchsorted(index.pts, pts))
    return index.offset + i if i < len(index.pts) and index.pts[i] == pts else None


def read_sequential(path: str | os.PathLike, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
    """Every frame that decodes, numbered in order from 0, from frame ``start`` on; a damaged
    tail ends the video (as ``cv2.VideoCapture`` does)."""
    import av

    container, stream = _open(path)
    i = 0
    try:
        for frame in container.decode(stream):
            if i >= start:
                yield i, frame.to_ndarray(format="bgr24")
            i += 1
    except av.error.FFmpegError:
        return
    finally:
        container.close()
