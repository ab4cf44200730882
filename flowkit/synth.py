"""Synthetic long face videos with known macro- and micro-expression intervals.

Each video is a real face image (a frame of ../shared/data, or scikit-image's astronaut when
that folder is absent; flipped, scaled and shifted per subject so that subjects differ) animated
by smooth local displacement fields:

- macro-like events: large, slow deformations (mouth corners pulled outward and up, brows
  raised), ``macro_seconds`` long, with a slow onset -> apex ramp (80% of the event) and a quick
  apex -> offset release;
- micro-like events: small, fast deformations of other regions (inner brows pulled together and
  down, lower lip pushed up), ``micro_seconds`` long (<= 0.5 s by default), apex at the middle;
- distractors: slow head drift (global sub-pixel translation), blinks (eye regions darkened for
  a few frames), lighting drift (global gain) and sensor noise.

The face regions come from MediaPipe landmarks (dlib-68 scheme), found once per base image.

Layout written under ``out_dir`` (SAMM-LV style, so that :func:`flowkit.io.sources.discover_videos`
gives ``video_id = <subject>_<video>`` and ``subject = <subject>``)::

    out_dir/
      sub01_v1/frame_00001.png ...   image sequence, one folder per video
      annotations.csv                video, subject, onset, apex, offset, type (1-based, inclusive)
      synth.json                     the generation parameters (fps, seed, ...)

PNG frames are lossless, so the motion that flowkit measures is the motion that was drawn.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from flowkit.errors import FlowkitError
from flowkit.io.annotations import Interval

__all__ = ["BASE_VIDEOS", "DEFAULT_DATA_DIR", "SynthParams", "make_synthetic_dataset"]

#: Real face videos used as base images, relative to the project root.
BASE_VIDEOS = ("WolfgangLanger_Pexels.mp4", "single_face.mp4")
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@dataclass(frozen=True)
class SynthParams:
    """Generation knobs (all sizes in pixels of the output frame, durations in seconds)."""

    subjects: int = 3
    videos_per_subject: int = 2
    seconds: float = 20.0
    fps: float = 30.0
    seed: int = 0
    size: int = 224
    macro_per_video: int = 3
    micro_per_video: int = 3
    macro_seconds: tuple[float, float] = (1.2, 1.6)
    micro_seconds: tuple[float, float] = (0.3, 0.45)
    macro_amplitude: float = 7.0
    micro_amplitude: float = 4.0
    drift: float = 1.5
    noise_sigma: float = 1.5
    lighting: float = 0.04
    blinks_per_minute: float = 12.0


def _base_images(data_dir: Path) -> list[np.ndarray]:
    """A few BGR frames of the shared face videos (faces near the start, before big motion)."""
    picks = {"WolfgangLanger_Pexels.mp4": (0, 20), "single_face.mp4": (0, 36)}
    images = []
    # Alternate the two people so that neighbouring subjects look different.
    for name in BASE_VIDEOS:
        path = data_dir / name
        if not path.is_file():
            continue
        cap = cv2.VideoCapture(str(path))
        wanted = set(picks[name])
        i = 0
        while wanted:
            ok, frame = cap.read()
            if not ok:
                break
            if i in wanted:
                images.append(frame)
                wanted.discard(i)
            i += 1
        cap.release()
    if not images:
        images = _astronaut()
    if not images:
        raise FlowkitError(
            f"synthetic faces should come from {', '.join(BASE_VIDEOS)} in a data folder, "
            f"got none in {str(data_dir)!r}; pass data_dir (flowkit synth --data-dir) or install "
            "scikit-image for its astronaut photograph"
        )
    return images


def _astronaut() -> list[np.ndarray]:
    """scikit-image's public-domain astronaut portrait (BGR), when scikit-image is installed: the
    fallback face outside this project's checkout, where ../shared/data is absent."""
    try:
        from skimage import data
    except ImportError:
        return []
    return [cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)]


