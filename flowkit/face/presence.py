"""Where a video's face is lost: frames sampled after extraction, the spans without a face.

The crop box is fixed from the reference frame (SPEC 1), so windows of frames where the face has
left the box are computed from background; the authors' released code stores them as computed,
and so does flowkit. What changes is that it is said: the spans are stored in the video's attrs
(``face_lost``) and a video losing its face for more than :data:`FACE_LOST_SHARE` of its frames is
named in the extraction summary.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FACE_LOST_SHARE", "MAX_SAMPLES", "describe_lost", "lost_spans", "spans_of"]

#: A video whose face is lost for more than this share of its frames is reported.
FACE_LOST_SHARE = 0.1
#: Frames looked at per video, at most (evenly spaced; every frame of a shorter video).
MAX_SAMPLES = 200


def spans_of(sampled: list[int], found: list[bool], n_frames: int) -> list[list[int]]:
    """0-based inclusive [first, last] frame spans without a face, from sampled frames: a span
    runs from a missing sample to the frame before the next sample with a face.

    >>> spans_of([0, 2, 4, 6, 8], [True, False, False, True, False], 10)
    [[2, 5], [8, 9]]
    """
    spans: list[list[int]] = []
    for n, (frame, ok) in enumerate(zip(sampled, found)):
        end = sampled[n + 1] - 1 if n + 1 < len(sampled) else n_frames - 1
        if ok:
            continue
        if spans and spans[-1][1] == frame - 1:
            spans[-1][1] = end
        else:
            spans.append([frame, end])
    return spans


def lost_spans(path, landmarker, *, n_frames: int, samples: int = MAX_SAMPLES) -> list[list[int]]:
    """Spans (0-based inclusive) of ``path``'s first ``n_frames`` frames where ``landmarker`` finds
    no face, from at most ``samples`` evenly spaced frames (decoded in one sequential pass)."""
    from flowkit.io.sources import open_source

    if n_frames < 1:
        return []
    wanted = sorted(set(np.linspace(0, n_frames - 1, min(samples, n_frames)).round().astype(int).tolist()))
    todo, found = set(wanted), {}
    for i, frame in enumerate(open_source(path)):
        if i in todo:
            found[i] = landmarker.detect(frame) is not None
        if i >= wanted[-1]:
            break
    sampled = [i for i in wanted if i in found]
    return spans_of(sampled, [found[i] for i in sampled], n_frames)


def describe_lost(spans, n_frames: int, *, share: float = FACE_LOST_SHARE) -> str | None:
    """A summary line when the face is lost for more than ``share`` of the frames, else None.

    >>> describe_lost([[8, 49]], 50)
    'face lost in 84% of the frames (1-based: 9-50); their windows are stored as computed from the fixed crop box'
    """
    lost = sum(b - a + 1 for a, b in spans)
    if n_frames < 1 or lost <= share * n_frames:
        return None
    where = ", ".join(f"{a + 1}-{b + 1}" for a, b in spans[:10]) + (" ..." if len(spans) > 10 else "")
    return (f"face lost in {100 * lost / n_frames:.0f}% of the frames (1-based: {where}); their windows are stored "
            "as computed from the fixed crop box")
