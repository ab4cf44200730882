"""MediaPipe's face box and 68 points against dlib's, on the shared faces (SPEC 1).

Frames: every 4th of WolfgangLanger_Pexels.mp4, every 2nd of single_face.mp4 and every 2nd of
noface_face.mov frames 96-167 (../shared/data), where both backends find the face. dlib's box is
its rectangle sliced as the released code slices it (``image[top:bottom, left:right]``).

It fits ``BOX_CALIBRATION`` (a, b, c) of :func:`flowkit.face.landmarks.mediapipe_backend.landmark_box`
by least squares, each video weighted equally (centre offsets a, b and side c in units of the
eye distance), then reports per video, with the calibration in the code and with the refit:
the box IoU with dlib's (mean, min) and the mean landmark distance at the 128x128 crop scale
(frame distance times 128 / dlib box width).

Run:
    python tools/experiments/landmark_calibration.py > benchmarks/results/landmark_calibration_cpu.json
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
MODEL = ROOT.parent / "shared" / "models" / "face_landmarker.task"
FRAMES = {
    "WolfgangLanger_Pexels.mp4": range(0, 472, 4),
    "single_face.mp4": range(0, 72, 2),
    "noface_face.mov": range(96, 168, 2),
}


def _iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _geometry(points: np.ndarray) -> tuple[np.ndarray, float]:
    """landmark_box's base centre and eye distance d."""
    left, right = points[36:42].mean(axis=0), points[42:48].mean(axis=0)
    return ((left + right) / 2 + points[48:68].mean(axis=0)) / 2, float(np.linalg.norm(right - left))


def collect() -> dict[str, list[tuple[np.ndarray, np.ndarray, tuple]]]:
    """Per video: (mediapipe 68 points, dlib 68 points, dlib box) of frames where both find a face."""
    from flowkit.face.landmarks.dlib_backend import DlibLandmarker
    from flowkit.face.landmarks.mediapipe_backend import MediaPipeLandmarker
    from flowkit.io.sources import open_source

    dlib_lm = DlibLandmarker()
    out: dict[str, list] = {}
    with MediaPipeLandmarker(MODEL) as mp_lm:
        for name, wanted in FRAMES.items():
            rows = out.setdefault(name, [])
            wanted = set(wanted)
            for i, frame in enumerate(open_source(DATA / name)):
                if i > max(wanted):
                    break
                if i not in wanted:
                    continue
                d, m = dlib_lm.detect(frame), mp_lm.detect(frame)
                if d is not None and m is not None:
                    rows.append((m.points, d.points, d.box))
    return out


def fit(samples: dict) -> tuple[float, float, float]:
    """(a, b, c) by least squares with each video weighted equally."""
    num, den = np.zeros(3), np.zeros(3)
    for rows in samples.values():
        w = 1.0 / len(rows)
        for mp_points, _, box in rows:
            base, d = _geometry(mp_points)
            target = np.array([(box[0] + box[2]) / 2 - base[0], (box[1] + box[3]) / 2 - base[1],
                               ((box[2] - box[0]) + (box[3] - box[1])) / 2])
            num += w * d * target
            den += w * d * d
    return tuple(round(float(v), 4) for v in num / den)


def report(samples: dict, calibration) -> dict:
    from flowkit.face.landmarks import mediapipe_backend

    saved = mediapipe_backend.BOX_CALIBRATION
    mediapipe_backend.BOX_CALIBRATION = tuple(calibration)
    try:
        out = {}
        for name, rows in samples.items():
            ious = [_iou(mediapipe_backend.landmark_box(m), box) for m, _, box in rows]
            dist = [float(np.linalg.norm(m - d, axis=1).mean() * 128 / (box[2] - box[0])) for m, d, box in rows]
            out[name] = {"frames": len(rows), "iou_mean": round(float(np.mean(ious)), 3),
                         "iou_min": round(float(np.min(ious)), 3),
                         "landmark_distance_px_128": round(float(np.mean(dist)), 2)}
        return out
    finally:
        mediapipe_backend.BOX_CALIBRATION = saved


def main() -> None:
    import cv2
    import mediapipe

    from flowkit.face.landmarks.mediapipe_backend import BOX_CALIBRATION

    samples = collect()
    refit = fit(samples)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    json.dump({
        "what": "MediaPipe box and 68 points vs dlib's (box sliced as the released code), on the shared faces",
        "command": "python tools/experiments/landmark_calibration.py",
        "commit": commit,
        "versions": {"python": platform.python_version(), "mediapipe": mediapipe.__version__,
                     "opencv": cv2.__version__, "dlib": __import__("dlib").__version__},
        "calibration_in_code": list(BOX_CALIBRATION),
        "refit": list(refit),
        "with_calibration_in_code": report(samples, BOX_CALIBRATION),
        "with_refit": report(samples, refit),
    }, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
