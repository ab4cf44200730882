"""Extra decoding that work units cost, computed from the plan (no decoding, no timing).

A unit decodes its own frames, the max(k) frames it shares with the unit before it, and in a
video file the frames from the keyframe before its first frame (a seek's pre-roll). This prints,
for the shared videos (their real keyframes, from the packet index) and for 4,400-frame inputs
(about one CAS(ME)^2 video) as JPEG folders and as videos with a keyframe every 12 or 250
frames: the units flowkit plans for ``--workers`` and the frames decoded beyond one per frame.

    python benchmarks/decode_overhead.py [--workers 2] [--k 6 --k 18]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from flowkit.io.store import DEFAULT_CHUNK_WINDOWS
from flowkit.io.video_index import VideoIndex, index_video
from flowkit.pipeline.extract import DEFAULT_UNIT_WINDOWS
from flowkit.pipeline.plan import VideoWork, min_units_for, plan_units

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
VIDEOS = ["WolfgangLanger_Pexels.mp4", "single_face.mp4", "noface_face.mov"]


def extra_decoding(index: VideoIndex, ks: list[int], workers: int) -> tuple[int, float]:
    """(units, frames decoded / n_frames - 1) for one video planned as extract plans it."""
    n_frames = index.n_frames
    todo = {k: range(-(-(n_frames - k) // DEFAULT_CHUNK_WINDOWS)) for k in ks if n_frames > k}
    units = plan_units([VideoWork("v", n_frames, todo, DEFAULT_CHUNK_WINDOWS)], unit_windows=DEFAULT_UNIT_WINDOWS,
                       min_units=min_units_for(workers))
    decoded = sum(u.frames[1] - index.keyframe_before(u.frames[0]) for u in units)
    return len(units), decoded / n_frames - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--k", type=int, action="append", dest="ks")
    args = parser.parse_args()
    ks = args.ks or [6, 18]
    rows = []
    for name in VIDEOS:
        if (SHARED / name).is_file():
            index = index_video(SHARED / name)
            if index is not None:
                gaps = np.diff(index.keyframes)
                gop = f"a keyframe every {gaps.max()} frames at most" if gaps.size else "one keyframe"
                rows.append((f"{name} ({gop})", index))
    n = 4400  # every frame of a JPEG folder is a keyframe
    synthetic = (("JPEG folder", 1), ("video, keyframe every 12", 12), ("video, keyframe every 250", 250))
    rows += [(label, VideoIndex(np.arange(n), np.arange(0, n, every))) for label, every in synthetic]
    print(f"workers {args.workers}, k {ks}, {DEFAULT_UNIT_WINDOWS} windows per unit, {DEFAULT_CHUNK_WINDOWS} per chunk")
    for label, index in rows:
        units, extra = extra_decoding(index, ks, args.workers)
        print(f"{label}: {index.n_frames} frames, {units} units, {extra:.1%} more decoding than once per frame")


if __name__ == "__main__":
    main()
