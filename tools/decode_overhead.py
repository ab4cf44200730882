"""Extra decoding that work units cost, computed from the plan (no decoding, no timing).

A unit decodes its own frames, the max(k) frames it shares with the unit before it, and in a
video file the frames from the keyframe before its first frame (a seek's pre-roll). This prints,
for the shared videos (their real keyframes, from the packet index) and for synthetic inputs of
``--frames`` frames (default 4,400, about one CAS(ME)^2 video; SAMM-LV videos run to 5,000 and
more) as JPEG folders and as videos with a keyframe every 12 or 250 frames: the units flowkit
plans for ``--workers`` and the frames decoded beyond one per frame.

    python tools/decode_overhead.py [--workers 2] [--k 6 --k 18] [--frames 4400] [--unit-windows N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from flowkit.io.store import DEFAULT_CHUNK_WINDOWS
from flowkit.io.video_index import VideoIndex, index_video
from flowkit.pipeline.plan import VideoWork, min_units_for, plan_units, unit_chunks

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
VIDEOS = ["WolfgangLanger_Pexels.mp4", "single_face.mp4", "noface_face.mov"]


def extra_decoding(index: VideoIndex, ks: list[int], workers: int,
                   unit_windows: int | None = None) -> tuple[int, float]:
    """(units, frames decoded / n_frames - 1) for one video planned as extract plans it."""
    n_frames = index.n_frames
    todo = {k: range(-(-(n_frames - k) // DEFAULT_CHUNK_WINDOWS)) for k in ks if n_frames > k}
    units = plan_units([VideoWork("v", n_frames, todo, DEFAULT_CHUNK_WINDOWS)], unit_windows=unit_windows,
                       min_units=min_units_for(workers))
    decoded = sum(u.frames[1] - index.keyframe_before(u.frames[0]) for u in units)
    return len(units), decoded / n_frames - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--k", type=int, action="append", dest="ks")
    parser.add_argument("--frames", type=int, default=4400, help="frames of the synthetic inputs")
    parser.add_argument("--unit-windows", type=int, default=None, help="windows per unit (default: extract's)")
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
    n = args.frames  # every frame of a JPEG folder is a keyframe
    synthetic = (("JPEG folder", 1), ("video, keyframe every 12", 12), ("video, keyframe every 250", 250))
    rows += [(label, VideoIndex(np.arange(n), np.arange(0, n, every))) for label, every in synthetic]
    per_unit = unit_chunks(args.unit_windows, DEFAULT_CHUNK_WINDOWS, max(ks)) * DEFAULT_CHUNK_WINDOWS
    how = "as given" if args.unit_windows else f"the default for max(k) {max(ks)}"
    print(f"workers {args.workers}, k {ks}, {per_unit} windows per unit ({how}), {DEFAULT_CHUNK_WINDOWS} per chunk")
    for label, index in rows:
        units, extra = extra_decoding(index, ks, args.workers, args.unit_windows)
        if not units:
            print(f"{label}: {index.n_frames} frames, shorter than k + 1 for every k")
            continue
        print(f"{label}: {index.n_frames} frames, {units} units, {extra:.1%} more decoding than once per frame")


if __name__ == "__main__":
    main()