def _face_crop(image: np.ndarray, landmarker, *, size: int, scale: float, shift: tuple[float, float],
               flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """(size, size, 3) BGR frame centred on the face, and its (68, 2) landmarks."""
    if flip:
        image = image[:, ::-1].copy()
    face = landmarker.detect(image)
    if face is None:
        raise FlowkitError("synthetic base image should contain a face, got none found by MediaPipe")
    x0, y0, x1, y1 = face.box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    # The face box fills about 55% of the frame width, scaled per subject.
    side = max(x1 - x0, y1 - y0) / (0.55 * scale)
    cx += shift[0] * side
    cy += shift[1] * side
    m = np.array([[size / side, 0, size / 2 - cx * size / side],
                  [0, size / side, size / 2 - cy * size / side]], dtype=np.float64)
    out = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    pts = face.points.astype(np.float64) @ m[:, :2].T + m[:, 2]
    return out, pts.astype(np.float32)


def _bump(shape: tuple[int, int], centre, vector, radius: float) -> np.ndarray:
    """(H, W, 2) displacement: ``vector`` at ``centre`` fading as a Gaussian of ``radius``."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    g = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * radius ** 2))
    return np.stack([g * vector[0], g * vector[1]], axis=-1).astype(np.float32)


def _fields(pts: np.ndarray, shape: tuple[int, int]) -> dict[str, list[np.ndarray]]:
    """Unit-amplitude displacement fields of each event kind, from the landmarks."""
    eye_dist = float(np.linalg.norm(pts[36:42].mean(0) - pts[42:48].mean(0)))
    r = 0.28 * eye_dist
    macro = [
        # smile: mouth corners out and up, cheeks up
        _bump(shape, pts[48], (-0.8, -0.6), r) + _bump(shape, pts[54], (0.8, -0.6), r)
        + _bump(shape, (pts[48] + pts[31]) / 2, (0, -0.5), 1.3 * r)
        + _bump(shape, (pts[54] + pts[35]) / 2, (0, -0.5), 1.3 * r),
        # brow raise
        _bump(shape, pts[19], (0, -1.0), 1.2 * r) + _bump(shape, pts[24], (0, -1.0), 1.2 * r),
    ]
    micro = [
        # inner brows together and down (AU4)
        _bump(shape, pts[21], (0.7, 0.7), 0.8 * r) + _bump(shape, pts[22], (-0.7, 0.7), 0.8 * r),
        # chin raise / lip press (AU17/24): lower lip up
        _bump(shape, pts[57], (0, -1.0), 0.9 * r) + _bump(shape, pts[8], (0, -0.6), 1.2 * r),
    ]
    return {"macro": macro, "micro": micro}


def _envelope(n: int, onset: int, apex: int, offset: int) -> np.ndarray:
    """(n,) amplitude in [0, 1]: smooth rise onset -> apex, smooth fall apex -> offset."""
    t = np.arange(n, dtype=np.float64)
    env = np.zeros(n)
    rise = (t >= onset) & (t <= apex)
    fall = (t > apex) & (t <= offset)
    env[rise] = 0.5 - 0.5 * np.cos(math.pi * (t[rise] - onset) / max(apex - onset, 1))
    env[fall] = 0.5 + 0.5 * np.cos(math.pi * (t[fall] - apex) / max(offset - apex, 1))
    return env


def _schedule(rng: np.random.Generator, n_frames: int, p: SynthParams) -> list[tuple[str, int, int, int, int]]:
    """Non-overlapping events (type, kind index, onset, apex, offset), separated by gaps."""
    kinds = ["macro"] * p.macro_per_video + ["micro"] * p.micro_per_video
    rng.shuffle(kinds)
    lengths = []
    for kind in kinds:
        lo, hi = p.macro_seconds if kind == "macro" else p.micro_seconds
        lengths.append(max(2, int(round(rng.uniform(lo, hi) * p.fps))))
    # Leave room at both ends and between events (the longest macro event), so that the
    # 2k-frame smoothing of one event does not reach the next.
    gap = int(round(p.macro_seconds[1] * p.fps))
    free = n_frames - sum(lengths) - gap * (len(kinds) + 1)
    if free < 0:
        raise FlowkitError(
            f"seconds should leave room for {len(kinds)} events, got {n_frames / p.fps:.1f} s; "
            "use longer videos or fewer events"
        )
    cuts = np.sort(rng.uniform(0, free, size=len(kinds)))
    events, cursor, used = [], gap, 0.0
    for kind, length, cut in zip(kinds, lengths, cuts):
        cursor += int(cut - used)
        used = int(cut)
        onset = cursor
        offset = onset + length - 1
        # Macro: slow onset, quick release (apex at 80%). SPEC 7's spotted interval [t, t + 2k]
        # centres on the windows that see motion, and window i (frames i .. i + k) sees the
        # event from i = onset - k on but hardly any motion once frame i is in a slow release, so
        # a centred apex puts the spotted interval about k frames early (IoU < 0.5 with the
        # ground truth); a late apex keeps the displacement high until just before the offset.
        apex = onset + int(round((0.8 if kind == "macro" else 0.5) * (length - 1)))
        events.append((kind, int(rng.integers(2)), onset, apex, offset))
        cursor = offset + 1 + gap
    return events


def _render_video(folder: Path, base: np.ndarray, pts: np.ndarray, events, *, rng: np.random.Generator,
                  n_frames: int, p: SynthParams) -> None:
    h, w = base.shape[:2]
    fields = _fields(pts, (h, w))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    envs = []
    for kind, idx, onset, apex, offset in events:
        amp = (p.macro_amplitude if kind == "macro" else p.micro_amplitude) * rng.uniform(0.85, 1.15)
        envs.append((fields[kind][idx], amp * _envelope(n_frames, onset, apex, offset)))
    t = np.arange(n_frames) / p.fps
    ph = rng.uniform(0, 2 * math.pi, size=4)
    drift_x = p.drift * np.sin(2 * math.pi * t / 9.0 + ph[0])
    drift_y = 0.6 * p.drift * np.sin(2 * math.pi * t / 13.0 + ph[1])
    gain = 1.0 + p.lighting * np.sin(2 * math.pi * t / 7.0 + ph[2])
    blink = np.zeros(n_frames)
    n_blinks = int(rng.poisson(p.blinks_per_minute * n_frames / p.fps / 60))
    blink_len = max(3, int(round(0.15 * p.fps)))
    for start in rng.integers(0, max(n_frames - blink_len, 1), size=n_blinks):
        blink = np.maximum(blink, _envelope(n_frames, start, start + blink_len // 2, start + blink_len))
    eyes = np.zeros((h, w), np.float32)
    for sl in (slice(36, 42), slice(42, 48)):
        cv2.fillConvexPoly(eyes, np.round(cv2.convexHull(pts[sl])).astype(np.int32), 1.0)
    eyes = cv2.GaussianBlur(eyes, (0, 0), 2.0)[..., None]
    folder.mkdir(parents=True, exist_ok=True)
    base_f = base.astype(np.float32)
    for i in range(n_frames):
        dx = np.full((h, w), drift_x[i], np.float32)
        dy = np.full((h, w), drift_y[i], np.float32)
        for field, env in envs:
            if env[i] > 0:
                dx += env[i] * field[..., 0]
                dy += env[i] * field[..., 1]
        # Backward warp: the pixel at x shows the base at x - d (d small and smooth).
        frame = cv2.remap(base_f, xx - dx, yy - dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        frame *= gain[i] * (1.0 - 0.55 * blink[i] * eyes)
        frame += rng.normal(0.0, p.noise_sigma, size=frame.shape).astype(np.float32)
        cv2.imwrite(str(folder / f"frame_{i + 1:05d}.png"), np.clip(frame, 0, 255).astype(np.uint8),
                    [cv2.IMWRITE_PNG_COMPRESSION, 1])


def make_synthetic_dataset(
    out_dir: str | os.PathLike,
    *,
    subjects: int = 3,
    videos_per_subject: int = 2,
    seconds: float = 20.0,
    fps: float = 30.0,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    landmarker=None,
    **knobs,
) -> list[Interval]:
    """Write a synthetic benchmark of ``subjects * videos_per_subject`` long face videos.

    Args:
        out_dir: folder to write (created; existing frames are overwritten).
        subjects: number of subjects (>= 2 for leave-one-subject-out).
        videos_per_subject: videos per subject.
        seconds: length of each video.
        fps: frame rate (written to synth.json; image folders carry no rate).
        seed: seed of every random choice; the same seed gives the same frames.
        data_dir: folder with the base face videos (default ../shared/data).
        landmarker: a flowkit landmarker (``.detect``); default MediaPipe.
        **knobs: other :class:`SynthParams` fields (amplitudes, durations, distractors).

    Returns:
        The drawn intervals (0-based, inclusive). ``annotations.csv`` holds them 1-based.
    """
    if subjects < 1 or videos_per_subject < 1:
        raise FlowkitError(f"subjects and videos per subject should be >= 1, got {subjects} and {videos_per_subject}")
    if fps <= 0 or seconds <= 0:
        raise FlowkitError(f"fps and seconds should be > 0, got {fps} and {seconds}")
    unknown = sorted(set(knobs) - set(SynthParams.__dataclass_fields__))
    if unknown:
        raise FlowkitError(f"synthetic parameters should be among {sorted(SynthParams.__dataclass_fields__)}, "
                           f"got {unknown}")
    p = SynthParams(subjects=subjects, videos_per_subject=videos_per_subject, seconds=seconds, fps=fps,
                    seed=seed, **knobs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = _base_images(Path(data_dir) if data_dir else DEFAULT_DATA_DIR)
    own = landmarker is None
    if own:
        from flowkit.face.landmarks.mediapipe_backend import MediaPipeLandmarker

        landmarker = MediaPipeLandmarker()
    rng = np.random.default_rng(seed)
    order = [i // 2 + (i % 2) * ((len(images) + 1) // 2) for i in range(len(images))]
    n_frames = int(round(seconds * fps))
    intervals: list[Interval] = []
    try:
        for s in range(subjects):
            subject = f"sub{s + 1:02d}"
            base, pts = _face_crop(
                images[order[s % len(images)]], landmarker, size=p.size,
                scale=float(rng.uniform(0.85, 1.1)),
                shift=(float(rng.uniform(-0.05, 0.05)), float(rng.uniform(-0.05, 0.05))),
                flip=bool((s // len(images)) % 2),
            )
            for v in range(videos_per_subject):
                video = f"{subject}_v{v + 1}"
                events = _schedule(rng, n_frames, p)
                _render_video(out / video, base, pts, events, rng=rng, n_frames=n_frames, p=p)
                intervals += [Interval(video, subject, on, ap, off, kind) for kind, _, on, ap, off in events]
    finally:
        if own:
            landmarker.close()
    with open(out / "annotations.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["video", "subject", "onset", "apex", "offset", "type"])
        for it in intervals:
            writer.writerow([it.video, it.subject, it.onset + 1, it.apex + 1, it.offset + 1, it.type])
    meta = asdict(p)
    meta["n_frames"] = n_frames
    (out / "synth.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return intervals
