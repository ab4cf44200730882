"""Work units: what is left to extract, cut into independent pieces that any engine can run.

Pure: no I/O. The driver reads each video's state from the store (:class:`VideoWork`) and
:func:`plan_units` turns it into :class:`WorkUnit` s. A unit covers a range of windows of one
video, for every k at once, aligned to whole chunks of the store, so that a unit decodes its
frames once for all k (plus max(k) frames of overlap with the next unit) and writes whole chunks
that no other unit writes. Window i of length k pairs frames i and i + k.

By default a unit is ``DEFAULT_UNIT_WINDOWS`` windows long, or ``max(k) / MAX_OVERLAP`` when that is
more, so that the max(k) frames it shares with the next unit stay within that share of its own
frames (SAMM-LV's macro k = 174 would otherwise re-decode about 68 % more frames with 256-window
units); a run too short to give each worker two units is cut finer (:func:`min_units_for`).

Units are the retry grain: a unit killed with its worker is simply run again, and writes the
same bytes. A video whose frames cannot be found by seeking (``sequential``) is one unit that
decodes it from the start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

__all__ = ["DEFAULT_UNIT_WINDOWS", "MAX_OVERLAP", "VideoWork", "WorkUnit", "min_units_for", "plan_units", "unit_chunks",
           "windows_of"]

#: Windows per work unit by default (4 chunks of 64): a unit re-decodes max(k) frames of overlap
#: and, for video files, the frames from the keyframe before it, so units are not much shorter.
DEFAULT_UNIT_WINDOWS = 256
#: The most frames a default-sized unit decodes again for its overlap with the next one (max(k)
#: frames), as a share of its windows: units are sized up to keep below it.
MAX_OVERLAP = 0.15


@dataclass(frozen=True)
class VideoWork:
    """One video's remaining work.

    n_frames: frames the units may read (exact for image folders, the packet count for video
        files until a unit finds otherwise).
    todo: {k: chunk indices whose ``written`` flag is false}; k has n_frames - k windows.
    chunk: windows per stored chunk.
    sequential: decode from the first frame (the frames cannot be found by seeking).
    """

    video_id: str
    n_frames: int
    todo: Mapping[int, Iterable[int]]
    chunk: int
    sequential: bool = False


@dataclass(frozen=True)
class WorkUnit:
    """Windows ``start`` .. ``stop - 1`` of one video: the chunks to compute there, per k.

    chunks: ((k, (j, ...)), ...) sorted; chunk j of k holds windows j * chunk .. (j + 1) * chunk - 1
        (fewer for the last chunk of k).
    """

    video_id: str
    start: int
    stop: int
    chunks: tuple[tuple[int, tuple[int, ...]], ...]
    n_frames: int
    chunk: int
    sequential: bool = False

    @property
    def frames(self) -> tuple[int, int]:
        """(first, stop) of the frames the unit reads: its windows' first frames and, for the
        largest k it computes, their partners k frames later."""
        last = max(windows_of(self, k, j)[1] - 1 + k for k, js in self.chunks for j in js)
        return self.first_window, last + 1

    @property
    def first_window(self) -> int:
        return min(windows_of(self, k, js[0])[0] for k, js in self.chunks)

    @property
    def pairs(self) -> int:
        """Frame pairs (windows) the unit computes, all k together."""
        return sum(e - s for k, js in self.chunks for s, e in (windows_of(self, k, j) for j in js))


def windows_of(unit: WorkUnit | VideoWork, k: int, j: int, n_frames: int | None = None) -> tuple[int, int]:
    """(start, stop) of the windows in chunk j of k, for a video of ``n_frames`` (default: the
    unit's). ``stop`` may equal ``start`` when the video is too short for that chunk.

    >>> unit = WorkUnit("v", 0, 64, ((2, (0, 1)),), n_frames=40, chunk=32)
    >>> windows_of(unit, 2, 0), windows_of(unit, 2, 1)
    ((0, 32), (32, 38))
    """
    n = unit.n_frames if n_frames is None else n_frames
    start = j * unit.chunk
    return start, max(start, min(start + unit.chunk, n - k))


def min_units_for(parallel: int) -> int:
    """The fewest units a run should be cut into for ``parallel`` workers: two each, so that one
    long unit does not leave the others idle; a single worker gains nothing from cutting a video
    (only the overlap decoded again).

    >>> min_units_for(1), min_units_for(4)
    (1, 8)
    """
    return 2 * parallel if parallel > 1 else 1


def unit_chunks(unit_windows: int | None, chunk: int, max_k: int) -> int:
    """Chunks per unit: ``unit_windows`` rounded up to whole chunks; None (the default) takes
    ``DEFAULT_UNIT_WINDOWS``, or ``max_k / MAX_OVERLAP`` windows when that is more.

    >>> unit_chunks(None, 64, 18), unit_chunks(None, 64, 37), unit_chunks(None, 64, 174), unit_chunks(64, 64, 174)
    (4, 4, 19, 1)
    """
    if unit_windows is None:
        unit_windows = max(DEFAULT_UNIT_WINDOWS, math.ceil(max_k / MAX_OVERLAP))
    return -(-unit_windows // chunk)


def plan_units(videos: Sequence[VideoWork], *, unit_windows: int | None = None, min_units: int = 1,
               workers: int = 1) -> list[WorkUnit]:
    """Cut each video's remaining chunks into units of about ``unit_windows`` windows.

    ``unit_windows`` (default: :func:`unit_chunks`'s, sized to the video's largest k) is rounded up
    to whole chunks, and cut down (to one chunk at least) when the
    run would otherwise give fewer than ``min_units`` units, so that a short run still keeps
    every worker busy. With ``workers`` > 1 a video's unit count is rounded up to a multiple of
    ``workers`` and its chunks shared out evenly, the larger units first, so that its last units
    do not leave some workers idle while one finishes. Units follow the videos' order and, within
    a video, the windows' order; a range with nothing left to compute gives no unit.

    >>> work = VideoWork("v", n_frames=100, todo={2: {0, 1, 2}, 6: {3}}, chunk=25)
    >>> [(u.start, u.stop, u.chunks) for u in plan_units([work], unit_windows=50)]
    [(0, 50, ((2, (0, 1)),)), (50, 100, ((2, (2,)), (6, (3,))))]
    >>> plan_units([work], unit_windows=50)[1].frames  # window 93 of k = 6 needs frame 99
    (50, 100)
    >>> [u.start for u in plan_units([work], unit_windows=50, min_units=4)]  # one chunk each
    [0, 25, 50, 75]
    >>> long = VideoWork("v", n_frames=906, todo={6: set(range(14))}, chunk=64)
    >>> [len(u.chunks[0][1]) for u in plan_units([long], unit_windows=192, min_units=4, workers=2)]
    [3, 3, 2, 2, 2, 2]
    """
    out: list[WorkUnit] = []
    spans = sum(max(max(js) + 1 for js in v.todo.values() if js) for v in videos
                if not v.sequential and any(v.todo.values()))
    for v in videos:
        todo = {k: sorted(set(js)) for k, js in sorted(v.todo.items()) if js}
        if not todo:
            continue
        if v.sequential:
            chunks = tuple((k, tuple(js)) for k, js in todo.items())
            out.append(WorkUnit(v.video_id, 0, v.n_frames, chunks, v.n_frames, v.chunk, sequential=True))
            continue
        per_unit = max(1, min(unit_chunks(unit_windows, v.chunk, max(todo)), spans // max(1, min_units)))
        for span in _cut(max(js[-1] for js in todo.values()) + 1, per_unit, workers):
            chunks = tuple((k, tuple(j for j in js if j in span)) for k, js in todo.items())
            chunks = tuple((k, js) for k, js in chunks if js)
            if chunks:
                out.append(WorkUnit(v.video_id, span.start * v.chunk, span.stop * v.chunk, chunks, v.n_frames,
                                    v.chunk))
    return out


def _cut(n_chunks: int, per_unit: int, workers: int) -> list[range]:
    """Chunks 0 .. n_chunks - 1 as ranges of at most ``per_unit``; with ``workers`` > 1 their count
    a multiple of ``workers`` (at most one chunk each), sizes differing by one, the larger first.

    >>> _cut(14, 3, 1), _cut(14, 3, 2)
    ([range(0, 3), range(3, 6), range(6, 9), range(9, 12), range(12, 15)], [range(0, 3), range(3, 6), \
range(6, 8), range(8, 10), range(10, 12), range(12, 14)])
    """
    if workers <= 1:
        return [range(first, first + per_unit) for first in range(0, n_chunks, per_unit)]
    n = -(-n_chunks // per_unit)
    n = min(n_chunks, -(-n // workers) * workers)
    size, extra = divmod(n_chunks, n)
    out, first = [], 0
    for u in range(n):
        stop = first + size + (u < extra)
        out.append(range(first, stop))
        first = stop
    return out
